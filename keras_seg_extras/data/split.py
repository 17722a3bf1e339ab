"""Stratified train/validation splits and k folds, with an optional group key (NumPy only).

"SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition (2019), section
4.1.1: the labelled SIIM images were split 85/15 with stratified sampling "to maintain the
proportion of patients with pneumothorax" in both parts. Stratify on a per-image label such as
"has a mask"; pass ``groups`` (e.g. the patient id) when several images come from one patient,
so that a patient is never in training and validation at once (otherwise the validation score
flatters the model with near-duplicates of training images).

Without groups the split is exact: each class contributes ``fraction * n_class`` samples to
validation, rounded by the largest-remainder rule so that the total is
``round(fraction * n)``; folds differ in size by at most one sample overall and per class.
With groups, whole groups are assigned greedily (largest first, ties in a seeded random order)
to the part whose per-class share is furthest below its target, so proportions are as close as
the group sizes allow.

Group ids and labels may mix types (``12``, ``"P0012"``, ``12.0``): they are compared by
value (``12 == 12.0``, ``12 != "12"``), numbers before strings in the group numbering.
**Missing group ids** (None, NaN, NaT, an empty or blank string: a header CSV without the
patient tag) follow one rule: each such sample is a group of its own (it can be split from
nothing, since nothing is known to share it) and a ``UserWarning`` counts them and names the
first rows. A missing *label* raises a ``ValueError`` naming the rows: stratifying on it
cannot be right.

Everything is deterministic for a given ``seed``; no scikit-learn needed.
"""

import math
import numbers
import warnings

import numpy as np

from keras_seg_extras._common import check_number, fail

_MODULE = "kse.data.split"


def _is_missing(value):
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        return not value.strip()
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return math.isnan(value)
    try:
        return bool(value != value)  # NaT, pandas' NA (which refuses bool: missing too)
    except (TypeError, ValueError):
        return True


def _sort_key(value):
    """Numbers (by value) before strings before bytes before anything else (by repr)."""
    if isinstance(value, (bool, np.bool_)):
        return (0, int(value), "")
    if isinstance(value, numbers.Real):
        return (0, float(value), "")
    if isinstance(value, str):
        return (1, 0.0, value)
    if isinstance(value, bytes):
        return (2, 0.0, value.decode("latin-1"))
    return (3, 0.0, repr(value))


def _codes(values):
    """Integer codes of ``values`` (equal values share one), numbered in sorted order.

    Sorted like ``np.unique`` for one type (so splits stay as before), and for mixed types
    by :func:`_sort_key`. ``values`` holds no missing entry.
    """
    array = np.asarray(values)
    if array.dtype != object:
        return np.unique(array, return_inverse=True)[1].ravel()
    index = {}
    for value in array.tolist():
        index.setdefault(value.item() if isinstance(value, np.generic) else value, None)
    ordered = sorted(index, key=_sort_key)
    position = {value: i for i, value in enumerate(ordered)}
    return np.array([position[v.item() if isinstance(v, np.generic) else v]
                     for v in array.tolist()], dtype=np.int64)


def _missing_rows(values):
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return np.flatnonzero(np.isnan(array))
    if array.dtype.kind in "US":
        return np.flatnonzero(np.char.strip(array) == (b"" if array.dtype.kind == "S" else ""))
    if array.dtype == object:
        return np.flatnonzero([_is_missing(v) for v in array.tolist()])
    return np.zeros(0, np.int64)


def _rows(rows, limit=10):
    shown = ", ".join(str(r) for r in rows[:limit].tolist())
    return shown + (f", ... ({len(rows)} in all)" if len(rows) > limit else "")


def _prepare(owner, labels, groups):
    labels = np.asarray(labels, dtype=object if _mixed(labels) else None)
    if labels.ndim != 1:
        fail(owner, "labels", labels.shape, "must be one-dimensional (one label per sample)")
    if labels.size < 2:
        fail(owner, "labels", labels.size, "must hold at least 2 samples")
    missing = _missing_rows(labels)
    if missing.size:
        fail(owner, "labels", f"missing labels at rows {_rows(missing)}",
             "must hold a label for every sample (None, NaN and empty strings cannot be "
             "stratified)")
    classes = _codes(labels)
    if groups is None:
        return classes, None
    groups = np.asarray(groups, dtype=object if _mixed(groups) else None)
    if groups.shape != labels.shape:
        fail(owner, "groups", groups.shape, f"must have the shape of labels {labels.shape}")
    missing = _missing_rows(groups)
    if missing.size == 0:
        return classes, _codes(groups)
    warnings.warn(f"{owner}: {missing.size} of {groups.size} samples have no group id (rows "
                  f"{_rows(missing)}); each is treated as a group of its own.", stacklevel=3)
    known = np.ones(groups.size, bool)
    known[missing] = False
    group_ids = np.empty(groups.size, np.int64)
    group_ids[known] = _codes(groups[known]) if known.any() else []
    start = group_ids[known].max() + 1 if known.any() else 0
    group_ids[missing] = start + np.arange(missing.size)
    return classes, group_ids


def _mixed(values):
    """True for a list that NumPy would coerce to one type (``[1, "a"]`` -> strings)."""
    if isinstance(values, np.ndarray):
        return False
    values = list(values)
    kinds = {type(v) for v in values}
    return len(kinds) > 1 or any(v is None for v in values)


