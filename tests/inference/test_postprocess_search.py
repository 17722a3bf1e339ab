"""Post-processing at the original size and its streamed search, against NumPy/SciPy
references written here (component labelling by scipy.ndimage, not OpenCV)."""

import numpy as np
import pytest
from scipy import ndimage

from keras_seg_extras.inference import (
    PostprocessingSearch,
    postprocess_at_size,
    resize_probabilities,
    scale_min_area,
)


def _bilinear(image, shape):
    """Half-pixel-centre bilinear resize with edge clamping (OpenCV's INTER_LINEAR rule)."""
    height, width = shape
    ys = np.clip((np.arange(height) + 0.5) * image.shape[0] / height - 0.5, 0, image.shape[0] - 1)
    xs = np.clip((np.arange(width) + 0.5) * image.shape[1] / width - 0.5, 0, image.shape[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, image.shape[0] - 1), np.minimum(x0 + 1, image.shape[1] - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    image = image.astype(np.float64)
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def _reference_mask(full, threshold, min_area_scaled, connectivity):
    structure = np.ones((3, 3)) if connectivity == 8 else None
    labels, count = ndimage.label(full > threshold, structure=structure)
    out = np.zeros(full.shape, np.uint8)
    for label in range(1, count + 1):
        if (labels == label).sum() > min_area_scaled:
            out[labels == label] = 1
    return out


def _reference_scores(pairs, thresholds, min_areas, reference, connectivity):
    dice = np.zeros((len(thresholds), len(min_areas)))
    iou = np.zeros_like(dice)
    for probabilities, truth in pairs:
        full = _bilinear(probabilities, truth.shape).astype(np.float32)
        for i, t in enumerate(thresholds):
            for j, a in enumerate(min_areas):
                mask = _reference_mask(full, t, a * truth.size / reference ** 2, connectivity)
                inter = float((mask & (truth > 0)).sum())
                p, g = float(mask.sum()), float((truth > 0).sum())
                dice[i, j] += 1.0 if p + g == 0 else 2 * inter / (p + g)
                iou[i, j] += 1.0 if p + g == 0 else inter / (p + g - inter)
    return dice / len(pairs), iou / len(pairs)


def _blobs(rng, shape, count, scale):
    """A smooth random probability map with a few blobs of various sizes."""
    field = np.zeros(shape)
    for _ in range(count):
        y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        radius = rng.uniform(0.5, 4) * scale
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        field = np.maximum(field, np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * radius ** 2)))
    return (field * rng.uniform(0.6, 1.0)).astype(np.float32)


@pytest.mark.parametrize("connectivity", [4, 8])
def test_search_matches_the_reference_on_mixed_sizes_and_empty_masks(rng, connectivity):
    thresholds, min_areas, reference = (0.0, 0.3, 0.5, 0.8), (0, 100, 400, 2000), 128
    pairs = []
    for k, (model_size, original) in enumerate([(16, (40, 40)), (24, (48, 36)), (20, (20, 20)),
                                                (16, (64, 64)), (32, (32, 32))]):
        probabilities = _blobs(rng, (model_size, model_size), 4, model_size / 10)
        truth = (_blobs(rng, original, 2, original[0] / 12) > 0.5).astype(np.uint8)
        if k == 1:
            truth[:] = 0                                   # healthy image
        if k == 2:
            probabilities[:] = 0.0                         # predicts nothing
        if k == 3:
            truth[:] = 0
            probabilities[:] = 0.0                         # empty and empty: scores 1
        pairs.append((probabilities, truth))
    search = PostprocessingSearch(thresholds, min_areas, reference_size=reference,
                                  connectivity=connectivity)
    for probabilities, truth in pairs:
        search.update(probabilities, truth)
    dice, iou = _reference_scores(pairs, thresholds, min_areas, reference, connectivity)
    assert search.count == 5
    np.testing.assert_allclose(search.dice(), dice, rtol=0, atol=1e-12)
    np.testing.assert_allclose(search.iou(), iou, rtol=0, atol=1e-12)
    best = search.best()
    i, j = np.unravel_index(np.argmax(dice), dice.shape)
    assert best == {"threshold": thresholds[i], "min_area": min_areas[j],
                    "dice": pytest.approx(dice[i, j], abs=1e-12),
                    "iou": pytest.approx(iou[i, j], abs=1e-12)}
    assert search.score(0.5, 400) == {"dice": pytest.approx(dice[2, 2], abs=1e-12),
                                      "iou": pytest.approx(iou[2, 2], abs=1e-12)}


