"""StochasticTCESampler: Algorithm 1 of paper 002 driving the class-sampled dataset in fit."""

import keras
import numpy as np

from tests.training.replicas import two_cpu_replicas
import pytest
import tensorflow as tf

import keras_seg_extras as kse
from keras_seg_extras.callbacks import StochasticTCESampler

K = 4


def _naive_weights(events, t, gamma, k):
    """Algorithm 1 lines 6-8 in plain arithmetic, uniform start at the first batch's exp(tL)."""
    tilted = None
    for c, loss in events:
        value = np.exp(t * loss)
        if tilted is None:
            tilted = np.full(k, value)
        else:
            tilted[c] = (1 - gamma) * tilted[c] + gamma * value
    return tilted / tilted.sum()


def _one_class_images(n_per_class=3, size=8):
    """Images whose every label pixel is one class: a batch of class c has labels all c."""
    labels = np.repeat(np.arange(K), n_per_class)[:, None, None] * np.ones((1, size, size), int)
    images = (labels[..., None] * 40).astype(np.uint8)
    return images, labels


class _LabelMeanLoss(keras.losses.Loss):
    """Loss = mean label value (+ 0 x prediction): equals the class of a one-class batch."""

    def call(self, y_true, y_pred):
        y = tf.cast(y_true, tf.float32)
        return tf.reduce_mean(y, axis=[1, 2, 3]) + 0.0 * tf.reduce_mean(y_pred, axis=[1, 2, 3])


