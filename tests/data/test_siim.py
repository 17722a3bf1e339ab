"""kse.data.siim: train-rle.csv reading, masks, submissions and the demo dataset, against a
SIIM RLE decoder written here (relative offsets, column-major, rows unioned)."""

import csv
import os

import numpy as np
import pytest

from keras_seg_extras.data import (
    build_siim_demo_dataset,
    prepare_siim,
    read_grayscale_png,
    read_siim_rle_csv,
    siim_paths,
    write_siim_masks,
    write_siim_submission,
)


def _decode(strings, shape):
    """SIIM's relative RLE: each offset counts from the end of the previous run (per row)."""
    flat = np.zeros(shape[0] * shape[1], np.uint8)
    for text in strings:
        if text.strip() == "-1":
            continue
        values = [int(v) for v in text.split()]
        position = 0
        for offset, length in zip(values[0::2], values[1::2]):
            position += offset
            flat[position:position + length] = 1
            position += length
    return flat.reshape(shape, order="F")


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)
    return str(path)


def test_csv_quirks_several_rows_and_empty_marker(tmp_path):
    path = _write(tmp_path / "train-rle.csv",
                  "ImageId, EncodedPixels\n 1.2.3 , 5 2 10 1\n1.2.4, -1\n1.2.3,  30 4 \n")
    assert read_siim_rle_csv(path) == {"1.2.3": ["5 2 10 1", "30 4"], "1.2.4": ["-1"]}


@pytest.mark.parametrize("text, match", [
    ("ImageId,Mask\na,-1\n", r"read_siim_rle_csv: `path` must be a CSV with the columns "
                             r"\['ImageId', 'EncodedPixels'\]; its header is "
                             r"\['ImageId', 'Mask'\]"),
    ("ImageId,EncodedPixels\na,1 2,3\n", r"must have two fields a row; line 2 is"),
    ("", r"its header is \[\]"),
])
def test_bad_csv_is_named(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_siim_rle_csv(_write(tmp_path / "bad.csv", text))


def test_masks_union_the_rows_at_the_original_size_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    shape = (24, 17)
    regions = [(rng.random(shape) > 0.9).astype(np.uint8) for _ in range(3)]
    strings = [_encode(r) for r in regions]
    rles = {"a": strings, "b": ["-1"], "orphan": ["0 3"]}
    masks = write_siim_masks(rles, {"a": shape, "b": (8, 8)}, tmp_path / "masks")
    assert list(masks) == ["a", "b"]                      # "orphan" has no DICOM: left out
    expected = np.maximum.reduce(regions)
    np.testing.assert_array_equal(read_grayscale_png(masks["a"]["mask"]), expected * 255)
    np.testing.assert_array_equal(_decode(strings, shape), expected)
    assert masks["a"]["has_mask"] and not masks["b"]["has_mask"]
    assert read_grayscale_png(masks["b"]["mask"]).shape == (8, 8)
    # A resumed run reads the masks it finds instead of decoding (a changed CSV is not re-read).
    again = write_siim_masks({"a": ["-1"], "b": ["-1"]}, {"a": shape, "b": (8, 8)},
                             tmp_path / "masks")
    assert again["a"]["has_mask"] and again == masks


def _encode(mask):
    """SIIM RLE written here (column-major runs, relative offsets)."""
    flat = np.concatenate([[0], mask.reshape(-1, order="F"), [0]])
    changes = np.flatnonzero(np.diff(flat))
    starts, ends = changes[0::2], changes[1::2]
    if not starts.size:
        return "-1"
    offsets = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{o} {e - s}" for o, s, e in zip(offsets, starts, ends))


def test_submission_one_row_per_image_all_components_and_minus_one(tmp_path):
    rng = np.random.default_rng(1)
    several = np.zeros((20, 30), np.uint8)
    several[2:5, 3:9], several[12:18, 20:22], several[19, 29] = 1, 1, 1   # three components
    single_pixel_at_zero = np.zeros((5, 5), np.uint8)
    single_pixel_at_zero[0, 0] = 1
    noisy = (rng.random((16, 16)) > 0.7).astype(np.uint8)
    masks = [("several", several), ("empty", np.zeros((9, 9))), ("corner", single_pixel_at_zero),
             ("noisy", noisy)]
    path = tmp_path / "submission.csv"
    assert write_siim_submission(path, iter(masks)) == 4
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ImageId", "EncodedPixels"] and [r[0] for r in rows[1:]] == \
        ["several", "empty", "corner", "noisy"]
    assert rows[2][1] == "-1" and rows[3][1] == "0 1"
    for (_, mask), (_, rle) in zip(masks, rows[1:]):
        np.testing.assert_array_equal(_decode([rle], mask.shape), mask)


def test_submission_refuses_a_repeated_image(tmp_path):
    with pytest.raises(ValueError, match=r"write_siim_submission: `masks` must hold each image "
                                         r"id once; received 'a'"):
        write_siim_submission(tmp_path / "s.csv", [("a", np.zeros((2, 2))),
                                                   ("a", np.ones((2, 2)))])


def test_demo_dataset_and_prepare_match_the_competition_layout(tmp_path):
    import pydicom

    root = tmp_path / "siim"
    demo = build_siim_demo_dataset(root, size=32)
    assert (demo["train_images"], demo["train_positive"], demo["test_images"]) == (48, 24, 16)
    assert demo == build_siim_demo_dataset(root, size=32)          # second call writes nothing
    rles = read_siim_rle_csv(siim_paths(root)["rle_csv"])
    assert max(len(v) for v in rles.values()) > 1                 # several rows per image
    data = prepare_siim(root, tmp_path / "out", workers=1)
    assert len(data.train) == 48 and len(data.test) == 16 and data.unmatched == []
    assert set(data.conversions) == {"train", "test"}
    test_ids = {r["id"] for r in data.test}
    assert not test_ids & set(rles)                               # no test image has a row
    patients = {}
    for record in data.train:
        truth = _decode(rles[record["id"]], record["shape"])
        np.testing.assert_array_equal(read_grayscale_png(record["mask"]) // 255, truth)
        assert record["has_mask"] == bool(truth.any()) and record["shape"] == (32, 32)
        patients.setdefault(record["patient"], []).append(record["has_mask"])
        header = pydicom.dcmread(os.path.join(
            siim_paths(root)["train_dir"], f"{record['id']}.9", f"{record['id']}.8",
            f"{record['id']}.dcm"))
        assert header.PatientID == record["patient"] and header.BitsStored == 12
    # Four studies a patient, all healthy or all not: a split must group them.
    assert all(len(v) == 4 and len(set(v)) == 1 for v in patients.values())
