"""Box IoU, max-score box fusion and mask scoring (paper 001, 3.5.1-3.5.2)."""

import numpy as np
import pytest

from keras_seg_extras.video import box_iou, fuse_boxes, mask_iou, mask_scored_scores


def _iou_loop(a, b):
    """Reference IoU, one pair at a time, written out."""
    out = np.zeros((len(a), len(b)))
    for i, (ax1, ay1, ax2, ay2) in enumerate(a):
        for j, (bx1, by1, bx2, by2) in enumerate(b):
            iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
            ih = max(0.0, min(ay2, by2) - max(ay1, by1))
            inter = iw * ih
            union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def _random_boxes(rng, n):
    corner = rng.uniform(0, 50, size=(n, 2))
    size = rng.uniform(0, 30, size=(n, 2))
    return np.concatenate([corner, corner + size], axis=1)


def test_box_iou_against_a_loop(rng):
    a, b = _random_boxes(rng, 7), _random_boxes(rng, 5)
    np.testing.assert_allclose(box_iou(a, b), _iou_loop(a, b), rtol=1e-12)
    np.testing.assert_allclose(box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]]), [[1 / 3]])
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0  # empty union, not NaN
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 7)
    with pytest.raises(ValueError, match=r"box_iou: `boxes_a`.*x2 >= x1"):
        box_iou([[5, 0, 1, 1]], a)
    with pytest.raises(ValueError, match=r"box_iou: `boxes_b`.*\(N, 4\)"):
        box_iou(a, [[0, 0, 1]])


def test_fused_cluster_score_is_its_maximum_and_coordinates_the_weighted_mean():
    model_a = np.array([[10, 10, 50, 50], [100, 100, 140, 150]], "float64")
    model_b = np.array([[12, 8, 52, 48], [300, 300, 310, 310]], "float64")
    model_c = np.array([[9, 11, 49, 51]], "float64")
    scores = [np.array([0.6, 0.7]), np.array([0.9, 0.3]), np.array([0.5])]
    fused = fuse_boxes([model_a, model_b, model_c], scores, [[1, 1], [1, 2], [1]],
                       iou_threshold=0.5)
    assert len(fused["scores"]) == 3
    cluster = int(np.flatnonzero(fused["boxes"][:, 0] < 20)[0])
    # The score of the fused box is the maximum of its cluster, not the mean (0.667).
    assert fused["scores"][cluster] == 0.9
    members = np.stack([model_b[0], model_a[0], model_c[0]])
    weights = np.array([0.9, 0.6, 0.5])
    np.testing.assert_allclose(fused["boxes"][cluster],
                               (weights[:, None] * members).sum(0) / weights.sum())
    assert sorted(map(tuple, fused["members"][cluster].tolist())) == [(0, 0), (1, 0), (2, 0)]
    # Sorted by decreasing score; lonely boxes keep their own score.
    np.testing.assert_allclose(fused["scores"], [0.9, 0.7, 0.3])
    np.testing.assert_array_equal(fused["labels"], [1, 1, 2])

    plain = fuse_boxes([model_a, model_b, model_c], scores, [[1, 1], [1, 2], [1]],
                       iou_threshold=0.5, weighted=False)
    np.testing.assert_allclose(plain["boxes"][0], members.mean(0))
    assert plain["scores"][0] == 0.9


def test_fusion_respects_labels_and_threshold():
    box = np.array([[0, 0, 10, 10]], "float64")
    fused = fuse_boxes([box, box], [[0.8], [0.4]], [[0], [1]])
    assert len(fused["scores"]) == 2  # same place, different classes: not fused
    shifted = np.array([[6, 0, 16, 10]], "float64")  # IoU 4/16 = 0.25 with box
    assert len(fuse_boxes([box, shifted], [[0.8], [0.4]], iou_threshold=0.3)["scores"]) == 2
    assert len(fuse_boxes([box, shifted], [[0.8], [0.4]], iou_threshold=0.2)["scores"]) == 1
    empty = fuse_boxes([np.zeros((0, 4))], [np.zeros(0)])
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,)


def test_fusion_errors():
    box = np.array([[0, 0, 10, 10]], "float64")
    with pytest.raises(ValueError, match=r"fuse_boxes: `scores_list\[0\]`.*\[0, 1\]"):
        fuse_boxes([box], [[1.5]])
    with pytest.raises(ValueError, match=r"fuse_boxes: `scores_list`"):
        fuse_boxes([box, box], [[0.5]])
    with pytest.raises(ValueError, match=r"fuse_boxes: `iou_threshold`"):
        fuse_boxes([box], [[0.5]], iou_threshold=0)
    with pytest.raises(ValueError, match=r"fuse_boxes: `model_weights`"):
        fuse_boxes([box], [[0.5]], model_weights=[-1])


def test_mask_scoring(rng):
    class_scores = rng.random(6)
    predicted_iou = rng.random(6)
    np.testing.assert_allclose(mask_scored_scores(class_scores, predicted_iou),
                               [c * m for c, m in zip(class_scores, predicted_iou)])
    with pytest.raises(ValueError, match=r"mask_scored_scores: `mask_ious`"):
        mask_scored_scores([0.5], [1.2])
    with pytest.raises(ValueError, match=r"mask_scored_scores: `mask_ious`.*shape"):
        mask_scored_scores([0.5, 0.2], [0.3])

    pred = rng.random((3, 8, 8))
    true = rng.random((3, 8, 8)) > 0.5
    expected = [np.logical_and(p >= 0.5, t).sum() / np.logical_or(p >= 0.5, t).sum()
                for p, t in zip(pred, true)]
    np.testing.assert_allclose(mask_iou(pred, true), expected)
    assert mask_iou(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))[0] == 1.0  # both empty
