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


def _assert_groups_whole(groups, train, val):
    """Every known (non-blank string) group lies on one side."""
    known = [g if isinstance(g, str) and g.strip() else None for g in groups]
    assert not ({known[i] for i in train} & {known[i] for i in val}) - {None}


@pytest.mark.parametrize("missing", [None, float("nan"), "", "  ", np.datetime64("NaT")],
                         ids=["None", "NaN", "empty", "blank", "NaT"])
def test_missing_group_ids_are_their_own_groups_with_a_warning(rng, missing):
    n = 60
    has_mask = rng.random(n) < 0.3
    groups = [f"P{i // 3:03d}" for i in range(n)]
    holes = [4, 17, 18, 40]
    for i in holes:
        groups[i] = missing
    with pytest.warns(UserWarning, match=r"stratified_split: 4 of 60 samples have no group id "
                                         r"\(rows 4, 17, 18, 40\); each is treated as a group"):
        train, val = split.stratified_split(has_mask, 0.25, groups=groups, seed=1)
    _check_partition(n, train, val)
    _assert_groups_whole(groups, train, val)
    with pytest.warns(UserWarning, match="stratified_kfold: 4 of 60"):
        folds = split.stratified_kfold(has_mask, 4, groups=np.array(groups, dtype=object))
    seen = np.concatenate([val for _, val in folds])
    assert np.array_equal(np.sort(seen), np.arange(n))
    for _, val in folds:
        inside = {groups[i] for i in val if isinstance(groups[i], str) and groups[i].strip()}
        for g in inside:  # a known patient never straddles folds
            assert all(j in val for j in range(n) if groups[j] == g)


def test_missing_ids_rule_is_singletons():
    # Two missing ids with the same label: as singletons they can land on different sides,
    # which a shared "missing" group could never do.
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    groups = ["a", "a", "b", "b", None, None, None, None]
    with pytest.warns(UserWarning, match="4 of 8"):
        folds = split.stratified_kfold(labels, 4, groups=groups, seed=0)
    fold_of = np.empty(8, int)
    for k, (_, val) in enumerate(folds):
        fold_of[val] = k
    assert fold_of[0] == fold_of[1] and fold_of[2] == fold_of[3]
    assert len(set(fold_of[4:].tolist())) > 1


def test_mixed_group_id_types_compare_by_value(rng):
    n = 40
    labels = rng.random(n) < 0.4
    base = [i // 4 for i in range(n)]
    # the same patients written as int, numpy int, float and string ids of other patients
    mixed = [b if i % 3 else (np.int64(b) if i % 2 else float(b)) for i, b in enumerate(base)]
    mixed[-4:] = ["X"] * 4  # a patient with a string id
    train, val = split.stratified_split(labels, 0.3, groups=mixed, seed=2)
    _check_partition(n, train, val)
    key = [str(float(g)) if not isinstance(g, str) else g for g in mixed]
    assert not {key[i] for i in train} & {key[i] for i in val}
    # One type only: the numbering (hence the split) is the one np.unique gave before.
    as_int = split.stratified_split(labels, 0.3, groups=np.array(base), seed=2)
    as_list = split.stratified_split(labels, 0.3, groups=[int(b) for b in base], seed=2)
    for a, b in zip(as_int, as_list):
        np.testing.assert_array_equal(a, b)


def test_missing_labels_are_an_error_naming_rows():
    with pytest.raises(ValueError, match=r"stratified_split: `labels` must hold a label for "
                                         r"every sample.*rows 1, 3"):
        split.stratified_split([1, None, 0, float("nan"), 1, 0])
    with pytest.raises(ValueError, match=r"stratified_kfold: `labels`.*rows 2"):
        split.stratified_kfold(np.array([0.0, 1.0, np.nan, 1.0]), 2)
    # mixed label types are labels too
    train, val = split.stratified_split(["yes", 1, "yes", 1, "yes", 1], 0.5, seed=0)
    assert len(val) == 3
