"""Streaming Dice coefficient and IoU for binary masks.

The two metrics of "SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle
competition (2019), section 4.1.5, which checkpoints on both; the per-image mean Dice with
its empty-mask rule is the competition's leaderboard metric.

Dice = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP + FN), on masks thresholded at
``threshold``. With ``per_image=True`` (default) each image is scored on its own and the
metric is the mean over images, with the SIIM-ACR pneumothorax competition's rule for empty
masks: an image whose truth and prediction are both empty scores 1, an empty truth with a
non-empty prediction scores 0 (and a non-empty truth with an empty prediction scores 0).
With ``per_image=False`` TP, FP and FN are summed over every pixel seen and the score is
computed once from the totals.
"""

import keras
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_flag,
    check_number,
    check_optional_int,
    fail,
    nan_if_any_nan,
    num_channels,
    register,
    segmentation_targets,
    static_rank,
)


class _BinaryOverlapMetric(keras.metrics.Metric):
    """Shared state and update of the binary Dice and IoU metrics.

    Subclasses give the formula as a static method ``_score(tp, fp, fn)``.
    """

    def __init__(self, threshold, per_image, from_logits, ignore_index, name, dtype):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.threshold = check_number(owner, "threshold", threshold, minimum=0, maximum=1)
        self.per_image = check_flag(owner, "per_image", per_image)
        self.from_logits = check_flag(owner, "from_logits", from_logits)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        names = ("score_sum", "image_count", "true_positives", "false_positives",
                 "false_negatives")
        for variable_name in names:
            setattr(self, variable_name, self.add_variable(
                shape=(), initializer="zeros", dtype="float64", name=variable_name))

    def _score_or_one(self, tp, fp, fn):
        """The score, and 1 where TP + FP + FN = 0 (truth and prediction both empty)."""
        empty = (tp + fp + fn) == 0
        safe_fp = ops.where(empty, ops.ones_like(fp), fp)
        return ops.where(empty, ops.ones_like(tp), self._score(tp, safe_fp, fn))

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add a batch: ``y_true`` {0, 1} masks (B, H, W[, 1]), ``y_pred`` (B, H, W[, 1]) scores.

        ``sample_weight`` (optional) is one weight per image, shape (B,).
        """
        owner = type(self).__name__
        y_pred = ops.convert_to_tensor(y_pred)
        if static_rank(owner, "y_pred", y_pred, (3, 4)) == 3:
            y_pred = ops.expand_dims(y_pred, -1)
        if num_channels(owner, y_pred) != 1:
            fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
                 "must have 1 channel (binary masks)")
        targets, valid = segmentation_targets(owner, y_true, 1, self.ignore_index, binary=True,
                                              y_pred=y_pred)
        scores = as_float32(y_pred)
        if self.from_logits:
            scores = ops.sigmoid(scores)
        predicted = ops.cast(scores > self.threshold, "float32") * valid
        truth = ops.cast(targets > 0.5, "float32") * valid
        axes = (1, 2, 3)
        tp = ops.cast(ops.sum(predicted * truth, axis=axes), "float64")
        fp = ops.cast(ops.sum(predicted * (1.0 - truth), axis=axes), "float64")
        fn = ops.cast(ops.sum((1.0 - predicted) * truth, axis=axes), "float64")
        # Thresholding maps a NaN score to background: keep it NaN instead (and faulty
        # targets, NaN where a compiled step cannot raise).
        tp = nan_if_any_nan(tp, scores, targets)
        # An image without a single valid pixel carries no information: weight 0.
        weights = ops.cast(ops.sum(valid, axis=axes) > 0, "float64")
        if sample_weight is not None:
            weights = weights * ops.cast(ops.reshape(sample_weight, (-1,)), "float64")
        self.score_sum.assign_add(ops.sum(weights * self._score_or_one(tp, fp, fn)))
        self.image_count.assign_add(ops.sum(weights))
        self.true_positives.assign_add(ops.sum(weights * tp))
        self.false_positives.assign_add(ops.sum(weights * fp))
        self.false_negatives.assign_add(ops.sum(weights * fn))

    def result(self):
        if self.per_image:
            count = ops.convert_to_tensor(self.image_count)
            value = self.score_sum / ops.where(count > 0, count, ops.ones_like(count))
        else:
            value = self._score_or_one(ops.convert_to_tensor(self.true_positives),
                                       ops.convert_to_tensor(self.false_positives),
                                       ops.convert_to_tensor(self.false_negatives))
        value = ops.where(self.image_count > 0, value, ops.zeros_like(value))
        return ops.cast(value, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(threshold=self.threshold, per_image=self.per_image,
                      from_logits=self.from_logits, ignore_index=self.ignore_index)
        return config


@register
class DiceCoefficient(_BinaryOverlapMetric):
    """Streaming Dice coefficient ``2TP / (2TP + FP + FN)`` of thresholded binary masks.

    A pixel is predicted foreground where its probability (``sigmoid(y_pred)`` when
    ``from_logits``) is strictly greater than ``threshold``; a truth pixel is foreground where
    its value is > 0.5. See the module docstring for ``per_image`` and the empty-mask rule.
    The result is 0 before any image was seen; images whose pixels are all ``ignore_index``
    are not counted.

    Args:
        threshold: probability threshold in [0, 1].
        per_image: mean of per-image scores (True) or one score over all pixels (False).
        from_logits: whether ``y_pred`` holds logits (False, the default of every metric of
            the package: probabilities).
        ignore_index: truth value of pixels to leave out, or None.
        name: metric name.
        dtype: dtype of the result.

    Example:
        Two images, the second empty in truth and prediction (it scores 1):

        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> masks = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], "float32")
        >>> probabilities = np.array([[[0.9, 0.2], [0.7, 0.1]],
        ...                           [[0.1, 0.3], [0.2, 0.4]]], "float32")
        >>> dice = kse.metrics.DiceCoefficient()
        >>> dice.update_state(masks, probabilities)
        >>> round(float(dice.result()), 4)               # (2 * 1 / 4 + 1) / 2
        0.75
    """

    def __init__(self, threshold=0.5, per_image=True, from_logits=False, ignore_index=None,
                 name="dice_coefficient", dtype=None):
        super().__init__(threshold, per_image, from_logits, ignore_index, name, dtype)

    @staticmethod
    def _score(tp, fp, fn):
        return 2.0 * tp / (2.0 * tp + fp + fn)


@register
class IoUScore(_BinaryOverlapMetric):
    """Streaming IoU (Jaccard index) ``TP / (TP + FP + FN)`` of thresholded binary masks.

    Arguments and conventions as :class:`DiceCoefficient`.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> masks = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], "float32")
        >>> logits = np.array([[[2.0, -1.0], [1.0, -3.0]],
        ...                    [[-2.0, -1.0], [-1.0, -0.5]]], "float32")
        >>> per_image = kse.metrics.IoUScore(from_logits=True)
        >>> pooled = kse.metrics.IoUScore(from_logits=True, per_image=False)
        >>> for metric in (per_image, pooled):
        ...     metric.update_state(masks, logits)
        >>> round(float(per_image.result()), 4), round(float(pooled.result()), 4)
        (0.6667, 0.3333)
    """

    def __init__(self, threshold=0.5, per_image=True, from_logits=False, ignore_index=None,
                 name="iou_score", dtype=None):
        super().__init__(threshold, per_image, from_logits, ignore_index, name, dtype)

    @staticmethod
    def _score(tp, fp, fn):
        return tp / (tp + fp + fn)
