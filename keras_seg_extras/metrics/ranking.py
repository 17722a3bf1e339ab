"""Ranking metrics for multi-label classification: LRAP and mean average precision.

Both binarise the (possibly soft) targets with ``y_true >= threshold`` and rank the
predictions as given (probabilities or logits: the ranking is the same unless sigmoid
saturation creates ties in float32, so pass what you evaluate). Okazaki, Kong, Klinkigt and
Yoshinaga, "Hitachi at TRECVID DSDI 2020", TRECVID 2020 notebook paper (2020), report LRAP
(table 2, scikit-learn's ``label_ranking_average_precision_score``) and mAP (table 3).
"""

import keras
import numpy as np
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_binary_values,
    check_same_shape,
    check_number,
    concrete_numpy,
    fail,
    faulty_to_nan,
    nan_if_any_nan,
    on_meta_device,
    register,
)


def _check_pair(owner, y_true, y_pred, num_classes=None):
    y_true = ops.convert_to_tensor(y_true)
    y_pred = ops.convert_to_tensor(y_pred)
    if len(y_pred.shape) != 2:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             "must have rank 2 (batch, classes)")
    check_same_shape(owner, y_true, y_pred)
    if num_classes is not None and y_pred.shape[-1] is not None and y_pred.shape[-1] != num_classes:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             f"must have num_classes={num_classes} columns")
    return check_binary_values(owner, as_float32(y_true)), as_float32(y_pred)


def _sample_weights(owner, sample_weight, batch_like):
    if sample_weight is None:
        return ops.ones_like(batch_like[:, 0])
    weights = ops.reshape(as_float32(sample_weight), (-1,))
    values = concrete_numpy(weights)
    if values is not None and (not np.all(np.isfinite(values)) or np.any(values < 0)):
        fail(owner, "sample_weight", values[:5].tolist(), "must hold finite numbers >= 0")
    return weights


def label_ranking_average_precision_per_sample(relevant, scores):
    """Per-sample LRAP as scikit-learn defines it, in ``keras.ops``.

    For sample b with relevant set L (``relevant`` 0/1) and scores s::

        LRAP_b = (1/|L|) Σ_{j∈L} |{k∈L : s_k >= s_j}| / |{k : s_k >= s_j}|

    and 1 when L is empty or holds every label (scikit-learn's convention).
    Memory: one (B, C, C) comparison tensor.

    Args:
        relevant: (B, C) float 0/1.
        scores: (B, C) float scores.

    Returns:
        (B,) float32.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> relevant = np.array([[1, 0, 0], [0, 1, 1]], "float32")
        >>> scores = np.array([[0.8, 0.3, 0.1], [0.9, 0.6, 0.2]], "float32")
        >>> per_sample = kse.metrics.label_ranking_average_precision_per_sample(relevant, scores)
        >>> np.asarray(per_sample).round(4).tolist()           # (1/2 + 2/3) / 2 for the second
        [1.0, 0.5833]
    """
    at_least = ops.cast(
        ops.greater_equal(scores[:, None, :], scores[:, :, None]), "float32"
    )  # [b, j, k] = s_k >= s_j
    rank = ops.sum(at_least, axis=-1)
    relevant_rank = ops.sum(at_least * relevant[:, None, :], axis=-1)
    n_relevant = ops.sum(relevant, axis=-1)
    num_classes = ops.cast(ops.shape(relevant)[-1], "float32")
    per_label = relevant * relevant_rank / ops.maximum(rank, 1.0)
    ranked = ops.sum(per_label, axis=-1) / ops.maximum(n_relevant, 1.0)
    degenerate = ops.logical_or(ops.equal(n_relevant, 0.0), ops.equal(n_relevant, num_classes))
    return ops.where(degenerate, ops.ones_like(ranked), ranked)


