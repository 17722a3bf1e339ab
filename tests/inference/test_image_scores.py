"""Per-image Dice and IoU (SIIM's empty rule) against set-based references written here."""

import numpy as np
import pytest

from keras_seg_extras.inference import mask_dice_iou, per_image_dice_iou


def _reference(prediction, truth):
    p = {tuple(i) for i in np.argwhere(prediction)}
    t = {tuple(i) for i in np.argwhere(truth)}
    if not p and not t:
        return 1.0, 1.0
    return 2 * len(p & t) / (len(p) + len(t)), len(p & t) / len(p | t)


def test_counts_and_masks_match_the_set_reference():
    rng = np.random.default_rng(0)
    cases = [(rng.random((9, 7)) > q, rng.random((9, 7)) > r)
             for q, r in [(0.5, 0.5), (0.9, 0.2), (1.0, 0.7), (0.6, 1.0), (1.0, 1.0)]]
    cases.append((np.ones((4, 4), bool), np.ones((4, 4), bool)))           # perfect, all fg
    counts = np.array([[(p & t).sum(), p.sum(), t.sum()] for p, t in cases])
    dice, iou = per_image_dice_iou(*counts.T)
    expected = np.array([_reference(p, t) for p, t in cases])
    np.testing.assert_allclose(dice, expected[:, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(iou, expected[:, 1], rtol=0, atol=1e-15)
    np.testing.assert_allclose([mask_dice_iou(p, t) for p, t in cases], expected, rtol=0,
                               atol=1e-15)
    # Empty truth: predicting nothing is 1, one stray pixel is 0 (both scores).
    assert mask_dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    stray = np.zeros((3, 3))
    stray[1, 1] = 1
    assert mask_dice_iou(stray, np.zeros((3, 3))) == (0.0, 0.0)


def test_broadcasting_keeps_the_grid_shape():
    dice, iou = per_image_dice_iou(np.zeros((2, 3)), np.zeros((2, 3)), np.array([[0], [4]]))
    np.testing.assert_array_equal(dice, [[1, 1, 1], [0, 0, 0]])
    assert iou.shape == (2, 3) and dice.dtype == np.float64


@pytest.mark.parametrize("call, match", [
    (lambda: per_image_dice_iou(-1, 0, 0), r"per_image_dice_iou: `counts` must be finite"),
    (lambda: per_image_dice_iou(np.nan, 1, 1), r"`counts` must be finite and >= 0"),
    (lambda: per_image_dice_iou(3, 2, 5), r"`intersection` must be at most the predicted"),
    (lambda: mask_dice_iou(np.zeros((2, 2)), np.zeros((2, 3))),
     r"mask_dice_iou: `prediction` must have the truth's shape \(2, 3\)"),
])
def test_bad_counts_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