class _Recorder(StochasticTCESampler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def update(self, class_id, batch_loss):
        self.events.append((class_id, batch_loss))
        super().update(class_id, batch_loss)


def _model(size=8):
    """The smallest segmentation model (a 1x1 convolution): fit's tracing stays cheap."""
    inputs = keras.Input((size, size, 1), name="image")
    return keras.Model(inputs, keras.layers.Conv2D(K, 1)(inputs))


def test_update_matches_naive_algorithm(rng):
    weights = tf.Variable(np.full(K, 0.25, np.float32))
    sampler = StochasticTCESampler(t=1.5, gamma=0.3, sampling_weights=weights)
    np.testing.assert_allclose(sampler.weights(), 0.25)  # uniform start
    events = [(int(c), float(v)) for c, v in zip(rng.integers(0, K, 30), rng.uniform(0, 3, 30))]
    for c, loss in events:
        sampler.update(c, loss)
    expected = _naive_weights(events, 1.5, 0.3, K)
    np.testing.assert_allclose(sampler.weights(), expected, rtol=1e-10)
    np.testing.assert_allclose(weights.numpy(), expected, rtol=1e-6)
    # gamma = 1 replaces; t = 0 stays uniform; huge t*L stays finite and picks the worst.
    s1 = StochasticTCESampler(2.0, 1.0, tf.Variable(np.zeros(K, np.float32)))
    for c, loss in events:
        s1.update(c, loss)
    np.testing.assert_allclose(s1.weights(), _naive_weights(events, 2.0, 1.0, K), rtol=1e-9)
    s0 = StochasticTCESampler(0.0, 0.5, tf.Variable(np.zeros(K, np.float32)))
    for c, loss in events:
        s0.update(c, loss)
    np.testing.assert_allclose(s0.weights(), 0.25)
    big = StochasticTCESampler(1e4, 0.5, tf.Variable(np.zeros(K, np.float32)))
    big.update(0, 1.0)
    big.update(1, 2.0)
    big.update(2, 0.5)
    w = big.weights()
    assert np.all(np.isfinite(w)) and w[1] == pytest.approx(1.0)
    neg = StochasticTCESampler(-1e4, 0.5, tf.Variable(np.zeros(K, np.float32)))
    neg.update(0, 1.0)
    neg.update(1, 2.0)
    # exp(-1e4) underflows in plain arithmetic; in log space class 1 keeps half the others.
    np.testing.assert_allclose(neg.weights(), np.array([1.0, 0.5, 1.0, 1.0]) / 3.5, rtol=1e-9)


def test_fit_attributes_each_loss_to_the_class_of_its_batch(rng):
    images, labels = _one_class_images()
    ds = kse.data.class_sampled_dataset(images, labels, K, batch_size=2, seed=4)
    model = _model()
    model.compile(optimizer="sgd", loss=_LabelMeanLoss())
    sampler = _Recorder(1.0, 0.5, ds, class_names=["a", "b", "c", "d"])
    history = model.fit(ds, steps_per_epoch=8, epochs=2, callbacks=[sampler], verbose=0)
    assert len(sampler.events) == 16
    # The loss of a batch of class c is exactly c: class and loss belong to the same batch.
    for c, loss in sampler.events:
        assert loss == pytest.approx(c, abs=1e-6)
    assert len({c for c, _ in sampler.events}) > 1
    np.testing.assert_allclose(ds.sampling_weights.numpy(), sampler.weights(), rtol=1e-6)
    np.testing.assert_allclose(sampler.weights(), _naive_weights(sampler.events, 1.0, 0.5, K),
                               rtol=1e-9)
    assert set(history.history) == {"loss", "tce_weight_a", "tce_weight_b", "tce_weight_c",
                                    "tce_weight_d"}
    np.testing.assert_allclose([history.history[f"tce_weight_{n}"][-1] for n in "abcd"],
                               sampler.weights())
    # After fit the model trains on plain batches again without the sampler.
    model.fit(images.astype("float32") / 255, labels[..., None], epochs=1, verbose=0)


def test_mirrored_strategy_uses_mean_of_replica_losses(rng):
    strategy = two_cpu_replicas()
    images, labels = _one_class_images()
    ds = kse.data.class_sampled_dataset(images, labels, K, batch_size=4, seed=8)
    with strategy.scope():
        model = _model()
        model.compile(optimizer="sgd", loss=_LabelMeanLoss())
    sampler = _Recorder(0.5, 0.2, ds)
    model.fit(ds, steps_per_epoch=6, epochs=1, callbacks=[sampler], verbose=0)
    assert len(sampler.events) == 6
    for c, loss in sampler.events:  # each replica's loss is c; their mean too
        assert loss == pytest.approx(c, abs=1e-6)
    np.testing.assert_allclose(ds.sampling_weights.numpy(), sampler.weights(), rtol=1e-6)


class _Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch, batch):
        super().__init__()
        self.at = (epoch, batch)
        self.epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise RuntimeError("interrupted")


class _StateAtEpochEnd(keras.callbacks.Callback):
    def __init__(self, sampler):
        super().__init__()
        self.sampler = sampler
        self.states = []

    def on_epoch_end(self, epoch, logs=None):
        self.states.append(self.sampler.get_state())


class _StateAtBegin(keras.callbacks.Callback):
    def __init__(self, sampler, weights):
        super().__init__()
        self.sampler, self.weights = sampler, weights

    def on_train_begin(self, logs=None):
        self.state = self.sampler.get_state()
        self.variable = self.weights.numpy().copy()


