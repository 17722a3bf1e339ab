"""Snapshot ensembles: Huang et al.'s cyclic cosine, one snapshot per cycle, averaged ensemble."""

import math

import keras
import numpy as np
import pytest

from keras_seg_extras.callbacks import SnapshotEnsemble, load_snapshot_ensemble
from keras_seg_extras.training import CyclicCosineSchedule, accumulating_optimizer


def _huang(t, alpha0, total, cycles):
    """Eq. 2 of Huang et al. with 1-based iteration t."""
    length = math.ceil(total / cycles)
    return alpha0 / 2 * (math.cos(math.pi * ((t - 1) % length) / length) + 1)


def _model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((3,), name="x")
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))


class Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates, self.weights = [], {}

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        self.weights[step] = [w.numpy().copy() for w in self.model.weights]


def test_schedule_matches_huang_formula():
    schedule = CyclicCosineSchedule(0.1, total_steps=10, cycles=3)  # ceil(10/3) = 4
    for t in range(1, 13):
        assert float(schedule(t - 1)) == pytest.approx(_huang(t, 0.1, 10, 3), abs=1e-7)
    assert schedule.cycle_length == 4
    clone = CyclicCosineSchedule.from_config(schedule.get_config())
    assert float(clone(5)) == pytest.approx(float(schedule(5)))


def test_snapshots_per_cycle_and_averaged_ensemble(rng, tmp_path):
    x = rng.normal(size=(12, 3)).astype("float32")
    y = rng.normal(size=(12, 1)).astype("float32")
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse", jit_compile=False)
    record = Record()
    callback = SnapshotEnsemble(cycles=3, max_lr=0.2, directory=tmp_path / "snaps")
    # 6 updates per epoch x 2 epochs = T = 12, cycles of 4 updates.
    model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0,
              callbacks=[callback, record])
    np.testing.assert_allclose(record.rates, [_huang(t, 0.2, 12, 3) for t in range(1, 13)],
                               rtol=1e-6)
    assert [p.rsplit("/", 1)[-1] for p in callback.saved] == [
        "snapshot_01.keras", "snapshot_02.keras", "snapshot_03.keras"]
    for cycle, path in enumerate(callback.saved, start=1):
        saved = keras.saving.load_model(path)
        for a, b in zip(saved.weights, record.weights[4 * cycle]):
            np.testing.assert_array_equal(a.numpy(), b)
    ensemble = load_snapshot_ensemble(tmp_path / "snaps", m=2)
    members = [keras.saving.load_model(p) for p in callback.saved[-2:]]
    expected = np.mean([member.predict(x, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-6)
    ensemble.save(tmp_path / "ensemble.keras")
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-6)


def test_cycles_count_applied_updates_under_accumulation(rng, tmp_path):
    x = rng.normal(size=(8, 3)).astype("float32")
    model = _model()
    model.compile(optimizer=accumulating_optimizer(keras.optimizers.SGD(0.1), 2), loss="mse",
                  jit_compile=False)
    callback = SnapshotEnsemble(cycles=2, max_lr=0.1, directory=tmp_path)
    record = Record()
    # 8 micro-batches = 4 updates, T = 4, cycles of 2 updates; the last cycle ends at training end.
    model.fit(x, x[:, :1], batch_size=1, epochs=1, shuffle=False, verbose=0,
              callbacks=[callback, record])
    assert callback.schedule.total_steps == 4
    assert len(callback.saved) == 2
    applied = record.rates[1::2]  # the micro-batch that applies each update
    np.testing.assert_allclose(applied, [_huang(t, 0.1, 4, 2) for t in range(1, 5)], rtol=1e-6)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="SnapshotEnsemble: `cycles`.*0"):
        SnapshotEnsemble(0, 0.1, tmp_path)
    with pytest.raises(ValueError, match="`max_lr`"):
        SnapshotEnsemble(2, -1.0, tmp_path)
    model = _model()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse")
    with pytest.raises(ValueError, match="must have a float learning rate"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 1)), verbose=0,
                  callbacks=[SnapshotEnsemble(1, 0.1, tmp_path)])
    with pytest.raises(ValueError, match="load_snapshot_ensemble: `paths_or_dir`.*no snapshot"):
        load_snapshot_ensemble(tmp_path)
    with pytest.raises(ValueError, match="CyclicCosineSchedule: `cycles`"):
        CyclicCosineSchedule(0.1, total_steps=3, cycles=4)
