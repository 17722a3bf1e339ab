"""RLE: hand-checked strings, a loop reference, random round trips and malformed input."""

import numpy as np
import pytest

from keras_seg_extras.data import rle

# (mask, SIIM, Kaggle column-major, Kaggle row-major), written by hand
HAND = [
    (np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]]), "0 2 6 1", "1 2 9 1", "1 1 4 1 9 1"),
    # a run that continues from the bottom of column 0 into the top of column 1
    (np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]),
     "2 3", "3 3", "2 1 11 1 16 1"),
    (np.ones((2, 2)), "0 4", "1 4", "1 4"),
    (np.zeros((3, 4)), "-1", "", ""),
    # only the last pixel: the case the competition's own mask2rle dropped
    (np.array([[0, 0], [0, 0], [0, 1]]), "5 1", "6 1", "6 1"),
    (np.array([[0, 1, 1, 0, 0, 1]]), "1 2 2 1", "2 2 6 1", "2 2 6 1"),
    (np.array([[255, 0], [255, 255]], dtype=np.uint8), "0 2 1 1", "1 2 4 1", "1 1 3 2"),
]


@pytest.mark.parametrize("mask,siim,kaggle_f,kaggle_c", HAND)
def test_hand_checked(mask, siim, kaggle_f, kaggle_c):
    assert rle.encode_siim(mask) == siim
    assert rle.encode_kaggle(mask, order="F") == kaggle_f
    assert rle.encode_kaggle(mask, order="C") == kaggle_c
    expected = (mask != 0).astype(np.uint8)
    for decoded in (rle.decode_siim(siim, mask.shape), rle.decode_kaggle(kaggle_f, mask.shape, "F"),
                    rle.decode_kaggle(kaggle_c, mask.shape, "C")):
        assert decoded.dtype == np.uint8 and decoded.shape == mask.shape
        assert np.array_equal(decoded, expected)


def test_channel_axis_accepted():
    mask = np.array([[1, 0], [0, 1]])[..., None]
    assert rle.encode_siim(mask) == "0 1 2 1"


def test_siim_rows_are_unioned_and_empty_markers():
    mask = rle.decode_siim(["0 1", "3 1", "-1"], (2, 2))
    assert np.array_equal(mask, [[1, 0], [0, 1]])
    # overlapping rows of the same image: union, not a sum
    assert np.array_equal(rle.decode_siim(["0 3", "1 3"], (2, 2)), np.ones((2, 2)))
    for empty in ("-1", " -1 ", "", None, float("nan")):
        assert not rle.decode_siim(empty, (4, 4)).any()
    assert not rle.decode_kaggle("", (4, 4)).any()
    # SIIM's CSV has a leading space in EncodedPixels
    assert np.array_equal(rle.decode_siim(" 0 2 6 1", (3, 3)), HAND[0][0])


def test_decode_rows_groups_ids():
    masks = rle.decode_rows(["a", "b", "a"], ["0 1", "-1", "3 1"], (2, 2))
    assert list(masks) == ["a", "b"]
    assert np.array_equal(masks["a"], [[1, 0], [0, 1]]) and not masks["b"].any()
    masks = rle.decode_rows(["x"], ["2 1"], (2, 2), format="kaggle", order="C")
    assert np.array_equal(masks["x"], [[0, 1], [0, 0]])


def _siim_reference(mask):
    """Plain loop over the pixels in column-major order (the competition's mask2rle idea)."""
    height, width = mask.shape
    values, position, previous_end, run_start = [], 0, 0, None
    for col in range(width):
        for row in range(height):
            on = mask[row, col] != 0
            if on and run_start is None:
                run_start = position
            if not on and run_start is not None:
                values += [run_start - previous_end, position - run_start]
                previous_end, run_start = position, None
            position += 1
    if run_start is not None:
        values += [run_start - previous_end, position - run_start]
    return " ".join(map(str, values)) if values else "-1"


def _kaggle_reference(mask, order):
    flat = [v != 0 for v in (mask.T.ravel() if order == "F" else mask.ravel())]
    values, k = [], 0
    while k < len(flat):
        if flat[k]:
            start = k
            while k < len(flat) and flat[k]:
                k += 1
            values += [start + 1, k - start]
        else:
            k += 1
    return " ".join(map(str, values))


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (5, 7), (16, 16), (13, 4)])
def test_random_against_loop_reference_and_round_trip(rng, shape):
    for density in (0.0, 0.1, 0.5, 0.9, 1.0):
        mask = (rng.random(shape) < density).astype(np.uint8)
        siim = rle.encode_siim(mask)
        assert siim == _siim_reference(mask)
        assert np.array_equal(rle.decode_siim(siim, shape), mask)
        for order in ("C", "F"):
            kaggle = rle.encode_kaggle(mask, order=order)
            assert kaggle == _kaggle_reference(mask, order)
            assert np.array_equal(rle.decode_kaggle(kaggle, shape, order=order), mask)


