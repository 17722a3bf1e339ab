"""Fairness of a segmentation model across its classes.

The criteria of Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting
Fairness in Semantic Segmentation", CVPR Workshops (2021), section 3 and table 3.

From the per-class IoUs of a confusion matrix: the mean IoU, the worst class IoU, the standard
deviation of the class IoUs, the mean IoU of the bottom and top 25% of the classes sorted by
this model's IoUs or by a reference order (the paper sorts every model by the cross-entropy
baseline's IoUs), and the 25th-percentile thresholds (bottom: the 25th percentile; top: the
75th) with the mean IoU of the classes inside each tail (each model sorted by its own IoUs).

Conventions (checked against the paper's table 1 -> table 3 numbers in the tests):

- classes never seen (neither in truth nor in prediction; IoU undefined) are left out of
  every statistic; ``n`` is the number of the remaining classes;
- a 25% tail holds ``k = ceil(n / 4)`` classes (5 of Cityscapes' 19);
- percentiles interpolate linearly between order statistics (NumPy's default), a class is in
  the bottom tail when its IoU <= the 25th percentile, in the top tail when >= the 75th;
- the standard deviation is the population one (divided by n).

``fairness_report`` is NumPy; ``FairnessIoU`` is the streaming Keras metric (one scalar per
statistic, logged every epoch), built on ``ConfusionMatrixIoU``.
"""

import math

import numpy as np
from keras import ops

from keras_seg_extras._common import check_choice, fail, nan_if_any_nan, register
from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU

_STATISTICS = ("worst", "std", "sorted_bottom_25", "sorted_top_25",
               "bottom_25th_percentile", "top_25th_percentile")


def _check_order(owner, reference_order, num_classes):
    if reference_order is None:
        return None
    order = np.asarray(reference_order)
    if (order.ndim != 1 or not np.issubdtype(order.dtype, np.integer)
            or sorted(order.tolist()) != list(range(num_classes))):
        fail(owner, "reference_order", reference_order,
             f"must be a permutation of the {num_classes} class indices, worst to best "
             "(e.g. np.argsort(baseline_class_iou))")
    return order.astype(np.int64)


