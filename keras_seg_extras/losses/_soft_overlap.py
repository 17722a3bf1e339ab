"""The soft Dice / Jaccard computation shared by ``overlap`` and ``combine`` (package-internal).

A private module: its names are used by the loss modules of this subpackage only and are not
part of the public API (``keras_seg_extras.losses`` exports the losses built on them).
"""

from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_choice,
    check_flag,
    check_number,
    check_optional_int,
    fail,
    num_channels,
    pixel_weights,
    segmentation_targets,
    static_rank,
)

MODES = ("binary", "multilabel", "multiclass")


def prediction(owner, y_pred, mode):
    """Check rank and channel count against ``mode``; return float32 predictions and C."""
    y_pred = ops.convert_to_tensor(y_pred)
    static_rank(owner, "y_pred", y_pred, (4,))
    channels = num_channels(owner, y_pred)
    shape = f"tensor of shape {tuple(y_pred.shape)}"
    if mode == "binary" and channels != 1:
        fail(owner, "y_pred", shape, 'must have 1 channel with mode="binary" '
             '(use "multilabel" for several sigmoid channels)')
    if mode == "multiclass" and channels < 2:
        fail(owner, "y_pred", shape, 'must have at least 2 channels with mode="multiclass"')
    return as_float32(y_pred), channels


def probabilities_and_targets(owner, y_true, y_pred, mode, from_logits, ignore_index):
    """Probabilities, targets and validity, all (B, H, W, C) float32, ignored pixels zeroed."""
    scores, channels = prediction(owner, y_pred, mode)
    if mode == "multiclass":
        probabilities = ops.softmax(scores, axis=-1) if from_logits else scores
        targets, valid = segmentation_targets(owner, y_true, channels, ignore_index,
                                              y_pred=scores)
    else:
        probabilities = ops.sigmoid(scores) if from_logits else scores
        targets, valid = segmentation_targets(owner, y_true, channels, ignore_index,
                                              binary=True, y_pred=scores)
    return probabilities * valid, targets, valid


def soft_overlap_loss(owner, kind, y_true, y_pred, mode, from_logits, smooth, per_image,
                      ignore_index, sample_weight=None, soft=False):
    """Per-class soft Dice (``kind="dice"``) or Jaccard loss, averaged over the classes.

    ``soft=False``: the intersection is ``I = sum(w p y)``. ``soft=True``: the intersection
    is ``I = (sum(w p) + sum(w y) - sum(w |p - y|)) / 2`` (Wang et al. 2023), equal to the
    former when y is 0 or 1 and p in [0, 1], and such that p = y gives a loss of 0 for soft
    y as well. The cardinality is ``sum(w p) + sum(w y)`` in both.
    """
    check_choice(owner, "mode", mode, MODES)
    check_flag(owner, "from_logits", from_logits)
    check_flag(owner, "per_image", per_image)
    check_flag(owner, "soft", soft)
    smooth = check_number(owner, "smooth", smooth, minimum=0)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    weights = pixel_weights(owner, sample_weight, per_image)
    probabilities, targets, _ = probabilities_and_targets(
        owner, y_true, y_pred, mode, from_logits, ignore_index)

    def total(x):
        return ops.sum(x if weights is None else x * weights, axis=(1, 2) if per_image
                       else (0, 1, 2))

    cardinality = total(probabilities) + total(targets)
    if soft:
        intersection = 0.5 * (cardinality - total(ops.abs(probabilities - targets)))
    else:
        intersection = total(probabilities * targets)
    occupied = ops.not_equal(cardinality, 0.0)  # NaN predictions stay NaN
    if kind == "dice":
        numerator, denominator = 2.0 * intersection + smooth, cardinality + smooth
    else:
        numerator, denominator = intersection + smooth, cardinality - intersection + smooth
    # A safe denominator keeps the unused branch (and its gradient) finite when smooth = 0.
    denominator = ops.where(occupied, denominator, ops.ones_like(denominator))
    per_class = ops.where(occupied, 1.0 - numerator / denominator, ops.zeros_like(numerator))
    return ops.mean(per_class, axis=-1)