def test_round_trip_1024(rng):
    # blobs plus salt noise: long and short runs, runs touching the image borders
    mask = np.zeros((1024, 1024), np.uint8)
    mask[100:400, 0:300] = 1
    mask[900:, 1000:] = 1
    mask |= (rng.random((1024, 1024)) < 0.05).astype(np.uint8)
    assert np.array_equal(rle.decode_siim(rle.encode_siim(mask), (1024, 1024)), mask)
    for order in ("C", "F"):
        text = rle.encode_kaggle(mask, order)
        assert np.array_equal(rle.decode_kaggle(text, (1024, 1024), order), mask)
    # splitting one image's runs over several rows decodes to the same mask (SIIM union)
    text = rle.encode_kaggle(mask, "F").split()
    half = len(text) // 4 * 2
    rows = [" ".join(text[:half]), " ".join(text[half:])]
    assert np.array_equal(rle.decode_kaggle(rows, (1024, 1024), "F"), mask)


@pytest.mark.parametrize("text,message", [
    ("1 2 3", "odd number of values \\(3\\): the last, token 3 \\('3'\\), has no run length"),
    ("0 2 x 1", "token 3 \\('x'\\) is not an integer"),
    ("0 1.5", "token 2 \\('1.5'\\) is not an integer"),
    ("0 1_0", "token 2 \\('1_0'\\) is not an integer"),
    ("0 \u0661", "token 2 \\('\u0661'\\) is not an integer"),  # int() reads Arabic-Indic digits
    ("0 1,2", "token 2 \\('1,2'\\) is not an integer"),
    ("-1 2", "token 1 \\('-1'\\): an offset must be >= 0"),
    ("0 2 -3 1", "token 3 \\('-3'\\): an offset"),
    ("0 0", "token 2 \\('0'\\): a run length must be >= 1"),
    ("0 10", "token 2 \\('10'\\) exceeds the 9 pixels"),
    ("4 3 1 3", "token 4 \\('3'\\): the run ends at pixel 11, beyond the 9 pixels"),
    ("0 99999999999999999999", "token 2 \\('99999999999999999999'\\) exceeds the 9 pixels"),
    ("0 9223372036854775807", "token 2 .* exceeds the 9 pixels"),
    ("9" * 5000 + " 1", "token 1 .* exceeds the 9 pixels"),  # past Python's int() digit limit
    ("0 -99999999999999999999", "token 2 .* exceeds the 9 pixels"),
    (17, "must be a string"),
])
def test_siim_malformed_names_image(text, message):
    with pytest.raises(ValueError, match=f"decode_siim: image '1.2.276.0.7230010'.*{message}"):
        rle.decode_siim(text, (3, 3), image_id="1.2.276.0.7230010")


@pytest.mark.parametrize("text,message", [
    ("0 1", "token 1 \\('0'\\): a start must be >= 1"),
    ("5 2 3 1", "token 3 \\('3'\\): the run starting there is not after the previous run"),
    ("1 3 2 1", "token 3 \\('2'\\): the run starting there is not after"),
    ("1 -2", "token 2 \\('-2'\\): a run length must be >= 1"),
    ("9 2", "token 2 \\('2'\\): the run ends at pixel 10, beyond the 9 pixels"),
    ("1 2 3", "odd number"),
    ("1 18446744073709551617", "token 2 .* exceeds the 9 pixels"),
    ("4611686018427387904 1", "token 1 .* exceeds the 9 pixels"),
])
def test_kaggle_malformed_names_image(text, message):
    with pytest.raises(ValueError, match=f"decode_kaggle: image 'car_07'.*{message}"):
        rle.decode_kaggle(text, (3, 3), image_id="car_07")


def test_largest_valid_values_decode():
    mask = rle.decode_siim("0 9", (3, 3))
    assert mask.sum() == 9
    assert rle.decode_kaggle("9 1", (3, 3))[2, 2] == 1
    with pytest.raises(ValueError, match="decode_siim: image 7: .*token 2"):
        rle.decode_rows([7, 7], ["0 1", "0 10"], (3, 3))


def test_argument_errors():
    with pytest.raises(ValueError, match="encode_kaggle.*order.*'row'"):
        rle.encode_kaggle(np.zeros((2, 2)), order="row")
    with pytest.raises(ValueError, match="encode_siim.*mask.*2-D"):
        rle.encode_siim(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="decode_siim.*shape"):
        rle.decode_siim("0 1", (0, 3))
    with pytest.raises(ValueError, match="decode_siim.*shape"):
        rle.decode_siim("0 1", (3,))
    with pytest.raises(ValueError, match="decode_rows.*format"):
        rle.decode_rows(["a"], ["0 1"], (2, 2), format="coco")
    with pytest.raises(ValueError, match="decode_rows.*rles"):
        rle.decode_rows(["a", "b"], ["0 1"], (2, 2))