def test_backup_and_restore_resume_continues_with_the_same_weights(tmp_path, rng):
    images, labels = _one_class_images()
    backup = str(tmp_path / "backup")
    ds = kse.data.class_sampled_dataset(images, labels, K, batch_size=2, seed=1)
    model = _model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sampler = StochasticTCESampler(2.0, 0.3, ds)
    saved = _StateAtEpochEnd(sampler)
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(ds, steps_per_epoch=3, epochs=3, verbose=0,
                  callbacks=[sampler, saved, keras.callbacks.BackupAndRestore(backup),
                             _Interrupt(2, 1)])
    last_backup = saved.states[1]  # the backup of the end of epoch index 1
    assert last_backup["updates"] == 6 and sampler.get_state()["updates"] == 8

    # A fresh process: new dataset, model and sampler, same backup folder.
    ds2 = kse.data.class_sampled_dataset(images, labels, K, batch_size=2, seed=2)
    model2 = _model()
    model2.compile(optimizer="sgd",
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sampler2 = StochasticTCESampler(2.0, 0.3, ds2)
    probe = _StateAtBegin(sampler2, ds2.sampling_weights)
    history = model2.fit(ds2, steps_per_epoch=3, epochs=3, verbose=0,
                         callbacks=[sampler2, keras.callbacks.BackupAndRestore(backup), probe])
    np.testing.assert_array_equal(probe.state["log_tilted_losses"],
                                  last_backup["log_tilted_losses"])
    assert probe.state["updates"] == 6
    expected = np.exp(last_backup["log_tilted_losses"] - last_backup["log_tilted_losses"].max())
    np.testing.assert_allclose(probe.variable, expected / expected.sum(), rtol=1e-6)
    assert len(history.history["loss"]) == 1 and sampler2.get_state()["updates"] == 9


def test_state_in_weight_checkpoints_and_get_set_state(tmp_path, rng):
    images, labels = _one_class_images()
    ds = kse.data.class_sampled_dataset(images, labels, K, batch_size=2, seed=1)
    model = _model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    sampler = StochasticTCESampler(1.0, 0.5, ds)
    path = str(tmp_path / "ckpt.weights.h5")
    # A weights file saved before any sampler existed loads without touching the sampler.
    model.save_weights(path)
    model.fit(ds, steps_per_epoch=4, epochs=1, callbacks=[sampler], verbose=0)
    state = sampler.get_state()
    model.load_weights(path)
    assert sampler.get_state()["updates"] == 4
    model.save_weights(path)
    other = StochasticTCESampler(1.0, 0.5, tf.Variable(np.zeros(K, np.float32)))
    other.set_model(model)
    model.load_weights(path)
    np.testing.assert_array_equal(other.get_state()["log_tilted_losses"],
                                  state["log_tilted_losses"])
    np.testing.assert_allclose(other.sampling_weights.numpy(), sampler.weights(), rtol=1e-6)
    third = StochasticTCESampler(1.0, 0.5, tf.Variable(np.zeros(K, np.float32)))
    third.set_state(state)
    np.testing.assert_allclose(third.weights(), sampler.weights())


def test_errors(rng):
    images, labels = _one_class_images()
    weights = tf.Variable(np.zeros(K, np.float32))
    with pytest.raises(ValueError, match=r"StochasticTCESampler: `gamma`.*0"):
        StochasticTCESampler(1.0, 0.0, weights)
    with pytest.raises(ValueError, match=r"StochasticTCESampler: `t`.*nan"):
        StochasticTCESampler(float("nan"), 0.1, weights)
    with pytest.raises(ValueError, match=r"StochasticTCESampler: `sampling_weights`"):
        StochasticTCESampler(1.0, 0.1, [0.25] * 4)
    with pytest.raises(ValueError, match=r"`class_names`.*4 classes"):
        StochasticTCESampler(1.0, 0.1, weights, class_names=["a"])
    with pytest.raises(ValueError, match=r"`state`.*\(3,\)"):
        StochasticTCESampler(1.0, 0.1, weights).set_state({"log_tilted_losses": np.zeros(3)})
    model = _model()
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"carried no 'tce_class'"):
        model.fit(images.astype("float32"), labels[..., None], epochs=1, verbose=0,
                  callbacks=[StochasticTCESampler(1.0, 0.1, weights)])
    ds = kse.data.class_sampled_dataset(images, labels, K, batch_size=2)
    model.compile(optimizer="sgd", steps_per_execution=2,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=r"steps_per_execution`.*2"):
        model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0,
                  callbacks=[StochasticTCESampler(1.0, 0.1, ds)])
