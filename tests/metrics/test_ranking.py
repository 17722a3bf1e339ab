"""LRAP and mean average precision against scikit-learn, ties and degenerate rows included."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import average_precision_score, label_ranking_average_precision_score

from keras_seg_extras.metrics import LabelRankingAveragePrecision, MeanAveragePrecision


def tied_scores(rng, shape):
    """Scores on a coarse grid, so that many ties occur within rows and columns."""
    return (rng.integers(0, 6, shape) / 5.0).astype("float32")


def soft_targets(rng, shape):
    return np.where(rng.random(shape) < 0.35, rng.uniform(0.5, 1.0, shape),
                    rng.uniform(0.0, 0.49, shape)).astype("float32")


def sklearn_map(relevant, scores, weights=None):
    per_class = []
    for c in range(relevant.shape[1]):
        if relevant[:, c].sum() == 0:
            per_class.append(np.nan)
            continue
        per_class.append(average_precision_score(relevant[:, c], scores[:, c],
                                                 sample_weight=weights))
    per_class = np.asarray(per_class)
    return np.nanmean(per_class), per_class


def feed(metric, y, s, w=None, chunks=(0, 7, 20, None)):
    for start, stop in zip(chunks[:-1], chunks[1:]):
        metric.update_state(y[start:stop], s[start:stop],
                            sample_weight=None if w is None else w[start:stop])


def test_lrap_equals_sklearn_with_ties_and_degenerate_rows(rng):
    y = soft_targets(rng, (30, 6))
    y[0] = 0.0  # no relevant label -> 1
    y[1] = 0.9  # all relevant -> 1
    y[2] = [0.5, 0.49, 0.0, 0.0, 0.0, 0.0]  # exactly at the threshold counts as relevant
    s = tied_scores(rng, (30, 6))
    s[3] = 0.4  # a row of all-tied scores
    relevant = (y >= 0.5).astype(int)
    metric = LabelRankingAveragePrecision(threshold=0.5)
    feed(metric, y, s)
    expected = label_ranking_average_precision_score(relevant, s)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
    weights = rng.random(30).astype("float32")
    metric.reset_state()
    feed(metric, y, s, weights)
    expected = label_ranking_average_precision_score(relevant, s, sample_weight=weights)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)


def test_lrap_in_compiled_graph_and_float16(rng):
    y = soft_targets(rng, (16, 5))
    s = rng.random((16, 5)).astype("float16")
    metric = LabelRankingAveragePrecision()
    update = tf.function(metric.update_state)
    update(y[:9], s[:9])
    update(y[9:], s[9:])
    expected = label_ranking_average_precision_score((y >= 0.5).astype(int), s.astype("float32"))
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)


def test_map_equals_sklearn_with_ties_weights_and_empty_classes(rng):
    y = soft_targets(rng, (40, 7))
    y[:, 4] = 0.2  # no positive: excluded
    y[:, 5] = 0.9  # all positive: AP 1
    s = tied_scores(rng, (40, 7))
    relevant = (y >= 0.5).astype(int)
    metric = MeanAveragePrecision(num_classes=7, capacity=50)
    feed(metric, y, s)
    expected, per_class = sklearn_map(relevant, s)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
    np.testing.assert_allclose(metric.per_class(), per_class, rtol=1e-5)
    assert np.isnan(metric.per_class()[4])
    weights = rng.random(40).astype("float32")
    metric.reset_state()
    feed(metric, y, s, weights)
    expected, _ = sklearn_map(relevant, s, weights)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)


def test_map_continuous_scores_in_compiled_graph(rng):
    y = soft_targets(rng, (33, 4))
    s = rng.normal(size=(33, 4)).astype("float32")
    metric = MeanAveragePrecision(num_classes=4, capacity=40)
    update = tf.function(metric.update_state)
    update(y[:16], s[:16])
    update(y[16:], s[16:])
    expected, _ = sklearn_map((y >= 0.5).astype(int), s)
    np.testing.assert_allclose(float(tf.function(metric.result)()), expected, rtol=1e-5)


def test_map_without_any_positive_is_zero(rng):
    metric = MeanAveragePrecision(num_classes=3, capacity=8)
    metric.update_state(np.zeros((4, 3), "float32"), rng.random((4, 3)).astype("float32"))
    assert float(metric.result()) == 0.0
    assert np.all(np.isnan(metric.per_class()))


def test_map_overflow_is_never_silent(rng):
    metric = MeanAveragePrecision(num_classes=3, capacity=5)
    y = soft_targets(rng, (4, 3))
    s = rng.random((4, 3)).astype("float32")
    metric.update_state(y, s)
    with pytest.raises(ValueError, match=r"MeanAveragePrecision: `capacity`.*8 samples"):
        metric.update_state(y, s)
    tf.function(metric.update_state)(y, s)  # graph: cannot raise, result becomes NaN
    assert np.isnan(float(metric.result()))
    assert np.all(np.isnan(metric.per_class()))
    metric.reset_state()
    metric.update_state(y, s)
    assert np.isfinite(float(metric.result()))


def test_config_round_trip():
    lrap = LabelRankingAveragePrecision(threshold=0.4, name="r")
    mean_ap = MeanAveragePrecision(5, threshold=0.6, capacity=12, name="m")
    for metric in (lrap, mean_ap):
        clone = type(metric).from_config(metric.get_config())
        assert clone.get_config() == metric.get_config()
    again = keras.metrics.deserialize(keras.metrics.serialize(mean_ap))
    assert isinstance(again, MeanAveragePrecision) and again.capacity == 12


def test_errors():
    for cls in (LabelRankingAveragePrecision, lambda **kw: MeanAveragePrecision(3, **kw)):
        with pytest.raises(ValueError, match=r"Precision: `threshold` must be a number; "
                                             r"received 'high'"):
            cls(threshold="high")
    with pytest.raises(ValueError, match=r"MeanAveragePrecision: `num_classes`.*0"):
        MeanAveragePrecision(0)
    with pytest.raises(ValueError, match=r"MeanAveragePrecision: `y_pred`.*num_classes=3"):
        MeanAveragePrecision(3).update_state(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"LabelRankingAveragePrecision: `y_true`.*shape"):
        LabelRankingAveragePrecision().update_state(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"LabelRankingAveragePrecision: `y_pred`.*rank 2"):
        LabelRankingAveragePrecision().update_state(np.zeros((2, 3, 1)), np.zeros((2, 3, 1)))
    with pytest.raises(ValueError, match=r"LabelRankingAveragePrecision: `sample_weight`"):
        LabelRankingAveragePrecision().update_state(np.zeros((2, 3)), np.zeros((2, 3)),
                                                    sample_weight=[1.0, -1.0])

