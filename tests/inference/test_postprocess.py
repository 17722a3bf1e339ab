"""Post-processing: threshold, empty-image rule, small connected components (OpenCV), checked
against a flood-fill reference written here."""

import numpy as np
import pytest

from keras_seg_extras.inference import (
    apply_empty_rule,
    apply_image_gate,
    label_components,
    postprocess,
    remove_small_components,
)


def _components(mask, connectivity):
    """Label connected components by breadth-first search (reference, no OpenCV)."""
    labels = np.zeros(mask.shape, int)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    count = 0
    for start in zip(*np.nonzero(mask)):
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        queue = [start]
        while queue:
            y, x = queue.pop()
            for dy, dx in steps:
                ny, nx = y + dy, x + dx
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] \
                        and not labels[ny, nx]:
                    labels[ny, nx] = count
                    queue.append((ny, nx))
    return labels, count


def _reference(probabilities, threshold, min_area, min_pixels, connectivity=8):
    mask = probabilities > threshold
    if mask.sum() < min_pixels:
        return np.zeros(mask.shape, np.uint8)
    labels, count = _components(mask, connectivity)
    out = np.zeros(mask.shape, np.uint8)
    for label in range(1, count + 1):
        if (labels == label).sum() > min_area:  # the author's rule: strictly larger is kept
            out[labels == label] = 1
    return out


@pytest.mark.parametrize("connectivity", [4, 8])
def test_random_maps_match_the_reference(rng, connectivity):
    probabilities = rng.uniform(size=(3, 24, 20, 2)).astype("float32")
    out = postprocess(probabilities, threshold=0.6, min_area=4, min_pixels=5,
                      connectivity=connectivity)
    assert out.shape == probabilities.shape and out.dtype == np.uint8
    for b in range(3):
        for c in range(2):
            np.testing.assert_array_equal(
                out[b, :, :, c], _reference(probabilities[b, :, :, c], 0.6, 4, 5, connectivity))


def test_components_removed_per_class_and_empty_rule():
    probabilities = np.zeros((16, 16, 2), "float32")
    probabilities[1:4, 1:4, 0] = 0.9      # 9 pixels: kept
    probabilities[10, 10, 0] = 0.9        # 1 pixel: removed
    probabilities[5:7, 5:7, 1] = 0.8      # 4 pixels in class 1: kept with min_area 3
    probabilities[12, 12:14, 1] = 0.51    # 2 pixels
    probabilities[13, 14, 1] = 0.7        # diagonal neighbour: 3 with 8-connectivity
    out = postprocess(probabilities, threshold=0.5, min_area=2)
    assert out[..., 0].sum() == 9 and out[10, 10, 0] == 0
    assert out[..., 1].sum() == 7 and out[13, 14, 1] == 1 and out[5, 5, 1] == 1
    out4 = postprocess(probabilities, threshold=0.5, min_area=2, connectivity=4)
    # With 4-connectivity the diagonal chain splits into 2 + 1 pixels: both removed.
    assert out4[..., 1].sum() == 4 and out4[13, 14, 1] == 0 and out4[12, 12, 1] == 0
    # A component of exactly min_area pixels is removed (strictly larger is kept).
    out3 = postprocess(probabilities, threshold=0.5, min_area=3)
    assert out3[..., 1].sum() == 4 and out3[13, 14, 1] == 0 and out3[5, 5, 1] == 1
    out5 = postprocess(probabilities, threshold=0.5, min_area=4)
    assert out5[..., 1].sum() == 0 and out5[..., 0].sum() == 9
    # Fractional minimum areas (scaled from a reference size) follow the same rule.
    assert postprocess(probabilities, threshold=0.5, min_area=2.5)[..., 1].sum() == 7
    assert postprocess(probabilities, threshold=0.5, min_area=3.5)[..., 1].sum() == 4
    # Empty rule: class 1 has 4 + 3 = 7 pixels above 0.5, class 0 has 10.
    emptied = postprocess(probabilities, threshold=0.5, min_pixels=8)
    assert emptied[..., 1].sum() == 0 and emptied[..., 0].sum() == 10


def test_edge_cases():
    zeros = np.zeros((8, 8), "float32")
    ones = np.ones((8, 8), "float32")
    assert postprocess(zeros, min_area=1).sum() == 0
    assert postprocess(ones, threshold=0.5, min_area=63).sum() == 64
    assert postprocess(ones, threshold=0.5, min_area=64).sum() == 0
    assert postprocess(ones, threshold=0.5, min_area=0.5).sum() == 64
    # Strictly greater than the threshold: probability exactly 0.5 is background; 1.0 with
    # threshold 1.0 too.
    assert postprocess(np.full((4, 4), 0.5), threshold=0.5).sum() == 0
    assert postprocess(ones, threshold=1.0).sum() == 0
    assert postprocess(ones, threshold=0.0).sum() == 64
    # Per-channel thresholds.
    both = np.stack([np.full((4, 4), 0.4), np.full((4, 4), 0.4)], -1)
    out = postprocess(both, threshold=[0.3, 0.5])
    assert out[..., 0].sum() == 16 and out[..., 1].sum() == 0
    # float16 input
    assert postprocess(ones.astype("float16")).sum() == 64


