"""Cosine annealing with warm-up: NumPy reference, edges, config and .keras round trips."""

import math

import keras
import numpy as np
import pytest

from keras_seg_extras.training import CosineAnnealingWithWarmup, ProgressiveTrainer, Stage


def _reference(step, lr0, total, warmup, final, start):
    if step < warmup:
        return start + (lr0 - start) * step / warmup
    progress = min(step - warmup, total - warmup) / (total - warmup)
    return final + (lr0 - final) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("warmup,final,start", [(0, 0.0, 0.0), (5, 1e-5, 1e-6), (1, 0.0, 0.0)])
def test_matches_numpy_reference(warmup, final, start):
    schedule = CosineAnnealingWithWarmup(5e-4, total_steps=45, warmup_steps=warmup,
                                         final_learning_rate=final,
                                         warmup_initial_learning_rate=start)
    steps = np.arange(0, 60)
    got = np.array([float(schedule(s)) for s in steps])
    expected = np.array([_reference(s, 5e-4, 45, warmup, final, start) for s in steps])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-10)
    assert got[warmup] == pytest.approx(5e-4)        # peak at the end of warm-up
    assert got[-1] == pytest.approx(final, abs=1e-12)  # flat after total_steps
    assert np.all(np.diff(got[warmup:]) <= 1e-12)     # never increases after the peak


def test_int64_and_float_steps():
    schedule = CosineAnnealingWithWarmup(1.0, total_steps=4)
    assert float(schedule(keras.ops.convert_to_tensor(2, "int64"))) == pytest.approx(0.5)
    assert float(schedule(2.0)) == pytest.approx(0.5)


def test_config_and_keras_file_round_trip(tmp_path):
    schedule = CosineAnnealingWithWarmup(1e-3, 100, 10, 1e-5, 1e-4, name="cos")
    clone = CosineAnnealingWithWarmup.from_config(schedule.get_config())
    assert clone.get_config() == schedule.get_config()
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer._learning_rate, CosineAnnealingWithWarmup)
    assert loaded.optimizer._learning_rate.get_config() == schedule.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="CosineAnnealingWithWarmup: `warmup_steps` must be "
                                         "smaller than total_steps=10; received 10"):
        CosineAnnealingWithWarmup(0.1, 10, warmup_steps=10)
    with pytest.raises(ValueError, match="`final_learning_rate` must be <= 0.1"):
        CosineAnnealingWithWarmup(0.1, 10, final_learning_rate=0.2)
    with pytest.raises(ValueError, match="`learning_rate` must be > 0"):
        CosineAnnealingWithWarmup(0.0, 10)
    with pytest.raises(ValueError, match="`total_steps` must be an integer"):
        CosineAnnealingWithWarmup(0.1, 10.5)


def test_stage_optimizer_choices():
    inputs = keras.Input((None, None, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    stages = [Stage(32, 1, 2, "mse", learning_rate=lambda n: CosineAnnealingWithWarmup(0.1, n),
                    optimizer="sgd", accumulation_steps=2, steps_per_epoch=6),
              Stage(32, 1, 2, "mse", learning_rate=0.5,
                    optimizer=lambda lr: keras.optimizers.RMSprop(lr)),
              Stage(32, 1, 2, "mse", optimizer="no_such_optimizer")]
    trainer = ProgressiveTrainer(model, stages, train_data=lambda size, batch: None)
    first = trainer._optimizer(stages[0], 6)
    assert isinstance(first.inner_optimizer, keras.optimizers.SGD)
    assert first.inner_optimizer._learning_rate.total_steps == 3  # 1 epoch x ceil(6 / 2)
    second = trainer._optimizer(stages[1], None)
    assert isinstance(second, keras.optimizers.RMSprop)
    assert float(second.learning_rate.numpy()) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="`optimizer` must name a Keras optimizer"):
        trainer._optimizer(stages[2], None)