def test_strict_area_rule_scaled_to_the_original_size():
    # A 4 x 4 square at a 64 x 64 original: 16 px. min_area 4096 at reference 1024 scales to
    # 4096 * 64 * 64 / 1024**2 = 16, so the square is removed (not strictly larger) ...
    probabilities = np.zeros((64, 64), np.float32)
    probabilities[10:14, 10:14] = 0.9
    truth = (probabilities > 0).astype(np.uint8)
    assert scale_min_area(4096, (64, 64)) == 16.0
    search = PostprocessingSearch((0.5,), (0, 4096, 4095), reference_size=1024)
    search.update(probabilities, truth)
    np.testing.assert_allclose(search.dice(), [[1.0, 0.0, 1.0]])
    assert postprocess_at_size(probabilities, (64, 64), 0.5, 4096).sum() == 0
    # ... and kept by 4095 (15.996 px at 64 x 64).
    assert postprocess_at_size(probabilities, (64, 64), 0.5, 4095).sum() == 16


def test_threshold_is_strict_at_exactly_zero_and_one():
    ones = np.ones((8, 8), np.float32)
    truth = np.ones((8, 8), np.uint8)
    search = PostprocessingSearch((0.0, 1.0), (0,))
    search.update(ones, truth)                     # p = 1 > 0 everywhere; p = 1 is not > 1
    search.update(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8))  # p = 0: empty
    np.testing.assert_allclose(search.dice()[:, 0], [1.0, 0.5])
    np.testing.assert_allclose(search.iou()[:, 0], [1.0, 0.5])


@pytest.mark.parametrize("source, target", [((16, 16), (40, 40)), ((32, 24), (20, 50)),
                                            ((10, 10), (10, 10))])
def test_resize_matches_a_numpy_bilinear_reference(rng, source, target):
    image = rng.uniform(size=source).astype(np.float32)
    np.testing.assert_allclose(resize_probabilities(image, target), _bilinear(image, target),
                               rtol=0, atol=2e-6)


