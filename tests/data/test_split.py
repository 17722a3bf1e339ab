"""Stratified split and k folds: proportions, disjointness, determinism, groups, errors."""

import numpy as np
import pytest

from keras_seg_extras.data import split


def _check_partition(n, train, val):
    assert train.dtype.kind == "i" and val.dtype.kind == "i"
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert not set(train.tolist()) & set(val.tolist())
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(n))


def test_split_exact_proportions(rng):
    has_mask = np.zeros(1000, bool)
    has_mask[rng.permutation(1000)[:223]] = True
    train, val = split.stratified_split(has_mask, seed=3)
    _check_partition(1000, train, val)
    assert len(val) == 150  # round(0.15 * 1000)
    # 0.15 * 223 = 33.45 and 0.15 * 777 = 116.55: largest remainder gives 33 + 117 = 150
    assert has_mask[val].sum() == 33 and (~has_mask[val]).sum() == 117


def test_split_multiclass_string_labels(rng):
    labels = rng.choice(np.array(["flood", "smoke", "none"]), size=301, p=[0.6, 0.3, 0.1])
    train, val = split.stratified_split(labels, validation_fraction=0.2, seed=0)
    _check_partition(301, train, val)
    assert len(val) == round(0.2 * 301)
    for name in ("flood", "smoke", "none"):
        total = (labels == name).sum()
        assert abs((labels[val] == name).sum() - 0.2 * total) < 1  # floor or ceil of the quota


def test_split_deterministic_under_seed(rng):
    labels = rng.integers(0, 2, 200)
    first = split.stratified_split(labels, seed=7)
    second = split.stratified_split(labels, seed=7)
    other = split.stratified_split(labels, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[1], other[1])


def _patients(rng, n_patients=300):
    groups, labels = [], []
    for patient in range(n_patients):
        images = rng.integers(1, 5)
        sick = rng.random() < 0.25
        groups += [f"patient-{patient}"] * images
        labels += list(rng.random(images) < (0.8 if sick else 0.05))
    order = rng.permutation(len(groups))  # images of one patient are not contiguous
    return np.array(labels)[order], np.array(groups)[order]


def test_split_with_groups(rng):
    labels, groups = _patients(rng)
    train, val = split.stratified_split(labels, 0.15, groups=groups, seed=0)
    _check_partition(len(labels), train, val)
    assert not set(groups[train]) & set(groups[val])  # no patient on both sides
    assert abs(len(val) / len(labels) - 0.15) < 0.02
    assert abs(labels[val].mean() - labels.mean()) < 0.03
    again = split.stratified_split(labels, 0.15, groups=groups, seed=0)
    assert np.array_equal(val, again[1])


def test_kfold_balanced_partition(rng):
    labels = rng.choice(3, size=103, p=[0.7, 0.2, 0.1])
    folds = split.stratified_kfold(labels, n_splits=5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(seen), np.arange(103))  # each sample validated once
    sizes = [len(val) for _, val in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, val in folds:
        _check_partition(103, train, val)
    for c in range(3):
        per_fold = [int((labels[val] == c).sum()) for _, val in folds]
        assert max(per_fold) - min(per_fold) <= 1
        assert sum(per_fold) == (labels == c).sum()
    again = split.stratified_kfold(labels, n_splits=5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_kfold_matches_sklearn_class_counts(rng):
    from sklearn.model_selection import StratifiedKFold

    labels = rng.choice(2, size=97, p=[0.78, 0.22])
    ours = sorted(sorted(int((labels[val] == c).sum()) for c in (0, 1))
                  for _, val in split.stratified_kfold(labels, 4, seed=0))
    theirs = sorted(sorted(int((labels[val] == c).sum()) for c in (0, 1))
                    for _, val in StratifiedKFold(4, shuffle=True, random_state=0)
                    .split(np.zeros(97), labels))
    assert ours == theirs


def test_kfold_with_groups(rng):
    labels, groups = _patients(rng, 200)
    folds = split.stratified_kfold(labels, n_splits=4, groups=groups, seed=1)
    seen = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(seen), np.arange(len(labels)))
    for train, val in folds:
        assert not set(groups[train]) & set(groups[val])
        assert abs(len(val) / len(labels) - 0.25) < 0.03
        assert abs(labels[val].mean() - labels.mean()) < 0.04


def test_errors():
    with pytest.raises(ValueError, match="stratified_split.*validation_fraction.*1.0"):
        split.stratified_split([0, 1, 0, 1], validation_fraction=1.0)
    with pytest.raises(ValueError, match="stratified_split.*validation_fraction.*0"):
        split.stratified_split([0, 1, 0, 1], validation_fraction=0)
    with pytest.raises(ValueError, match="stratified_split.*labels.*one-dimensional"):
        split.stratified_split(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="stratified_split.*groups"):
        split.stratified_split([0, 1, 0, 1], groups=[1, 2, 3])
    with pytest.raises(ValueError, match="stratified_split.*empty"):
        split.stratified_split([0, 1, 0, 1], 0.5, groups=["a", "a", "a", "a"])
    with pytest.raises(ValueError, match="stratified_kfold.*n_splits.*1"):
        split.stratified_kfold([0, 1, 0, 1], n_splits=1)
    with pytest.raises(ValueError, match="stratified_kfold.*n_splits.*number of groups"):
        split.stratified_kfold([0, 1, 0, 1], n_splits=3, groups=["a", "a", "b", "b"])