@register
class LabelRankingAveragePrecision(keras.metrics.Metric):
    """Label ranking average precision (LRAP), streaming.

    Equal to scikit-learn's ``label_ranking_average_precision_score(y_true >= threshold,
    y_pred, sample_weight=...)`` over everything seen since the last reset::

        LRAP = (1/Σ w_b) Σ_b w_b (1/|L_b|) Σ_{j∈L_b} |{k∈L_b : s_bk >= s_bj}| / |{k : s_bk >= s_bj}|

    Ties count against the ranking (a tied label counts as ranked above), exactly as in
    scikit-learn, and a sample with no relevant label or with all labels relevant scores 1
    (scikit-learn's convention: the ranking has no meaning there). LRAP is a per-sample
    average, so the state is two scalars (weighted sum and total weight); each update costs
    a (B, C, C) comparison tensor. Okazaki et al. (2020) report it in table 2.

    Args:
        threshold: targets with ``y_true >= threshold`` are relevant (soft labels are
            binarised this way).
        name, dtype: as for any Keras metric.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> soft_targets = np.array([[0.9, 0.2, 0.0], [0.0, 0.6, 1.0]], "float32")
        >>> scores = np.array([[0.8, 0.3, 0.1], [0.9, 0.6, 0.2]], "float32")
        >>> lrap = kse.metrics.LabelRankingAveragePrecision()
        >>> lrap.update_state(soft_targets, scores)
        >>> round(float(lrap.result()), 4)                       # (1 + 0.5833) / 2
        0.7917
    """

    def __init__(self, threshold=0.5, name="lrap", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = check_number(type(self).__name__, "threshold", threshold)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total",
                                       dtype="float32")
        self.weight = self.add_variable(shape=(), initializer="zeros", name="weight",
                                        dtype="float32")

    def update_state(self, y_true, y_pred, sample_weight=None):
        owner = type(self).__name__
        y_true, y_pred = _check_pair(owner, y_true, y_pred)
        relevant = ops.cast(ops.greater_equal(y_true, self.threshold), "float32")
        weights = _sample_weights(owner, sample_weight, y_pred)
        per_sample = label_ranking_average_precision_per_sample(relevant, y_pred)
        per_sample = nan_if_any_nan(per_sample, y_true, y_pred)  # comparisons drop NaN
        self.total.assign_add(ops.sum(per_sample * weights))
        self.weight.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.weight)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


