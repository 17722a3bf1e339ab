"""Lovász hinge and symmetric Lovász on (B, C) multi-label logits, against a set-based reference.

The reference below never sorts cumulative sums: it grows the set of mispredicted labels one
label at a time (largest hinge error first) and evaluates the Jaccard loss of that set from
Python sets, Delta_J(M) = 1 - w(P minus M) / w(P union M) (Yu and Blaschko; Berman et al.
2018, eq. 8-9). Each reading of ``jaccard_set`` groups the labels differently: per sample
(rows), per class (columns), or the whole batch.
"""

import keras
import numpy as np
import pytest

from keras_seg_extras import losses as L
from tests._gradients import assert_gradient_matches

IGNORE = 255


# ----------------------------------------------------------------------------- reference


def _jaccard_loss_of_set(mispredicted, positives, weight):
    union = sum(weight[i] for i in positives | mispredicted)
    if union == 0:
        return 0.0
    return 1.0 - sum(weight[i] for i in positives - mispredicted) / union


def _set_lovasz_hinge(logits, labels, weight):
    """Lovász extension of the Jaccard loss at the hinge errors of one set (1-D arrays)."""
    errors = np.maximum(0.0, 1.0 - logits * (2.0 * labels - 1.0))
    positives = {i for i in range(len(labels)) if labels[i] == 1}
    value, previous, mispredicted = 0.0, 0.0, set()
    for i in sorted(range(len(errors)), key=lambda i: -errors[i]):
        mispredicted.add(i)
        current = _jaccard_loss_of_set(mispredicted, positives, weight)
        value += errors[i] * (current - previous)
        previous = current
    return value


def _groups(shape, jaccard_set):
    rows, cols = np.indices(shape)
    if jaccard_set == "sample":
        return [(rows == b) for b in range(shape[0])]
    if jaccard_set == "class":
        return [(cols == c) for c in range(shape[1])]
    return [np.ones(shape, bool)]


def reference(labels, logits, jaccard_set="sample", symmetric=True, ignore=None, weights=None,
              sample_weight=None):
    """Value of the Keras loss (after its reduction) in float64."""
    labels = np.asarray(labels, "float64")
    logits = np.asarray(logits, "float64")
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    w = np.ones(labels.shape) if weights is None else np.broadcast_to(
        np.asarray(weights, "float64").reshape(labels.shape[0], -1), labels.shape)
    values = []
    for group in _groups(labels.shape, jaccard_set):
        keep = group & valid
        x, y, wk = logits[keep], labels[keep], w[keep]
        terms = [_set_lovasz_hinge(x, y, wk)]
        if symmetric:
            terms.append(_set_lovasz_hinge(-x, 1.0 - y, wk))
        values.append(np.mean(terms))
    values = np.array(values)
    if jaccard_set != "sample":
        return float(values.mean())
    if sample_weight is not None:
        return float(np.sum(values * sample_weight) / len(values))
    return float(values.mean())


def _loss_class(symmetric):
    return L.SymmetricLovaszLoss if symmetric else L.LovaszHingeLoss


