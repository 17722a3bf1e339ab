"""Stochastic Weight Averaging: the mean of snapshots, exact BN re-estimation, resume, distribution."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests.training.replicas import two_cpu_replicas

from keras_seg_extras.callbacks import StochasticWeightAveraging
from keras_seg_extras.models.small_unet import small_unet
from keras_seg_extras.training import accumulating_optimizer

SIZE = 8


def _model(seed=5, unet=False):
    """A tiny fully convolutional model with named layers and two BatchNorms."""
    keras.utils.set_random_seed(seed)
    if unet:
        return small_unet((None, None, 1), num_classes=1, activation="sigmoid", filters=(4, 8))
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


def _data(rng, n=16):
    x = rng.normal(size=(n, SIZE, SIZE, 1)).astype("float32")
    y = (x > 0.3).astype("float32")
    return x, y


class Snapshots(keras.callbacks.Callback):
    """Independent record of the weights the average should contain."""

    def __init__(self, start_epoch, every=None):
        super().__init__()
        self.start_epoch, self.every, self.taken, self.epoch = start_epoch, every, [], 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.every is None and epoch >= self.start_epoch:
            self.taken.append([w.numpy().copy() for w in self.model.trainable_weights])

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.every and self.epoch >= self.start_epoch and step % self.every == 0:
            self.taken.append([w.numpy().copy() for w in self.model.trainable_weights])


def _assert_mean_of(model, snapshots, atol=1e-6):
    assert len(snapshots) >= 2
    for i, weight in enumerate(model.trainable_weights):
        expected = np.mean([s[i] for s in snapshots], axis=0)
        np.testing.assert_allclose(weight.numpy(), expected, atol=atol, rtol=0)


def test_swa_weights_are_the_mean_of_epoch_snapshots(rng, tmp_path):
    x, y = _data(rng)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy",
                  jit_compile=False)
    weights_before, layers_before = len(model.weights), len(model.layers)
    snapshots = Snapshots(start_epoch=2)
    swa = StochasticWeightAveraging(start_epoch=2, keep_raw_weights=True)
    model.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
              callbacks=[snapshots, swa])
    assert swa.count == 2
    # The state rides along as an untracked attribute: no model weight, no layer added.
    assert (len(model.weights), len(model.layers)) == (weights_before, layers_before)
    _assert_mean_of(model, snapshots.taken)
    # The raw weights are kept and differ from the average.
    raw = swa.raw_weights
    np.testing.assert_allclose(raw[0], snapshots.taken[-1][0])
    assert np.abs(raw[0] - model.trainable_weights[0].numpy()).max() > 1e-4
    # A .keras file of the model (with the SWA state attached) loads with plain load_model.
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    swa.restore_raw_weights()
    np.testing.assert_allclose(model.trainable_weights[0].numpy(), raw[0])


def test_swa_every_n_updates_counts_applied_updates(rng):
    x, y = _data(rng)
    model = _model()
    model.compile(optimizer=accumulating_optimizer(keras.optimizers.SGD(0.5), 2),
                  loss="binary_crossentropy", jit_compile=False)
    snapshots = Snapshots(start_epoch=1, every=3)
    swa = StochasticWeightAveraging(start_epoch=1, update_every=3)
    # 16 samples / batch 2 = 8 micro-batches = 4 updates per epoch; updates 6, 9, 12 count.
    model.fit(x, y, batch_size=2, epochs=3, shuffle=False, verbose=0,
              callbacks=[snapshots, swa])
    # The record also fires on the micro-batch between updates: keep one per update.
    unique = [s for i, s in enumerate(snapshots.taken)
              if i == 0 or not all(np.array_equal(a, b) for a, b in zip(s, snapshots.taken[i - 1]))]
    assert swa.count == 3 == len(unique)
    _assert_mean_of(model, unique)


def _moving(model):
    """Moving statistics of every BN layer, read before anything runs in training mode again."""
    return [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
            for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def _features(model, x):
    """Pre-BN activations of every BN layer, in training mode (independent of the hook).

    Running in training mode moves the moving statistics: read them with ``_moving`` first.
    """
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    extractor = keras.Model(model.inputs, [layer.input for layer in bns])
    return bns, [np.asarray(f, "float64") for f in extractor(x, training=True)]


def test_swa_end_of_training_reestimates_batchnorm(rng):
    x, y = _data(rng)
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy",
                  jit_compile=False)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    swa = StochasticWeightAveraging(start_epoch=1, bn_data=data)
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=[swa])
    moving = _moving(model)
    _, feats = _features(model, x[:8])
    _, feats2 = _features(model, x[8:])
    for (mean, variance), f1, f2 in zip(moving, feats, feats2):
        pooled = np.concatenate([f1.reshape(-1, f1.shape[-1]), f2.reshape(-1, f2.shape[-1])])
        np.testing.assert_allclose(mean, pooled.mean(0), atol=1e-5)
        np.testing.assert_allclose(variance, pooled.var(0), atol=1e-5, rtol=1e-5)


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.at = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("interrupted")


def _swa_run(x, y, backup, interrupt=None):
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy",
                  jit_compile=False)
    callbacks = [StochasticWeightAveraging(start_epoch=1),
                 keras.callbacks.BackupAndRestore(str(backup))]
    if interrupt is not None:
        callbacks.append(Interrupt(interrupt))
    model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0, callbacks=callbacks)
    return model


def test_resumed_run_continues_the_same_average(rng, tmp_path):
    x, y = _data(rng)
    straight = _swa_run(x, y, tmp_path / "a")
    with pytest.raises(RuntimeError, match="interrupted"):
        _swa_run(x, y, tmp_path / "b", interrupt=2)
    resumed = _swa_run(x, y, tmp_path / "b")
    assert resumed._kse_swa_swa.count.numpy() == 2
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, rtol=0)


def test_mirrored_strategy_with_loss_scaling(rng):
    x, y = _data(rng)
    strategy = two_cpu_replicas()
    with strategy.scope():
        model = _model()
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05)),
                      loss="binary_crossentropy", jit_compile=False)
    snapshots = Snapshots(start_epoch=0)
    swa = StochasticWeightAveraging(start_epoch=0, bn_data=[x[:8], x[8:]])
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0,
              callbacks=[snapshots, swa])
    _assert_mean_of(model, snapshots.taken)
    moving = _moving(model)
    _, f1 = _features(model, x[:8])
    _, f2 = _features(model, x[8:])
    for i in range(2):
        pooled = np.concatenate([f1[i].reshape(-1, 4), f2[i].reshape(-1, 4)])
        np.testing.assert_allclose(moving[i][0], pooled.mean(0), atol=1e-5)
        np.testing.assert_allclose(moving[i][1], pooled.var(0), atol=1e-5, rtol=1e-5)


def test_no_snapshot_warns_and_keeps_weights():
    model = _model()
    before = [w.numpy().copy() for w in model.weights]
    swa = StochasticWeightAveraging(start_epoch=5)
    swa.set_model(model)
    swa.on_train_begin()
    swa.on_epoch_end(0)
    with pytest.warns(UserWarning, match="no snapshot was averaged"):
        swa.on_train_end()
    for a, b in zip(before, model.weights):
        np.testing.assert_array_equal(a, b.numpy())


def test_bad_arguments_and_config():
    with pytest.raises(ValueError, match="StochasticWeightAveraging: `start_epoch`.*-1"):
        StochasticWeightAveraging(-1)
    with pytest.raises(ValueError, match="`update_every`.*'batch'"):
        StochasticWeightAveraging(0, update_every="batch")
    with pytest.raises(ValueError, match="`name`"):
        StochasticWeightAveraging(0, name="a b")
    swa = StochasticWeightAveraging(3, update_every=10, keep_raw_weights=True)
    clone = StochasticWeightAveraging(**swa.get_config())
    assert clone.get_config() == swa.get_config()