def average_precision_per_class(relevant, scores, weights):
    """scikit-learn's ``average_precision_score`` for every column, in ``keras.ops``.

    AP_c = Σ_t (R_t - R_{t-1}) P_t over the distinct score thresholds t (predicted positive
    when s >= t), i.e. each positive sample contributes the precision at its own score,
    ties included. Rows with weight 0 (and score -inf, see ``MeanAveragePrecision``) do not
    count.

    Args:
        relevant: (N, C) float 0/1.
        scores: (N, C) float scores.
        weights: (N,) float sample weights.

    Returns:
        ``(ap, positives)``: (C,) AP per class (0 where a class has no positive) and (C,)
        the weighted number of positives.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> relevant = np.array([[1, 0, 0], [0, 1, 1]], "float32")
        >>> scores = np.array([[0.8, 0.3, 0.1], [0.9, 0.6, 0.2]], "float32")
        >>> ap, positives = kse.metrics.average_precision_per_class(
        ...     relevant, scores, np.ones(2, "float32"))
        >>> np.asarray(ap).tolist(), np.asarray(positives).tolist()
        ([0.5, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    n = ops.shape(scores)[0]
    c = ops.shape(scores)[1]
    order = ops.argsort(-scores, axis=0)
    sorted_scores = ops.take_along_axis(scores, order, axis=0)
    sorted_relevant = ops.take_along_axis(relevant, order, axis=0)
    sorted_weights = ops.take(weights, order)  # (N, C)
    # Groups of equal scores in each column (a new group wherever the score changes).
    changes = ops.not_equal(sorted_scores[1:], sorted_scores[:-1])
    first = ops.ones_like(changes[:1])
    starts = ops.cast(ops.concatenate([first, changes], axis=0), "int32")
    group = ops.cumsum(starts, axis=0) - 1
    segment = ops.transpose(group + ops.arange(c, dtype="int32")[None, :] * n)
    segment = ops.reshape(segment, (-1,))
    positives = ops.reshape(ops.transpose(sorted_relevant * sorted_weights), (-1,))
    everything = ops.reshape(ops.transpose(sorted_weights), (-1,))
    group_pos = ops.reshape(ops.segment_sum(positives, segment, num_segments=n * c), (c, n))
    group_all = ops.reshape(ops.segment_sum(everything, segment, num_segments=n * c), (c, n))
    tp = ops.cumsum(group_pos, axis=1)
    predicted = ops.cumsum(group_all, axis=1)
    precision = ops.divide_no_nan(tp, predicted)  # 0 while no weight is above the threshold
    total_pos = tp[:, -1]
    ap = ops.divide_no_nan(ops.sum(group_pos * precision, axis=1), total_pos)
    return ap, total_pos


def _gather_replicas(*tensors):
    """Inside a ``tf.distribute`` replica context with R > 1 replicas: every replica's tensors
    concatenated along the batch axis in replica order (the global batch); else unchanged."""
    if keras.backend.backend() != "tensorflow":
        return tensors
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return tuple(context.all_gather(tensor, axis=0) for tensor in tensors)


@register
class MeanAveragePrecision(keras.metrics.Metric):
    """Mean average precision over classes, streaming, exact (scikit-learn's definition).

    ``mAP = mean over classes with at least one positive of average_precision_score(
    y_true[:, c] >= threshold, y_pred[:, c], sample_weight=...)``, with
    ``AP = Σ_t (R_t - R_{t-1}) P_t`` over the distinct score thresholds (ties handled as in
    scikit-learn). Classes without a positive target are excluded from the mean (their AP
    is undefined); when no class has one, the result is 0. ``per_class()`` returns the
    per-class values, NaN for the excluded classes.

    Streaming and memory: AP needs every score, so the metric keeps fixed-size buffers of
    ``capacity`` rows: scores (capacity, C) and binarised targets (capacity, C) in float32,
    plus (capacity,) weights, i.e. about ``8·C·capacity`` bytes (117 classes and 20 000 rows:
    19 MB), and ``result()`` sorts them (a few times that, temporarily). Set ``capacity`` to
    at least the number of samples evaluated between resets (one epoch of validation data).
    Overflow is never silent: an eager update that would overflow raises ``ValueError``;
    inside a compiled graph the extra rows are not stored and ``result()`` returns NaN.
    Keras's ``fit`` calls ``result()`` after every training batch: with a large capacity,
    prefer evaluating it on validation predictions once per epoch (as
    ``recipes/ladi_multilabel.py`` does) to compiling it as a training metric.
    Scores must be finite (empty rows are padded with -inf). Under ``tf.distribute``
    (MirroredStrategy) each update gathers the replicas' batches, so every replica holds
    the global batch and the result equals the one-device value.

    Args:
        num_classes: number of classes C.
        threshold: targets with ``y_true >= threshold`` are positives.
        capacity: maximum number of samples between resets.
        name, dtype: as for any Keras metric.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> targets = np.array([[1, 0, 0], [0, 1, 0]], "float32")   # class 2: no positive
        >>> scores = np.array([[0.8, 0.3, 0.1], [0.9, 0.6, 0.2]], "float32")
        >>> mean_ap = kse.metrics.MeanAveragePrecision(num_classes=3, capacity=8)
        >>> mean_ap.update_state(targets, scores)
        >>> round(float(mean_ap.result()), 4), mean_ap.per_class().round(4).tolist()
        (0.75, [0.5, 1.0, nan])
    """

    def __init__(self, num_classes, threshold=0.5, capacity=20000, name="map", dtype=None):
        super().__init__(name=name, dtype=dtype)
        owner = type(self).__name__
        self.num_classes = check_number(owner, "num_classes", num_classes, minimum=1,
                                        integer=True)
        self.threshold = check_number(owner, "threshold", threshold)
        self.capacity = check_number(owner, "capacity", capacity, minimum=1, integer=True)
        # Under tf.distribute every replica stores the gathered global batch (see
        # update_state), so the first replica's copy is the whole state: summing the
        # replicas' buffers (the default for metric variables) would add up scores.
        first = "only_first_replica"
        self.scores = self.add_variable(shape=(self.capacity + 1, self.num_classes),
                                        initializer="zeros", name="scores", dtype="float32",
                                        aggregation=first)
        self.targets = self.add_variable(shape=(self.capacity + 1, self.num_classes),
                                         initializer="zeros", name="targets", dtype="float32",
                                         aggregation=first)
        self.weights_buffer = self.add_variable(shape=(self.capacity + 1,), initializer="zeros",
                                                name="sample_weights", dtype="float32",
                                                aggregation=first)
        self.seen = self.add_variable(shape=(), initializer="zeros", name="seen", dtype="int32",
                                      aggregation=first)

    def update_state(self, y_true, y_pred, sample_weight=None):
        owner = type(self).__name__
        y_true, y_pred = _check_pair(owner, y_true, y_pred, self.num_classes)
        relevant = ops.cast(ops.greater_equal(y_true, self.threshold), "float32")
        relevant = faulty_to_nan(relevant, ops.isnan(y_true))  # kept NaN for result()
        weights = _sample_weights(owner, sample_weight, y_pred)
        relevant, y_pred, weights = _gather_replicas(relevant, y_pred, weights)
        batch = ops.shape(y_pred)[0]
        seen = concrete_numpy(self.seen.value)
        if seen is not None and y_pred.shape[0] is not None and (
            int(seen) + int(y_pred.shape[0]) > self.capacity
        ):
            fail(owner, "capacity", self.capacity,
                 f"is too small: {int(seen) + int(y_pred.shape[0])} samples since the last "
                 "reset; raise capacity or reset more often")
        # Row capacity is a scratch row that absorbs overflowing writes and is never read.
        rows = ops.minimum(self.seen.value + ops.arange(batch, dtype="int32"), self.capacity)
        rows = ops.expand_dims(rows, -1)
        self.scores.assign(ops.scatter_update(self.scores.value, rows, y_pred))
        self.targets.assign(ops.scatter_update(self.targets.value, rows, relevant))
        self.weights_buffer.assign(ops.scatter_update(self.weights_buffer.value, rows, weights))
        self.seen.assign_add(ops.cast(batch, "int32"))

    def _per_class(self):
        stored = ops.minimum(self.seen.value, self.capacity)
        valid = ops.arange(self.capacity, dtype="int32") < stored
        # No ops.full_like here: torch's backend fills with ``.item()``, which fails on the
        # "meta" device where Keras infers shapes (issue 13); a scalar operand does not.
        scores = ops.where(valid[:, None], self.scores.value[: self.capacity], -np.inf)
        weights = ops.where(valid, self.weights_buffer.value[: self.capacity],
                            ops.zeros_like(self.weights_buffer.value[: self.capacity]))
        relevant = self.targets.value[: self.capacity] * ops.cast(valid, "float32")[:, None]
        return average_precision_per_class(relevant, scores, weights)

    def result(self):
        if on_meta_device(self.scores.value):  # torch's shape inference: see on_meta_device
            return ops.zeros((), "float32")
        ap, positives = self._per_class()
        has_positive = ops.cast(positives > 0, "float32")
        mean = ops.divide_no_nan(ops.sum(ap * has_positive), ops.sum(has_positive))
        stored = ops.arange(self.capacity + 1, dtype="int32") < ops.minimum(self.seen.value,
                                                                            self.capacity)
        kept = ops.where(stored[:, None], self.scores.value + self.targets.value, 0.0)
        mean = nan_if_any_nan(mean, kept)  # a NaN score or target never scores as ranked
        overflow = self.seen.value > self.capacity
        return ops.where(overflow, ops.convert_to_tensor(np.nan, "float32"), mean)

    def per_class(self):
        """Per-class AP as a NumPy (C,) array; NaN for classes without positives (or overflow)."""
        ap, positives = self._per_class()
        ap = np.asarray(ops.convert_to_numpy(ap), dtype="float64")
        positives = np.asarray(ops.convert_to_numpy(positives))
        if int(ops.convert_to_numpy(self.seen.value)) > self.capacity:
            return np.full_like(ap, np.nan)
        return np.where(positives > 0, ap, np.nan)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes,
                "threshold": self.threshold, "capacity": self.capacity}