def _data(seed, shape=(6, 5), scale=2.0):
    """Labels with an all-negative, an all-positive and a single-positive sample."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(shape) < 0.4).astype("float32")
    labels[0] = 0.0
    labels[1] = 1.0
    labels[2] = 0.0
    labels[2, 3] = 1.0
    return labels, rng.normal(scale=scale, size=shape).astype("float32")


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("jaccard_set", ["sample", "class", "batch"])
def test_each_reading_matches_the_set_reference(jaccard_set, symmetric):
    labels, logits = _data(1)
    loss = _loss_class(symmetric)(jaccard_set=jaccard_set)
    np.testing.assert_allclose(float(loss(labels, logits)),
                               reference(labels, logits, jaccard_set, symmetric), rtol=1e-5)
    function = L.symmetric_lovasz if symmetric else L.lovasz_hinge
    values = np.asarray(function(labels, logits, jaccard_set=jaccard_set))
    assert values.shape == ((6,) if jaccard_set == "sample" else ())


@pytest.mark.parametrize("jaccard_set", ["sample", "class", "batch"])
def test_ignored_labels_leave_their_sets(jaccard_set):
    labels, logits = _data(2)
    labels[3, :2] = IGNORE
    labels[:, 4] = IGNORE  # a class with no valid label
    loss = L.SymmetricLovaszLoss(jaccard_set=jaccard_set, ignore_index=IGNORE)
    np.testing.assert_allclose(float(loss(labels, logits)),
                               reference(labels, logits, jaccard_set, ignore=IGNORE), rtol=1e-5)


def test_default_reading_is_one_value_per_sample_and_the_paper_rows():
    """Hand-computed: sample 1 has labels {0, 2} and errors (0, 0, 0.5), sample 2 none."""
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    logits = np.array([[2.0, -1.0, 0.5], [-2.0, 0.5, -1.0]])
    # Sample 1: only label 2 is wrong (error 0.5), Delta_J({2}) = 1 - 1/2, so 0.25.
    # Sample 2: no positive: Delta_J is 1 for any non-empty set, so the largest error, 1.5.
    np.testing.assert_allclose(np.asarray(L.lovasz_hinge(labels, logits)), [0.25, 1.5])
    assert L.SymmetricLovaszLoss().jaccard_set == "sample"


def test_edge_cases_all_negative_all_positive_single_label():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 3)).astype("float32")
    for labels in (np.zeros((4, 3), "float32"), np.ones((4, 3), "float32")):
        for jaccard_set in ("sample", "class", "batch"):
            value = float(L.SymmetricLovaszLoss(jaccard_set=jaccard_set)(labels, logits))
            np.testing.assert_allclose(value, reference(labels, logits, jaccard_set), rtol=1e-5)
    single = (rng.random((5, 1)) < 0.5).astype("float32")
    single_logits = rng.normal(size=(5, 1)).astype("float32")
    for jaccard_set in ("sample", "class", "batch"):
        np.testing.assert_allclose(
            float(L.SymmetricLovaszLoss(jaccard_set=jaccard_set)(single, single_logits)),
            reference(single, single_logits, jaccard_set), rtol=1e-5)


def test_perfect_confident_prediction_scores_zero():
    labels, _ = _data(4)
    logits = np.where(labels == 1, 5.0, -5.0).astype("float32")
    for jaccard_set in ("sample", "class", "batch"):
        assert float(L.SymmetricLovaszLoss(jaccard_set=jaccard_set)(labels, logits)) == 0.0


def test_extreme_logits_and_float16():
    labels, logits = _data(5)
    extreme = np.where(np.arange(logits.size).reshape(logits.shape) % 2 == 0, 100.0,
                       -100.0).astype("float32")
    for jaccard_set in ("sample", "class", "batch"):
        loss = L.SymmetricLovaszLoss(jaccard_set=jaccard_set)
        np.testing.assert_allclose(float(loss(labels, extreme)),
                                   reference(labels, extreme, jaccard_set), rtol=1e-5)
        half = logits.astype("float16")
        value = loss(labels.astype("float16"), half)
        np.testing.assert_allclose(float(value), reference(labels, half.astype("float64"),
                                                           jaccard_set), rtol=1e-5)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("jaccard_set", ["sample", "class", "batch"])
def test_gradients_match_the_set_reference(jaccard_set):
    labels, logits = _data(6, shape=(4, 4), scale=1.5)
    loss = L.SymmetricLovaszLoss(jaccard_set=jaccard_set)
    assert_gradient_matches(lambda x: loss(labels, x),
                            lambda x: reference(labels, x, jaccard_set), logits)


def test_gradient_of_the_plain_hinge_and_extreme_logits():
    labels, logits = _data(7, shape=(4, 4), scale=1.5)
    logits[0, 0], logits[1, 1] = -40.0, 40.0  # right and confident (labels 0 and 1): no gradient
    loss = L.LovaszHingeLoss(jaccard_set="class")
    gradient, _ = assert_gradient_matches(lambda x: loss(labels, x),
                                          lambda x: reference(labels, x, "class", False), logits)
    assert gradient[0, 0] == 0.0 and gradient[1, 1] == 0.0


# ----------------------------------------------------------------------------- weights


def test_sample_weights_weight_samples_or_enter_the_set():
    labels, logits = _data(8)
    weights = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 3.0], "float32")
    value = L.SymmetricLovaszLoss()(labels, logits, sample_weight=weights)
    np.testing.assert_allclose(float(value), reference(labels, logits, sample_weight=weights),
                               rtol=1e-5)
    for jaccard_set in ("class", "batch"):
        loss = L.SymmetricLovaszLoss(jaccard_set=jaccard_set)
        np.testing.assert_allclose(float(loss(labels, logits, sample_weight=weights)),
                                   reference(labels, logits, jaccard_set, weights=weights),
                                   rtol=1e-5)
        # A weight-0 sample takes no part: the same as leaving it out.
        keep = weights > 0
        np.testing.assert_allclose(float(loss(labels, logits, sample_weight=weights * 0 + keep)),
                                   float(loss(labels[keep], logits[keep])), rtol=1e-5)
    per_label = np.random.default_rng(9).uniform(0.0, 2.0, labels.shape).astype("float32")
    np.testing.assert_allclose(
        float(L.SymmetricLovaszLoss(jaccard_set="batch")(labels, logits, per_label)),
        reference(labels, logits, "batch", weights=per_label), rtol=1e-5)


# ----------------------------------------------------------------------------- errors, config


@pytest.mark.parametrize("symmetric", [True, False])
def test_soft_targets_are_rejected(symmetric):
    labels, logits = _data(10)
    soft = labels.copy()
    soft[2, 1] = 0.25
    name = "SymmetricLovaszLoss" if symmetric else "LovaszHingeLoss"
    with pytest.raises(ValueError, match=name + r": .* must lie in \{0, 1\}; received "
                                              r"target values \[0.25\]"):
        _loss_class(symmetric)()(soft, logits)
    with pytest.raises(ValueError, match=r"must lie in \{0, 1\}"):  # maps as well
        _loss_class(symmetric)()(np.full((1, 2, 2), 0.5), np.zeros((1, 2, 2, 1)))


def test_bad_arguments_and_shapes_name_the_object():
    labels, logits = _data(11)
    with pytest.raises(ValueError, match=r"SymmetricLovaszLoss: `jaccard_set` must be one of "
                                         r"'sample', 'class', 'batch'; received 'image'"):
        L.SymmetricLovaszLoss(jaccard_set="image")
    with pytest.raises(ValueError, match=r"symmetric_lovasz: `y_true` .*must match the shape"):
        L.symmetric_lovasz(labels[:, :3], logits)
    with pytest.raises(ValueError, match=r"`sample_weight` must be None with jaccard_set"):
        L.symmetric_lovasz(labels, logits, sample_weight=np.ones(6))


def test_config_round_trip_keeps_the_reading():
    loss = L.SymmetricLovaszLoss(jaccard_set="class", ignore_index=IGNORE)
    config = loss.get_config()
    assert config["jaccard_set"] == "class"
    restored = L.SymmetricLovaszLoss.from_config(config)
    labels, logits = _data(12)
    assert float(restored(labels, logits)) == float(loss(labels, logits))
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, L.SymmetricLovaszLoss) and restored.jaccard_set == "class"
