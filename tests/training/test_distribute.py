"""strategy() selection, and a reusable check that a loss/metric is the same under 2 replicas.

``assert_loss_same_under_replicas`` and ``assert_metric_same_under_replicas`` are meant to
be applied to every loss and metric of the package: add them to ``LOSSES`` / ``METRICS``.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests.training.replicas import two_cpu_replicas

from keras_seg_extras.training import strategy
from keras_seg_extras.training.distribute import _cluster_size

# ----------------------------------------------------------------------------- helpers


def _two_replicas():
    return two_cpu_replicas()


def _split(mirrored, array):
    half = array.shape[0] // 2
    return mirrored.experimental_distribute_values_from_function(
        lambda context: tf.constant(array[context.replica_id_in_sync_group * half:
                                          (context.replica_id_in_sync_group + 1) * half]))


def loss_under_replicas(loss, y_true, y_pred):
    """(value, gradient w.r.t. y_pred) on one device and as Keras trains under 2 replicas.

    Under ``MirroredStrategy`` Keras's ``train_step`` computes the loss on each replica's
    half of the global batch, where a ``keras.losses.Loss`` divides its reduced value by the
    number of replicas, and sums the gradients (all-reduce). So the distributed loss is
    ``sum_r loss(shard_r) / R`` and its gradient w.r.t. the predictions is the
    concatenation of the per-replica gradients. A plain function is wrapped the way
    ``compile`` wraps it (``LossFunctionWrapper``).
    """
    if not isinstance(loss, keras.losses.Loss):
        from keras.src.losses.losses import LossFunctionWrapper

        loss = LossFunctionWrapper(loss)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred, "float32")
    if y_true.shape[0] % 2:
        raise ValueError("loss_under_replicas: the batch must split into two equal halves")
    prediction = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(prediction)
        single = loss(tf.constant(y_true), prediction)
    single_gradient = tape.gradient(single, prediction).numpy()

    mirrored = _two_replicas()

    def replica_step(shard_true, shard_pred):
        with tf.GradientTape() as tape:
            tape.watch(shard_pred)
            value = loss(shard_true, shard_pred)  # scaled by 1/R inside Loss.__call__
        return value, tape.gradient(value, shard_pred)

    values, gradients = mirrored.run(replica_step,
                                     args=(_split(mirrored, y_true), _split(mirrored, y_pred)))
    distributed = float(mirrored.reduce(tf.distribute.ReduceOp.SUM, values, axis=None))
    distributed_gradient = np.concatenate(
        [g.numpy() for g in mirrored.experimental_local_results(gradients)])
    return (float(single), single_gradient), (distributed, distributed_gradient)


def assert_loss_same_under_replicas(loss, y_true, y_pred, atol=1e-5):
    (value, gradient), (value_2, gradient_2) = loss_under_replicas(loss, y_true, y_pred)
    assert np.isfinite(value)
    np.testing.assert_allclose(value_2, value, atol=atol, rtol=0)
    np.testing.assert_allclose(gradient_2, gradient, atol=atol, rtol=0)


def assert_metric_same_under_replicas(make_metric, y_true, y_pred, atol=1e-5):
    """A metric updated per replica on half batches reports the one-device value."""
    single = make_metric()
    single.update_state(y_true, y_pred)
    mirrored = _two_replicas()
    with mirrored.scope():
        metric = make_metric()
    mirrored.run(metric.update_state, args=(_split(mirrored, np.asarray(y_true)),
                                            _split(mirrored, np.asarray(y_pred, "float32"))))
    np.testing.assert_allclose(np.asarray(metric.result()), np.asarray(single.result()),
                               atol=atol, rtol=0)


def _segmentation_batch(seed=0, classes=1):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((4, 8, 8, classes)) > 0.6).astype("float32")
    y_pred = rng.random((4, 8, 8, classes)).astype("float32") * 0.98 + 0.01
    return y_true, y_pred


# Losses and metrics of the package (and Keras's own as a baseline); the lead extends these.
LOSSES = {
    "keras_binary_crossentropy": keras.losses.BinaryCrossentropy(),
    "keras_binary_focal_crossentropy": keras.losses.BinaryFocalCrossentropy(gamma=2.0),
}
METRICS = {
    "keras_binary_iou": lambda: keras.metrics.BinaryIoU(target_class_ids=[1]),
    "keras_mean_iou": lambda: keras.metrics.MeanIoU(num_classes=2, sparse_y_pred=False),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_same_under_two_replicas(name):
    y_true, y_pred = _segmentation_batch()
    assert_loss_same_under_replicas(LOSSES[name], y_true, y_pred)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_same_under_two_replicas(name):
    y_true, y_pred = _segmentation_batch(1)
    if name == "keras_mean_iou":
        y_pred = np.concatenate([1 - y_pred, y_pred], axis=-1)
    assert_metric_same_under_replicas(METRICS[name], y_true, y_pred)


def test_helper_catches_a_batch_global_loss():
    """A Dice loss pooled over the whole batch is not the mean of two half-batch Dice losses."""

    def batch_dice_loss(y_true, y_pred):
        intersection = tf.reduce_sum(y_true * y_pred)
        return 1.0 - 2.0 * intersection / (tf.reduce_sum(y_true) + tf.reduce_sum(y_pred))

    y_true, y_pred = _segmentation_batch(2)
    y_true[:2] = 0.0  # make the halves very different
    with pytest.raises(AssertionError):
        assert_loss_same_under_replicas(batch_dice_loss, y_true, y_pred)


# ----------------------------------------------------------------------------- strategy()


def test_default_strategy_without_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy() is tf.distribute.get_strategy()
    single = {"cluster": {"worker": ["127.0.0.1:1234"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(single))
    assert strategy() is tf.distribute.get_strategy()  # a one-task cluster is not a cluster


def test_cluster_parsing_and_errors(monkeypatch):
    two = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}
    assert _cluster_size(json.dumps(two)) == 2
    with pytest.raises(ValueError, match="strategy: `TF_CONFIG` must be JSON"):
        _cluster_size("{not json")
    with pytest.raises(ValueError, match="must name this process's `task`"):
        _cluster_size(json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy: `communication`"):
        strategy("mpi")