def class_iou_from_confusion(confusion_matrix):
    """Per-class IoU (C,) from a (C, C) matrix (rows truth); NaN for classes never seen.

    ``IoU_c = M[c, c] / (sum_j M[c, j] + sum_i M[i, c] - M[c, c])``, in NumPy float64.

    Args:
        confusion_matrix: (C, C) counts, rows the true class, columns the predicted one.

    Returns:
        (C,) float64 array.

    Example:
        >>> import keras_seg_extras as kse
        >>> kse.metrics.class_iou_from_confusion([[2, 1, 0], [0, 1, 0], [0, 0, 0]]).round(4)
        array([0.6667, 0.5   ,    nan])
    """
    matrix = np.asarray(confusion_matrix, np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 1:
        fail("class_iou_from_confusion", "confusion_matrix", f"array of shape {matrix.shape}",
             "must be a square (C, C) matrix")
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def fairness_from_class_iou(class_iou, reference_order=None):
    """The fairness figures of ``fairness_report`` from per-class IoUs (NaN = never seen).

    Args:
        class_iou: (C,) IoUs; NaN entries are classes left out.
        reference_order: None (sort by these IoUs) or a permutation of the C class indices
            from worst to best, e.g. ``np.argsort(baseline_class_iou)``, used for the sorted
            bottom/top 25% (the percentile tails always use this model's own IoUs).

    Returns:
        A dict: ``miou``, ``worst_iou``, ``std_iou``, ``sorted_bottom_25``, ``sorted_top_25``,
        ``bottom_25th_percentile`` and ``top_25th_percentile`` (each a pair (threshold, mean
        IoU of the classes in that tail)), ``num_classes`` (n, the classes evaluated),
        ``class_iou`` (C,) and ``order`` (the evaluated classes in the sorting order used).
        With no evaluated class every figure is NaN.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> report = kse.metrics.fairness_from_class_iou([0.9, 0.2, 0.5, np.nan, 0.7])
        >>> report["num_classes"], round(report["miou"], 4), round(report["std_iou"], 4)
        (4, 0.575, 0.2586)
        >>> report["worst_iou"], report["sorted_bottom_25"], report["bottom_25th_percentile"]
        (0.2, 0.2, (0.425, 0.2))
    """
    owner = "fairness_report"
    iou = np.asarray(class_iou, np.float64)
    if iou.ndim != 1:
        fail(owner, "class_iou", f"array of shape {iou.shape}", "must be one-dimensional")
    order = _check_order(owner, reference_order, iou.shape[0])
    seen = ~np.isnan(iou)
    values = iou[seen]
    n = int(values.size)
    if order is None:
        order = np.argsort(np.where(seen, iou, np.inf), kind="stable")
    order = order[seen[order]]
    report = {"num_classes": n, "class_iou": iou, "order": order}
    if n == 0:
        nan = float("nan")
        report.update(miou=nan, worst_iou=nan, std_iou=nan, sorted_bottom_25=nan,
                      sorted_top_25=nan, bottom_25th_percentile=(nan, nan),
                      top_25th_percentile=(nan, nan))
        return report
    k = math.ceil(n / 4)
    low, high = np.percentile(values, 25), np.percentile(values, 75)
    report.update(
        miou=float(values.mean()),
        worst_iou=float(values.min()),
        std_iou=float(values.std()),
        sorted_bottom_25=float(iou[order[:k]].mean()),
        sorted_top_25=float(iou[order[-k:]].mean()),
        bottom_25th_percentile=(float(low), float(values[values <= low].mean())),
        top_25th_percentile=(float(high), float(values[values >= high].mean())),
    )
    return report


def fairness_report(confusion_matrix, reference_order=None):
    """Fairness criteria of Szabó et al. (TCE, 2021; section 3, table 3) from a confusion matrix.

    See the module docstring for the conventions (unseen classes, tail size, percentiles).

    Args:
        confusion_matrix: (C, C) pixel counts, rows the true class, columns the predicted
            one (``ConfusionMatrixIoU.confusion_matrix()``).
        reference_order: None, or the class indices from worst to best of a reference model
            (the paper sorts by the cross-entropy baseline) for the sorted bottom/top 25%.

    Returns:
        The dict of ``fairness_from_class_iou``.

    Example:
        Sort both models by the cross-entropy baseline, as the paper does:

        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> base = kse.metrics.fairness_report(np.array([[8, 2, 0], [1, 3, 0], [0, 2, 4]]))
        >>> base["order"].tolist(), round(base["miou"], 4), round(base["worst_iou"], 4)
        ([1, 2, 0], 0.5896, 0.375)
        >>> tce = kse.metrics.fairness_report(np.array([[7, 2, 1], [0, 4, 0], [0, 1, 5]]),
        ...                                   reference_order=base["order"])
        >>> round(tce["miou"], 4), round(tce["sorted_bottom_25"], 4)
        (0.6619, 0.5714)
    """
    return fairness_from_class_iou(class_iou_from_confusion(confusion_matrix), reference_order)


def format_fairness_table(reports, scale=100.0):
    """Side-by-side text table of several ``fairness_report`` dicts, as the paper's table 3.

    Args:
        reports: mapping of run name -> report (e.g. {"CE": ..., "TCE t=1": ...}).
        scale: multiplier of the IoUs (100 prints percentages like the paper).

    Returns:
        The table as a string.

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> base = kse.metrics.fairness_report(np.array([[8, 2, 0], [1, 3, 0], [0, 2, 4]]))
        >>> tce = kse.metrics.fairness_report(np.array([[7, 2, 1], [0, 4, 0], [0, 1, 5]]),
        ...                                   reference_order=base["order"])
        >>> print(kse.metrics.format_fairness_table({"CE": base, "TCE": tce}))
        method  mIoU   sorted bottom 25%  ...  worst  std
        ------  -----  ...
        CE      58.96  37.50 ...  37.50  15.38
        TCE     66.19  57.14 ...  57.14  6.42
    """
    header = ("method", "mIoU", "sorted bottom 25%", "sorted top 25%",
              "25th pct bottom (thr, mean)", "25th pct top (thr, mean)", "worst", "std")
    rows = []
    for name, r in reports.items():
        def pair(p):
            return f"({p[0] * scale:.2f}, {p[1] * scale:.2f})"

        rows.append((str(name), f"{r['miou'] * scale:.2f}", f"{r['sorted_bottom_25'] * scale:.2f}",
                     f"{r['sorted_top_25'] * scale:.2f}", pair(r["bottom_25th_percentile"]),
                     pair(r["top_25th_percentile"]), f"{r['worst_iou'] * scale:.2f}",
                     f"{r['std_iou'] * scale:.2f}"))
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@register
class FairnessIoU(ConfusionMatrixIoU):
    """One fairness statistic of the class IoUs, as a streaming Keras metric.

    Accumulates the confusion matrix of ``ConfusionMatrixIoU`` (same inputs and arguments)
    and returns one scalar, so ``fit`` logs it every epoch (History, TensorBoard):

    - ``"worst"``: the lowest class IoU;
    - ``"std"``: the population standard deviation of the class IoUs;
    - ``"sorted_bottom_25"`` / ``"sorted_top_25"``: mean IoU of the first / last
      ``ceil(n/4)`` classes in ``reference_order`` (worst to best; None sorts by this
      model's own IoUs);
    - ``"bottom_25th_percentile"`` / ``"top_25th_percentile"``: mean IoU of the classes at or
      below the 25th percentile / at or above the 75th.

    Classes never seen are left out (see the module docstring); with none seen the value is
    0. ``fairness_metrics(...)`` builds the usual set (with the mIoU) for ``compile``.

    Args:
        num_classes: number of classes C.
        statistic: one of the names above.
        reference_order: optional permutation of the class indices, worst to best.
        ignore_index, from_logits, name, dtype: as ``ConfusionMatrixIoU`` (``from_logits``
            defaults to False, probabilities, like every metric of the package).

    Example:
        >>> import numpy as np
        >>> import keras_seg_extras as kse
        >>> labels = np.array([[[0, 1], [2, 2]]])
        >>> scores = np.eye(3, dtype="float32")[[[[0, 1], [1, 2]]]]  # one "2" predicted as 1
        >>> worst = kse.metrics.FairnessIoU(3, statistic="worst")
        >>> worst.update_state(labels, scores)
        >>> round(float(worst.result()), 4)                          # IoUs 1, 0.5, 0.5
        0.5
    """

    def __init__(self, num_classes, statistic="worst", reference_order=None, ignore_index=None,
                 from_logits=False, name=None, dtype=None):
        owner = type(self).__name__
        check_choice(owner, "statistic", statistic, _STATISTICS)
        super().__init__(num_classes, ignore_index=ignore_index, from_logits=from_logits,
                         name=name or f"{statistic}_iou", dtype=dtype)
        order = _check_order(owner, reference_order, self.num_classes)
        self.statistic = statistic
        self.reference_order = None if order is None else order.tolist()

    def result(self):
        true_positive, union = self._iou_parts()
        seen = union > 0
        iou = true_positive / ops.where(seen, union, ops.ones_like(union))
        n = ops.sum(ops.cast(seen, "float64"))
        safe_n = ops.maximum(n, 1.0)
        c = self.num_classes
        big = ops.zeros_like(iou) + 1e30  # (no full_like: it fails on torch's meta device)
        stat = self.statistic
        if stat == "worst":
            value = ops.min(ops.where(seen, iou, big))
        elif stat == "std":
            mean = ops.sum(ops.where(seen, iou, 0.0)) / safe_n
            value = ops.sqrt(ops.sum(ops.where(seen, ops.square(iou - mean), 0.0)) / safe_n)
        else:
            position = ops.cast(ops.arange(c), "float64")
            if stat.startswith("sorted") and self.reference_order is not None:
                rank = np.empty(c, np.float64)
                rank[np.asarray(self.reference_order)] = np.arange(c)
                key = ops.where(seen, ops.convert_to_tensor(rank, "float64"), big)
                ordered = ops.take(iou, ops.argsort(key))
            else:
                ordered = ops.sort(ops.where(seen, iou, big))  # seen first, ascending
            if stat.startswith("sorted"):
                k = ops.ceil(n / 4.0)
                if stat == "sorted_bottom_25":
                    chosen = position < k
                else:
                    chosen = (position >= n - k) & (position < n)
                value = (ops.sum(ops.where(chosen, ordered, 0.0))
                         / ops.maximum(ops.sum(ops.cast(chosen, "float64")), 1.0))
            else:
                q = 0.25 if stat == "bottom_25th_percentile" else 0.75
                at = q * ops.maximum(n - 1.0, 0.0)
                lo = ops.cast(ops.floor(at), "int32")
                hi = ops.cast(ops.ceil(at), "int32")
                v_lo, v_hi = ops.take(ordered, lo), ops.take(ordered, hi)
                threshold = v_lo + (at - ops.floor(at)) * (v_hi - v_lo)
                inside = position < n
                if q == 0.25:
                    chosen = inside & (ordered <= threshold)
                else:
                    chosen = inside & (ordered >= threshold)
                value = (ops.sum(ops.where(chosen, ordered, 0.0))
                         / ops.maximum(ops.sum(ops.cast(chosen, "float64")), 1.0))
        value = ops.where(n > 0, value, ops.zeros_like(value))
        return ops.cast(nan_if_any_nan(value, union), self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(statistic=self.statistic, reference_order=self.reference_order)
        return config


def fairness_metrics(num_classes, ignore_index=None, from_logits=False, reference_order=None):
    """The metrics that log the paper's fairness figures every epoch, for ``compile``.

    Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in
    Semantic Segmentation", CVPR Workshops (2021), table 3.

    Args:
        num_classes: number of classes C.
        ignore_index: integer label value whose pixels are not counted, or None.
        from_logits: as ``ConfusionMatrixIoU`` (default False: probabilities).
        reference_order: class indices from worst to best of a reference model, for the
            sorted bottom/top 25% (None: each epoch's own order).

    Returns:
        ``[ConfusionMatrixIoU(name="miou"), FairnessIoU(statistic) for worst, std, sorted
        bottom/top 25% and the bottom/top 25th-percentile tails]``.

    Example:
        >>> import keras_seg_extras as kse
        >>> [metric.name for metric in kse.metrics.fairness_metrics(19, ignore_index=255)]
        ['miou', 'worst_iou', 'std_iou', 'sorted_bottom_25_iou', 'sorted_top_25_iou',
         'bottom_25th_percentile_iou', 'top_25th_percentile_iou']
    """
    common = dict(ignore_index=ignore_index, from_logits=from_logits)
    metrics = [ConfusionMatrixIoU(num_classes, name="miou", **common)]
    for statistic in _STATISTICS:
        order = reference_order if statistic.startswith("sorted") else None
        metrics.append(FairnessIoU(num_classes, statistic, reference_order=order, **common))
    return metrics
