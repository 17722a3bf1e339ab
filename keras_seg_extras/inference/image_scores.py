"""Per-image Dice and IoU from pixel counts, with the SIIM rule for empty images.

The SIIM-ACR competition scored the mean Dice coefficient over images ("SIIM-ACR Pneumothorax
Segmentation", work report of SIIM's Kaggle competition, 2019, section 1.2; Dice = 2TP /
(2TP + FP + FN) and IoU = TP / (TP + FP + FN), section 4.1.5), each image on its own:

    Dice_i = 2 |P_i and T_i| / (|P_i| + |T_i|),    IoU_i = |P_i and T_i| / |P_i or T_i|,

and 1 for both when the prediction P_i and the truth T_i are both empty (the competition's
rule for empty images; the formulas are undefined there), so predicting
nothing on a healthy image is a perfect score and a single false pixel there costs the whole
image. These are NumPy functions of counts at each image's original size, evaluated after
post-processing; the Keras metrics of :mod:`keras_seg_extras.metrics` are their
batch-accumulated, in-graph counterparts during training.
"""

import numpy as np

from keras_seg_extras._common import fail

_OWNER = "per_image_dice_iou"


def per_image_dice_iou(intersection, predicted, truth):
    """Dice and IoU of each image from its pixel counts (both 1 when nothing is predicted
    or true).

    Args:
        intersection: ``|P and T|`` per image; any shape of non-negative counts.
        predicted: ``|P|`` per image, broadcastable with ``intersection``.
        truth: ``|T|`` per image, broadcastable with ``intersection``.

    Returns:
        ``(dice, iou)``: float64 arrays of the broadcast shape.

    Raises:
        ValueError: for negative counts or an intersection larger than either set.

    Example:
        >>> dice, iou = per_image_dice_iou([30, 0, 0], [40, 0, 5], [50, 0, 0])
        >>> dice.round(4), iou.round(4)
        (array([0.6667, 1.    , 0.    ]), array([0.5, 1. , 0. ]))
    """
    counts = np.broadcast_arrays(*(np.asarray(v, np.float64)
                                   for v in (intersection, predicted, truth)))
    intersection, predicted, truth = counts
    if any(np.any(~np.isfinite(c) | (c < 0)) for c in counts):
        fail(_OWNER, "counts", "a negative or non-finite count", "must be finite and >= 0")
    if np.any((intersection > predicted) | (intersection > truth)):
        fail(_OWNER, "intersection", "a count above |P| or |T|",
             "must be at most the predicted and the true pixel counts")
    total = predicted + truth
    union = total - intersection
    dice = np.where(total == 0, 1.0, 2.0 * intersection / np.maximum(total, 1.0))
    iou = np.where(union == 0, 1.0, intersection / np.maximum(union, 1.0))
    return dice, iou


def mask_dice_iou(prediction, truth):
    """Dice and IoU of one image's binary masks (nonzero = foreground), SIIM's empty rule.

    Args:
        prediction: (H, W) mask.
        truth: (H, W) mask of the same shape.

    Returns:
        ``(dice, iou)`` as Python floats.

    Example:
        >>> truth = np.array([[1, 1], [0, 0]])
        >>> mask_dice_iou(np.array([[1, 0], [0, 0]]), truth)
        (0.6666666666666666, 0.5)
        >>> mask_dice_iou(np.zeros((2, 2)), np.zeros((2, 2)))
        (1.0, 1.0)
    """
    prediction, truth = np.asarray(prediction) != 0, np.asarray(truth) != 0
    if prediction.shape != truth.shape:
        fail("mask_dice_iou", "prediction", f"shape {prediction.shape}",
             f"must have the truth's shape {truth.shape}")
    dice, iou = per_image_dice_iou((prediction & truth).sum(), prediction.sum(), truth.sum())
    return float(dice), float(iou)