def test_helpers_keep_shape():
    mask = np.zeros((2, 6, 6, 1), np.uint8)
    mask[0, :2, :2, 0] = 1
    mask[1, 5, 5, 0] = 1
    np.testing.assert_array_equal(remove_small_components(mask, 1)[1], 0)
    np.testing.assert_array_equal(remove_small_components(mask, 3)[0], mask[0])
    np.testing.assert_array_equal(remove_small_components(mask, 4)[0], 0)
    emptied = apply_empty_rule(mask, 2)
    assert emptied[0].sum() == 4 and emptied[1].sum() == 0
    np.testing.assert_array_equal(remove_small_components(mask, 0), mask)


@pytest.mark.parametrize("call, match", [
    (lambda: postprocess(np.zeros((2, 2, 2, 2, 2))), r"postprocess: `probabilities` must have shape"),
    (lambda: postprocess(np.zeros((4, 4)), threshold=1.5), r"`threshold` must be <= 1.0; received 1.5"),
    (lambda: postprocess(np.zeros((4, 4, 2)), threshold=[0.5]), r"`threshold` must be a number"),
    (lambda: postprocess(np.zeros((4, 4)), min_area=-1), r"`min_area` must be >= 0; received -1"),
    (lambda: postprocess(np.zeros((4, 4)), min_area=float("nan")), r"`min_area` must be finite"),
    (lambda: postprocess(np.zeros((4, 4)), min_pixels=2.5), r"`min_pixels` must be an integer"),
    (lambda: postprocess(np.zeros((4, 4)), connectivity=6), r"`connectivity` must be one of 4, 8"),
    (lambda: postprocess(np.array([["a"]])), r"`probabilities` must be numeric"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("connectivity", [4, 8])
def test_label_components_matches_the_flood_fill(rng, connectivity):
    mask = rng.uniform(size=(20, 17)) > 0.55
    labels, areas = label_components(mask, connectivity)
    reference, count = _components(mask, connectivity)
    assert areas.size == count
    # Same partition of the pixels (label numbers may differ): a bijection between labels.
    pairs = set(zip(labels[mask].tolist(), reference[mask].tolist()))
    assert len(pairs) == count and (labels[~mask] == 0).all()
    for ours, theirs in pairs:
        assert areas[ours - 1] == (reference == theirs).sum()
    empty_labels, empty_areas = label_components(np.zeros((3, 4)), connectivity)
    assert empty_areas.size == 0 and not empty_labels.any()


def test_image_gate_empties_below_the_gate_only():
    masks = np.zeros((3, 4, 4, 2), np.uint8)
    masks[:, 1:3, 1:3] = 1
    per_image = apply_image_gate(masks, np.array([0.3, 0.5, 0.0]), gate=0.5)
    assert per_image.dtype == np.uint8 and per_image.shape == masks.shape
    assert per_image.reshape(3, -1).sum(axis=1).tolist() == [0, 8, 0]     # 0.5 >= 0.5 kept
    per_channel = apply_image_gate(masks, np.array([[0.9, 0.1], [0.1, 0.9], [1.0, 1.0]]), 0.5)
    assert per_channel.sum(axis=(1, 2)).tolist() == [[4, 0], [0, 4], [4, 4]]
    # Gate 0 keeps every mask, even at a probability of exactly 0; gate 1 keeps p == 1 only.
    np.testing.assert_array_equal(apply_image_gate(masks, np.zeros(3), 0.0), masks)
    assert apply_image_gate(masks[0, ..., 0], 1.0, 1.0).sum() == 4
    assert apply_image_gate(masks[0, ..., 0], np.float32(0.999), 1.0).sum() == 0


@pytest.mark.parametrize("call, match", [
    (lambda: apply_image_gate(np.ones((2, 4, 4, 1)), [0.5], 0.5),
     r"apply_image_gate: `image_probability` must hold one probability per image \(2,\)"),
    (lambda: apply_image_gate(np.ones((4, 4)), [0.5, 0.2], 0.5),
     r"`image_probability` must be one number for the single image"),
    (lambda: apply_image_gate(np.ones((4, 4)), 1.5, 0.5), r"`image_probability` must be in"),
    (lambda: apply_image_gate(np.ones((4, 4)), np.nan, 0.5), r"`image_probability` must be in"),
    (lambda: apply_image_gate(np.ones((4, 4)), 0.5, -0.1), r"`gate` must be >= 0"),
    (lambda: label_components(np.ones((2, 4, 4))), r"label_components: `binary` must be one"),
    (lambda: label_components(np.ones((4, 4)), 6), r"`connectivity` must be one of 4, 8"),
])
def test_bad_gate_and_label_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
