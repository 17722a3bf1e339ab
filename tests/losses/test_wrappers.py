"""DropWorst: outlier removal by dropping the k largest per-sample losses (paper 000, 2.4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.losses import DropWorst, SoftFocalLoss
from tests.training.replicas import two_cpu_replicas


def ref_bce_per_sample(y, p):
    eps = 1e-7
    p = np.clip(np.asarray(p, "float64"), eps, 1 - eps)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(-1)


def ref_drop_worst_mean(values, k, weights=None):
    order = np.argsort(-values, kind="stable")
    keep = np.ones_like(values)
    keep[order[:k]] = 0
    if weights is None:
        weights = np.ones_like(values)
    return np.sum(values * keep * weights) / (len(values) - k)


def batch(rng, n=8, c=5):
    y = (rng.random((n, c)) < 0.4).astype("float32")
    p = rng.uniform(0.02, 0.98, (n, c)).astype("float32")
    return y, p


@pytest.mark.parametrize("inner", ["binary_crossentropy", "function", "instance"])
@pytest.mark.parametrize("k", [1, 3])
def test_mean_over_kept_samples(rng, inner, k):
    y, p = batch(rng)
    loss = {"binary_crossentropy": "binary_crossentropy",
            "function": keras.losses.binary_crossentropy,
            "instance": keras.losses.BinaryCrossentropy(reduction="sum")}[inner]
    got = DropWorst(loss, k=k)(y, p)
    np.testing.assert_allclose(float(got), ref_drop_worst_mean(ref_bce_per_sample(y, p), k),
                               rtol=1e-5)


def test_reduction_none_and_sample_weights(rng):
    y, p = batch(rng, n=6)
    values = ref_bce_per_sample(y, p)
    per_sample = np.asarray(DropWorst("binary_crossentropy", k=2, reduction="none")(y, p))
    dropped = np.argsort(-values)[:2]
    assert np.all(per_sample[dropped] == 0)
    kept = np.setdiff1d(np.arange(6), dropped)
    np.testing.assert_allclose(per_sample[kept], values[kept] * 6 / 4, rtol=1e-5)
    weights = rng.random(6).astype("float32")
    got = DropWorst("binary_crossentropy", k=2)(y, p, sample_weight=weights)
    np.testing.assert_allclose(float(got), ref_drop_worst_mean(values, 2, weights), rtol=1e-5)


def test_ties_drop_exactly_k(rng):
    y = np.ones((5, 2), "float32")
    p = np.full((5, 2), 0.3, "float32")
    p[1] = 0.9
    got = DropWorst("binary_crossentropy", k=2)(y, p)
    values = ref_bce_per_sample(y, p)
    np.testing.assert_allclose(float(got), ref_drop_worst_mean(values, 2), rtol=1e-6)


def test_per_pixel_values_are_averaged_per_sample(rng):
    y = (rng.random((4, 3, 3, 2)) < 0.5).astype("float32")
    p = rng.uniform(0.05, 0.95, (4, 3, 3, 2)).astype("float32")
    per_sample = ref_bce_per_sample(y, p).mean(axis=(1, 2))
    got = DropWorst("binary_crossentropy", k=1)(y, p)
    np.testing.assert_allclose(float(got), ref_drop_worst_mean(per_sample, 1), rtol=1e-5)


def test_dropped_sample_gets_no_gradient(rng):
    y, _ = batch(rng, n=4, c=3)
    logits = tf.Variable(rng.normal(size=(4, 3)).astype("float32"))
    logits[2].assign([-9.0, -9.0, -9.0])
    y[2] = 1.0  # sample 2 is by far the worst
    loss = DropWorst(SoftFocalLoss(from_logits=True), k=1)
    with tf.GradientTape() as tape:
        value = loss(y, logits)
    grad = tape.gradient(value, logits).numpy()
    assert np.all(grad[2] == 0)
    assert np.all(np.isfinite(grad)) and np.any(grad[[0, 1, 3]] != 0)


def test_compiled_graph_with_unknown_batch_size(rng):
    y, p = batch(rng, n=7)
    loss = DropWorst("binary_crossentropy", k=2)
    fn = tf.function(loss, input_signature=[tf.TensorSpec((None, 5)), tf.TensorSpec((None, 5))])
    np.testing.assert_allclose(float(fn(y, p)),
                               ref_drop_worst_mean(ref_bce_per_sample(y, p), 2), rtol=1e-5)


def test_mirrored_strategy_drops_per_replica(rng):
    strategy = two_cpu_replicas()
    y, p = batch(rng, n=8)
    values = ref_bce_per_sample(y, p)
    loss = DropWorst("binary_crossentropy", k=1)
    dataset = tf.data.Dataset.from_tensor_slices((y, p)).batch(8)
    distributed = strategy.experimental_distribute_dataset(dataset)
    per_replica = strategy.run(lambda a, b: loss(a, b), args=next(iter(distributed)))
    got = [float(v) for v in strategy.experimental_local_results(per_replica)]
    # Each replica holds 4 consecutive samples and drops its own worst one; Keras's loss
    # reduction divides by the 2 replicas, so the all-reduced sum is the mean of the means.
    means = [ref_drop_worst_mean(values[:4], 1), ref_drop_worst_mean(values[4:], 1)]
    np.testing.assert_allclose(got, np.asarray(means) / 2, rtol=1e-5)
    global_mean_dropping_one = ref_drop_worst_mean(values, 1)
    assert abs(sum(got) - global_mean_dropping_one) > 1e-4  # not the same as dropping 1 of 8


def test_get_config_round_trip_with_inner_loss(rng):
    loss = DropWorst(SoftFocalLoss(gamma=1.0, from_logits=True, class_weights=[1, 1, 1, 1, 0.1]),
                     k=2)
    clone = DropWorst.from_config(loss.get_config())
    assert isinstance(clone.loss, SoftFocalLoss) and clone.loss.gamma == 1.0
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    y, p = batch(rng)
    np.testing.assert_allclose(float(again(y, p)), float(loss(y, p)), rtol=1e-6)
    named = DropWorst.from_config(DropWorst("binary_crossentropy", k=1).get_config())
    np.testing.assert_allclose(float(named(y, p)),
                               ref_drop_worst_mean(ref_bce_per_sample(y, p), 1), rtol=1e-5)


def test_errors():
    y = np.zeros((3, 2), "float32")
    with pytest.raises(ValueError, match=r"DropWorst: `k`.*batch size \(3"):
        DropWorst("binary_crossentropy", k=3)(y, y)
    with pytest.raises(ValueError, match=r"DropWorst: `k`.*>= 1.*0"):
        DropWorst("binary_crossentropy", k=0)
    with pytest.raises(ValueError, match=r"DropWorst: `loss`.*'no_such_loss'"):
        DropWorst("no_such_loss")
    with pytest.raises(ValueError, match=r"DropWorst: `loss`.*scalar"):
        DropWorst(lambda a, b: keras.ops.sum(a - b), k=1)(y, y)
    with pytest.raises(ValueError, match=r"DropWorst: `reduction`.*'sum'"):
        DropWorst("binary_crossentropy", reduction="sum")