def _largest_remainder(quotas, total, rng):
    """Integers near ``quotas`` summing to ``total``; ties broken in a seeded random order."""
    base = np.floor(quotas).astype(int)
    missing = int(total - base.sum())
    if missing > 0:
        tie_break = rng.permutation(len(quotas))
        order = np.lexsort((tie_break, -(quotas - base)))
        base[order[:missing]] += 1
    return base


def _assign_groups(classes, group_ids, targets, rng):
    """Greedy assignment of whole groups to bins with target shares ``targets`` (sum 1)."""
    num_classes = classes.max() + 1
    num_groups = group_ids.max() + 1
    counts = np.zeros((num_groups, num_classes))
    np.add.at(counts, (group_ids, classes), 1)
    class_totals = counts.sum(axis=0)
    sizes = counts.sum(axis=1)
    shuffled = rng.permutation(num_groups)
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    filled = np.zeros((len(targets), num_classes))
    bins = np.empty(num_groups, dtype=int)
    for group in order:
        before = filled / class_totals - targets[:, None]
        after = (filled + counts[group]) / class_totals - targets[:, None]
        gain = (after ** 2 - before ** 2).sum(axis=1)
        # then the bin furthest below its share of samples
        fill = filled.sum(axis=1) / class_totals.sum() - targets
        best = np.lexsort((fill, gain))[0]
        bins[group] = best
        filled[best] += counts[group]
    return bins[group_ids]


def stratified_split(labels, validation_fraction=0.15, groups=None, seed=0):
    """Split sample indices into training and validation, stratified on ``labels``.

    Args:
        labels: 1-D array, one label per sample (e.g. ``has_mask``, booleans or class ids).
        validation_fraction: share of the samples in validation, 0 < f < 1 (0.15: SIIM-ACR report).
        groups: optional 1-D array of group keys (patient ids); a group is never split.
        seed: seed of the random order.

    Returns:
        ``(train_indices, validation_indices)``: sorted int64 arrays, disjoint, covering
        ``range(len(labels))``.

    Raises:
        ValueError: for a bad fraction, labels that are not 1-D, mismatched groups, or a split
            that would leave one part empty.

    Example:
        >>> has_mask = np.array([1, 0, 0, 0, 1, 0, 0, 1, 0, 0])
        >>> train, val = stratified_split(has_mask, 0.3, seed=0)
        >>> len(val), int(has_mask[val].sum())
        (3, 1)
    """
    owner = f"{_MODULE}.stratified_split"
    fraction = check_number(owner, "validation_fraction", validation_fraction, minimum=0.0,
                            maximum=1.0, min_inclusive=False, max_inclusive=False)
    seed = check_number(owner, "seed", seed, integer=True)
    classes, group_ids = _prepare(owner, labels, groups)
    rng = np.random.default_rng(seed)
    if group_ids is None:
        class_sizes = np.bincount(classes)
        quotas = _largest_remainder(fraction * class_sizes, int(round(fraction * classes.size)),
                                    rng)
        is_val = np.zeros(classes.size, dtype=bool)
        for c, quota in enumerate(quotas):
            members = rng.permutation(np.flatnonzero(classes == c))
            is_val[members[:quota]] = True
    else:
        is_val = _assign_groups(classes, group_ids, np.array([1 - fraction, fraction]), rng) == 1
    if is_val.all() or not is_val.any():
        fail(owner, "validation_fraction", validation_fraction,
             "leaves the training or the validation part empty for these labels/groups")
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def stratified_kfold(labels, n_splits=5, groups=None, seed=0):
    """Stratified k-fold cross-validation indices.

    Args:
        labels: 1-D array, one label per sample.
        n_splits: number of folds, >= 2.
        groups: optional 1-D array of group keys; each group lies in exactly one fold.
        seed: seed of the random order.

    Returns:
        A list of ``n_splits`` pairs ``(train_indices, validation_indices)`` (sorted int64);
        the validation parts are disjoint and together cover every sample once.

    Raises:
        ValueError: for ``n_splits`` < 2 or larger than the number of samples (groups).

    Example:
        >>> folds = stratified_kfold(np.array([0, 1] * 10), n_splits=5, seed=1)
        >>> [len(val) for _, val in folds]
        [4, 4, 4, 4, 4]
    """
    owner = f"{_MODULE}.stratified_kfold"
    n_splits = check_number(owner, "n_splits", n_splits, minimum=2, integer=True)
    seed = check_number(owner, "seed", seed, integer=True)
    classes, group_ids = _prepare(owner, labels, groups)
    units = classes.size if group_ids is None else group_ids.max() + 1
    if n_splits > units:
        what = "samples" if group_ids is None else "groups"
        fail(owner, "n_splits", n_splits, f"must be <= the number of {what} ({units})")
    rng = np.random.default_rng(seed)
    if group_ids is None:
        # classes one after the other, each shuffled, dealt round-robin: every class and the
        # total spread over the folds with differences of at most one
        ordered = np.concatenate([rng.permutation(np.flatnonzero(classes == c))
                                  for c in range(classes.max() + 1)])
        fold = np.empty(classes.size, dtype=int)
        fold[ordered] = np.arange(classes.size) % n_splits
    else:
        fold = _assign_groups(classes, group_ids, np.full(n_splits, 1.0 / n_splits), rng)
    if len(np.unique(fold)) < n_splits:
        fail(owner, "n_splits", n_splits, "leaves a fold empty for these groups")
    everything = np.arange(classes.size)
    return [(everything[fold != k], everything[fold == k]) for k in range(n_splits)]