def test_postprocess_at_size_matches_the_reference(rng):
    probabilities = _blobs(rng, (32, 32), 6, 3)
    out = postprocess_at_size(probabilities, (96, 80), threshold=0.4, min_area=3000,
                              reference_size=256)
    full = _bilinear(probabilities, (96, 80)).astype(np.float32)
    expected = _reference_mask(full, 0.4, 3000 * 96 * 80 / 256 ** 2, 8)
    assert out.shape == (96, 80) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("call, match", [
    (lambda: PostprocessingSearch((1.5,), (0,)), r"PostprocessingSearch: `thresholds` must be"),
    (lambda: PostprocessingSearch((), (0,)), r"`thresholds` must be non-empty"),
    (lambda: PostprocessingSearch((0.5,), (-1,)), r"`min_areas` must hold numbers >= 0"),
    (lambda: PostprocessingSearch((0.5,), (0,), connectivity=6), r"`connectivity` must be one"),
    (lambda: PostprocessingSearch((0.5,), (0,)).best(), r"`count` must be positive"),
    (lambda: PostprocessingSearch((0.5,), (0,)).update(np.zeros((4, 4)), np.zeros((1, 4, 4))),
     r"`truth` must be one \(H, W\) mask"),
    (lambda: PostprocessingSearch((0.5,), (0,)).update(np.full((4, 4), np.nan), np.zeros((4, 4))),
     r"`probabilities` must be finite"),
    (lambda: resize_probabilities(np.zeros((1, 4, 4)), (8, 8)),
     r"resize_probabilities: `probabilities` must be one \(H, W\) map"),
    (lambda: scale_min_area(10, (0, 4)), r"scale_min_area: `shape` must be positive"),
    (lambda: scale_min_area(-1, (4, 4)), r"`min_area` must be >= 0"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_score_off_the_grid_is_refused():
    search = PostprocessingSearch((0.5,), (0,))
    search.update(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"`setting` must be on the grid; received \(0.4, 0\)"):
        search.score(0.4, 0)


def test_gates_match_the_reference_with_the_empty_rule_applied_before_scoring(rng):
    """With gates, an image whose classifier probability is below the gate scores as if
    nothing were predicted; gate 0 is the plain search (p exactly 0 is kept: p >= 0)."""
    thresholds, min_areas, gates = (0.3, 0.6), (0, 500), (0.0, 0.5, 0.9, 1.0)
    pairs, heads = [], [0.0, 0.95, 0.5, 0.2, 1.0]
    for k, original in enumerate([(24, 24), (30, 20), (16, 16), (40, 40), (24, 24)]):
        probabilities = _blobs(rng, (16, 16), 3, 2)
        truth = (_blobs(rng, original, 2, original[0] / 8) > 0.5).astype(np.uint8)
        if k in (0, 3):
            truth[:] = 0                                         # healthy images
        pairs.append((probabilities, truth))
    gated = PostprocessingSearch(thresholds, min_areas, reference_size=64, gates=gates)
    plain = PostprocessingSearch(thresholds, min_areas, reference_size=64)
    for (probabilities, truth), head in zip(pairs, heads):
        gated.update(probabilities, truth, image_probability=head)
        plain.update(probabilities, truth)
    assert gated.dice().shape == (4, 2, 2)
    for g, gate in enumerate(gates):
        # Reference: the pairs of the images the gate empties get an all-zero probability map.
        emptied = [(p if head >= gate else np.zeros_like(p), t)
                   for (p, t), head in zip(pairs, heads)]
        dice, iou = _reference_scores(emptied, thresholds, min_areas, 64, 8)
        np.testing.assert_allclose(gated.dice()[g], dice, rtol=0, atol=1e-12)
        np.testing.assert_allclose(gated.iou()[g], iou, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(gated.dice()[0], plain.dice())
    best = gated.best()
    g, i, j = np.unravel_index(np.argmax(gated.dice()), gated.dice().shape)
    assert best == {"gate": gates[g], "threshold": thresholds[i], "min_area": min_areas[j],
                    "dice": gated.dice()[g, i, j], "iou": gated.iou()[g, i, j]}
    assert gated.score(0.3, 500, gate=0.5)["dice"] == gated.dice()[1, 0, 1]


@pytest.mark.parametrize("call, match", [
    (lambda: PostprocessingSearch((0.5,), (0,), gates=(1.2,)), r"`gates` must be None or"),
    (lambda: PostprocessingSearch((0.5,), (0,), gates=()), r"`gates` must be None or non-empty"),
    (lambda: PostprocessingSearch((0.5,), (0,), gates=(0.5,)).update(
        np.zeros((4, 4)), np.zeros((4, 4))),
     r"`image_probability` must be given exactly when the search has gates \(gates=\[0.5\]\)"),
    (lambda: PostprocessingSearch((0.5,), (0,)).update(np.zeros((4, 4)), np.zeros((4, 4)), 0.3),
     r"`image_probability` must be given exactly when the search has gates \(gates=None\)"),
    (lambda: PostprocessingSearch((0.5,), (0,), gates=(0.5,)).update(
        np.zeros((4, 4)), np.zeros((4, 4)), image_probability=1.5),
     r"`image_probability` must be <= 1"),
])
def test_bad_gate_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
