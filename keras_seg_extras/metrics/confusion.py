"""Streaming confusion matrix and the per-class IoU derived from it.

The fairness metrics (``metrics/fairness.py``) are built on :class:`ConfusionMatrixIoU`: its
state variable ``total_confusion_matrix`` and its ``confusion_matrix()`` method are part of
the public API.
"""

import keras
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_binary_values,
    check_flag,
    check_number,
    check_optional_int,
    concrete_numpy,
    fail,
    faulty_to_nan,
    nan_if_any_nan,
    num_channels,
    register,
    segmentation_targets,
    static_rank,
)


def _iou(true_positive, union):
    """IoU = TP / (TP + FP + FN) per class (``union`` = TP + FP + FN, kept non-zero)."""
    return true_positive / union


def _dice(true_positive, union):
    """Dice = 2 TP / (2 TP + FP + FN) = 2 TP / (TP + union) per class (= 2 IoU / (1 + IoU))."""
    return 2.0 * true_positive / (true_positive + union)


_PROBABILITIES = ("single-channel scores with from_logits=False (probabilities; pass "
                  "from_logits=True for logits)")


@register
class ConfusionMatrixIoU(keras.metrics.Metric):
    """Mean intersection over union from a streaming confusion matrix.

    The matrix ``M`` (``num_classes`` x ``num_classes``) counts pixels: **rows are the true
    class, columns the predicted class**, so ``M[i, j]`` is the number of pixels of class ``i``
    predicted as ``j``. It accumulates over every ``update_state`` call until ``reset_state``.
    From it, for each class ``c`` (the Jaccard index of the class's pixels)::

        IoU_c = M[c, c] / (sum_j M[c, j] + sum_i M[i, c] - M[c, c])   # TP / (TP + FP + FN)

    ``result()`` is the mean of ``IoU_c`` over the classes that **occur**, i.e. whose
    denominator is non-zero (the class appeared in the truth or in the prediction); 0 before
    any pixel was counted. ``class_iou()`` returns all ``IoU_c`` with NaN for classes never
    seen. This is the usual semantic-segmentation mIoU (Cityscapes, Pascal VOC), the overall
    mIoU of Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops (2021), tables 1-3. To log every ``IoU_c`` by
    class name each epoch, use :class:`PerClassIoU`.

    Inputs:

    - ``y_true``: integer class maps (B, H, W) or (B, H, W, 1) with values in
      [0, num_classes) or ``ignore_index``; or one-hot maps (B, H, W, num_classes) (a pixel
      whose one-hot row is all zero is ignored).
    - ``y_pred``: scores (B, H, W, num_classes), logits or probabilities: the predicted class is
      the argmax, identical for both, so ``from_logits`` has no effect here. For a binary model
      (``num_classes=2``) ``y_pred`` may also have one channel: the predicted class is 1 where
      the probability exceeds 0.5 (the default ``from_logits=False``; scores outside [0, 1]
      then raise a ``ValueError`` on concrete values and make the matrix NaN inside a
      compiled step) or, with
      ``from_logits=True``, where the logit exceeds 0.
    - ``sample_weight`` (optional): (B,) per-image or (B, H, W) per-pixel weights; the
      matrix then holds weighted counts.

    Counts are kept in float64 (exact integers up to 2**53 pixels per cell) where the backend
    allows it (JAX without x64 falls back to float32). The variable is summed over replicas,
    so the result under ``tf.distribute`` equals the one-device value.

    Args:
        num_classes: number of classes C (>= 2).
        ignore_index: integer label value whose pixels are not counted (e.g. 255), or None.
        from_logits: whether single-channel binary scores are logits (threshold 0) or
            probabilities (threshold 0.5, the default of every metric of the package). Has no
            effect on multi-channel scores.
        name: metric name.
        dtype: dtype of ``result()``.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> labels = np.array([[[0, 1], [2, 255]]])           # (B, H, W); 255 is ignored
        >>> scores = np.eye(3, dtype="float32")[[[[0, 1], [1, 0]]]]   # predicts 0, 1, 1, 0
        >>> metric = kse.metrics.ConfusionMatrixIoU(num_classes=3, ignore_index=255)
        >>> metric.update_state(labels, scores)
        >>> np.asarray(metric.confusion_matrix()).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
        >>> np.asarray(metric.class_iou()).round(4).tolist()
        [1.0, 0.5, 0.0]
        >>> round(float(metric.result()), 4)
        0.5
    """

    def __init__(self, num_classes, ignore_index=None, from_logits=False,
                 name="confusion_matrix_iou", dtype=None):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.num_classes = check_number(owner, "num_classes", num_classes, minimum=2,
                                        integer=True)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        self.from_logits = check_flag(owner, "from_logits", from_logits)
        self.total_confusion_matrix = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float64",
            name="total_confusion_matrix",
        )

    def _predicted_classes(self, y_pred):
        """``(classes, scores)``: the predicted class map, and the scores the matrix is made
        NaN from (NaN where single-channel probabilities lie outside [0, 1])."""
        owner = type(self).__name__
        static_rank(owner, "y_pred", y_pred, (4,))
        channels = num_channels(owner, y_pred)
        if channels == 1 and self.num_classes == 2:
            scores = as_float32(y_pred)[..., 0]
            if self.from_logits:
                return ops.cast(scores > 0.0, "int32"), y_pred
            # Probabilities must be probabilities: logits read with threshold 0.5 would give
            # a wrong matrix without a word (this metric's from_logits default was True).
            # Concrete values raise; in a compiled step the matrix becomes NaN (a second
            # host callback in a JAX step hid the label check's message behind a TypeError).
            if concrete_numpy(scores) is not None:
                check_binary_values(owner, scores, kind=_PROBABILITIES)
            outside = ops.logical_not(ops.logical_and(scores >= 0.0, scores <= 1.0))
            return ops.cast(scores > 0.5, "int32"), faulty_to_nan(scores, outside)
        if channels != self.num_classes:
            fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
                 f"must have num_classes={self.num_classes} channels"
                 + (" (or 1 for a binary model)" if self.num_classes == 2 else ""))
        return ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_pred

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Add the pixels of one batch to the matrix."""
        owner = type(self).__name__
        y_pred = ops.convert_to_tensor(y_pred)
        predicted, checked_scores = self._predicted_classes(y_pred)
        targets, valid = segmentation_targets(owner, y_true, self.num_classes,
                                              self.ignore_index, y_pred=y_pred)
        truth = ops.cast(ops.argmax(targets, axis=-1), "int32")
        weights = valid[..., 0]
        known = [d for d in (truth.shape[1:], predicted.shape[1:]) if None not in d]
        if len(known) == 2 and tuple(known[0]) != tuple(known[1]):
            fail(owner, "y_true", f"labels of spatial shape {tuple(truth.shape[1:])}",
                 f"must match the spatial shape of y_pred {tuple(y_pred.shape)}")
        if sample_weight is not None:
            sample_weight = as_float32(sample_weight)
            if len(sample_weight.shape) == 1:
                sample_weight = ops.reshape(sample_weight, (-1, 1, 1))
            elif len(sample_weight.shape) == 4:
                sample_weight = sample_weight[..., 0]
            weights = weights * sample_weight
        c = self.num_classes
        index = ops.reshape(truth * c + predicted, (-1,))
        weights = ops.reshape(weights, (-1,))
        # A segment sum over a fixed number (c * c + 1) of bins has a static shape, which XLA
        # and JAX need (bincount's output size depends on the data).
        if sample_weight is None:
            # Integer counts are exact: ignored pixels go to an extra bin that is dropped.
            index = ops.where(weights > 0, index, c * c)
            counts = ops.segment_sum(ops.ones_like(index), index, num_segments=c * c + 1)
        else:
            counts = ops.segment_sum(weights, index, num_segments=c * c + 1)
        counts = ops.reshape(ops.cast(counts[: c * c], "float64"), (c, c))
        # NaN scores (argmax picks a class for them) or faulty labels (NaN validity, see
        # segmentation_targets) make the whole matrix NaN, never a silent count.
        counts = nan_if_any_nan(counts, checked_scores, weights)
        self.total_confusion_matrix.assign_add(counts)

    def confusion_matrix(self):
        """The accumulated (num_classes, num_classes) matrix, rows truth, columns prediction."""
        return ops.copy(self.total_confusion_matrix)

    def _iou_parts(self):
        matrix = self.confusion_matrix()
        true_positive = ops.diagonal(matrix)
        union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positive
        return true_positive, union

    def _per_class(self, score, unseen):
        """``score(TP, TP + FP + FN)`` per class (num_classes,), ``unseen`` (0 or NaN) where
        the union is 0. A NaN matrix (NaN scores, or a faulty label in a compiled step) keeps
        its NaN: its union is not equal to 0."""
        true_positive, union = self._iou_parts()
        seen = ops.not_equal(union, 0.0)
        values = score(true_positive, ops.where(seen, union, ops.ones_like(union)))
        return ops.where(seen, values, ops.zeros_like(union) + unseen)

    def _mean_over_seen(self, score):
        """Mean of the per-class scores over the classes seen; 0 when none was, NaN if NaN."""
        _, union = self._iou_parts()
        count = ops.sum(ops.cast(union > 0, "float64"))
        mean = ops.sum(self._per_class(score, 0.0)) / ops.maximum(count, 1.0)
        return ops.cast(nan_if_any_nan(mean, union), self.dtype)

    def class_iou(self):
        """Per-class IoU (num_classes,), float64; NaN for classes never seen in truth or prediction."""
        return self._per_class(_iou, float("nan"))

    def result(self):
        """The mean IoU over the classes seen (0 before any pixel; NaN if the matrix is)."""
        return self._mean_over_seen(_iou)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, ignore_index=self.ignore_index,
                      from_logits=self.from_logits)
        return config
