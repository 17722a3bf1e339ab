"""SnapshotEnsemble resumed with BackupAndRestore: same learning rates, snapshots and weights."""

import keras
import numpy as np
import pytest

from keras_seg_extras.callbacks import SnapshotEnsemble


def _model():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1, name="out")(
        keras.layers.Dense(4, activation="tanh", name="hidden")(inputs)))
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse",
                  jit_compile=False)
    return model


class Rates(keras.callbacks.Callback):
    def __init__(self, stop_at=None):
        super().__init__()
        self.stop_at, self.rates = stop_at, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise RuntimeError("interrupted")

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def _fit(directory, backup, rates):
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model = _model()
    snapshots = SnapshotEnsemble(cycles=3, max_lr=0.2, directory=directory)
    # 4 updates per epoch x 3 epochs = T = 12: one cycle per epoch.
    model.fit(x, x[:, :1], batch_size=2, epochs=3, shuffle=False, verbose=0,
              callbacks=[snapshots, keras.callbacks.BackupAndRestore(backup), rates])
    return model


def test_resumed_snapshot_run_equals_uninterrupted(tmp_path):
    straight_rates = Rates()
    straight = _fit(tmp_path / "a", tmp_path / "backup_a", straight_rates)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(tmp_path / "b", tmp_path / "backup_b", Rates(stop_at=2))
    resumed_rates = Rates()
    resumed = _fit(tmp_path / "b", tmp_path / "backup_b", resumed_rates)
    # The cyclic schedule continues at update 9 (optimizer.iterations was restored).
    np.testing.assert_allclose(resumed_rates.rates, straight_rates.rates[8:], rtol=1e-6)
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-6)
    for cycle in (1, 2, 3):
        name = f"snapshot_{cycle:02d}.keras"
        a = keras.saving.load_model(tmp_path / "a" / name)
        b = keras.saving.load_model(tmp_path / "b" / name)
        for wa, wb in zip(a.weights, b.weights):
            np.testing.assert_allclose(wb.numpy(), wa.numpy(), rtol=0, atol=1e-6)
