"""Gradient accumulation: equivalence with the large batch, schedules per applied update (BN momentum: test_batchnorm.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests.training.replicas import two_cpu_replicas

from keras_seg_extras.training import (
    AccumulatedSchedule,
    CosineAnnealingWithWarmup,
    GradientAccumulationOptimizer,
    accumulating_optimizer,
    effective_batch_size,
)

MICRO, STEPS, UPDATES = 4, 3, 2  # micro-batch, accumulation steps, applied updates


def _model(seed=3):
    """A tiny fully convolutional model without BatchNorm."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(inputs)
    outputs = keras.layers.Conv2D(1, 1)(x)
    return keras.Model(inputs, outputs)


def _data(rng):
    n = MICRO * STEPS * UPDATES
    x = rng.normal(size=(n, 4, 4, 2)).astype("float32")
    y = rng.normal(size=(n, 4, 4, 1)).astype("float32")
    return x, y


def _train(optimizer, x, y, batch_size, strategy=None):
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = _model()
        model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return [w.numpy() for w in model.weights], model


def _assert_same(a, b, atol=1e-5):
    for wa, wb in zip(a, b):
        np.testing.assert_allclose(wa, wb, atol=atol, rtol=0)


@pytest.mark.parametrize("make", [lambda: keras.optimizers.SGD(0.5),
                                  lambda: keras.optimizers.Adam(0.01)], ids=["sgd", "adam"])
def test_micro_batches_equal_one_large_batch(rng, make):
    x, y = _data(rng)
    large, _ = _train(make(), x, y, MICRO * STEPS)
    accumulated, model = _train(accumulating_optimizer(make(), STEPS), x, y, MICRO)
    initial = [w.numpy() for w in _model().weights]
    # The update really moved the weights, and it moved them the same way.
    assert max(np.abs(a - b).max() for a, b in zip(large, initial)) > 1e-2
    _assert_same(accumulated, large)
    assert int(model.optimizer.iterations.numpy()) == UPDATES


@pytest.mark.parametrize("make,scaled", [(lambda: keras.optimizers.SGD(0.5), False),
                                         (lambda: keras.optimizers.Adam(0.01), True)],
                         ids=["sgd", "adam-loss-scaled"])
def test_two_replicas_equal_one_large_batch(rng, make, scaled):
    x, y = _data(rng)
    large, _ = _train(make(), x, y, MICRO * STEPS)
    strategy = two_cpu_replicas()
    with strategy.scope():
        inner = keras.optimizers.LossScaleOptimizer(make()) if scaled else make()
        optimizer = accumulating_optimizer(inner, STEPS)
    # Global micro-batch MICRO = 2 replicas x MICRO / 2 samples.
    accumulated, _ = _train(optimizer, x, y, MICRO, strategy)
    _assert_same(accumulated, large)


def test_loss_scaling_equals_large_batch(rng):
    x, y = _data(rng)
    large, _ = _train(keras.optimizers.Adam(0.01), x, y, MICRO * STEPS)
    optimizer = accumulating_optimizer(
        keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01)), STEPS)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer.inner_optimizer, GradientAccumulationOptimizer)
    accumulated, model = _train(optimizer, x, y, MICRO)
    assert float(model.optimizer.dynamic_scale.numpy()) == 2.0 ** 15  # scaling was active
    _assert_same(accumulated, large)


def test_mixed_float16_loss_scaling_matches_large_batch(rng):
    """float16 compute rounds differently for different batch sizes: compare to 1e-3."""
    x, y = _data(rng)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        large, _ = _train(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)),
                          x, y, MICRO * STEPS)
        accumulated, _ = _train(accumulating_optimizer(
            keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.5)), STEPS), x, y, MICRO)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    initial = [w.numpy() for w in _model().weights]
    for a, b, w0 in zip(accumulated, large, initial):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a - w0, b - w0, atol=1e-3, rtol=0)


def _learning_rates_used(optimizer, micro_steps):
    """Train w with loss = mean(w * 1): SGD moves w by exactly -lr at each applied update."""
    inputs = keras.Input((1,))
    outputs = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=optimizer, loss=lambda y_true, y_pred: keras.ops.mean(y_pred),
                  jit_compile=False)
    history = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: history.append(
            float(model.weights[0].numpy().ravel()[0])))
    x = np.ones((micro_steps, 1), "float32")
    model.fit(x, x, batch_size=1, shuffle=False, verbose=0, callbacks=[record])
    deltas = -np.diff(np.concatenate([[0.0], history]))
    return deltas, model


def test_schedule_advances_once_per_applied_update():
    schedule = CosineAnnealingWithWarmup(0.1, total_steps=6, warmup_steps=2,
                                         warmup_initial_learning_rate=0.01)
    reference = np.array([float(schedule(k)) for k in range(8)])
    deltas, model = _learning_rates_used(
        accumulating_optimizer(keras.optimizers.SGD(schedule), STEPS), STEPS * 5)
    applied = deltas[STEPS - 1::STEPS]
    # Nothing moves between updates; the k-th update (1-based) uses schedule(k - 1).
    np.testing.assert_allclose(np.delete(deltas, np.arange(STEPS - 1, STEPS * 5, STEPS)), 0.0)
    np.testing.assert_allclose(applied, reference[:5], rtol=1e-5)
    # After N applied updates the optimizer's rate is schedule(N).
    assert int(model.optimizer.iterations.numpy()) == 5
    np.testing.assert_allclose(float(model.optimizer.learning_rate.numpy()), reference[5],
                               rtol=1e-6)


def test_plain_keras_accumulation_advances_per_micro_step():
    """Documents the Keras behaviour the wrapper fixes (fails if Keras changes it)."""
    schedule = CosineAnnealingWithWarmup(0.1, total_steps=6)
    deltas, _ = _learning_rates_used(
        keras.optimizers.SGD(schedule, gradient_accumulation_steps=STEPS), STEPS * 2)
    np.testing.assert_allclose(deltas[STEPS - 1::STEPS],
                               [float(schedule(STEPS - 1)), float(schedule(2 * STEPS - 1))],
                               rtol=1e-5)


def test_keras_native_accumulation_with_accumulated_schedule_is_exact():
    """For Keras's own mechanism (used on JAX), the wrapper makes the schedule exact."""
    schedule = CosineAnnealingWithWarmup(0.1, total_steps=6)
    deltas, _ = _learning_rates_used(
        keras.optimizers.SGD(AccumulatedSchedule(schedule, STEPS),
                             gradient_accumulation_steps=STEPS), STEPS * 3)
    np.testing.assert_allclose(deltas[STEPS - 1::STEPS], [float(schedule(k)) for k in range(3)],
                               rtol=1e-5)


def test_config_round_trips(tmp_path):
    schedule = AccumulatedSchedule(CosineAnnealingWithWarmup(1e-3, 100, 10), 4)
    clone = AccumulatedSchedule.from_config(schedule.get_config())
    for step in (0, 3, 4, 41, 399, 1000):
        assert float(clone(step)) == pytest.approx(float(schedule.schedule(step // 4)))
    optimizer = accumulating_optimizer(keras.optimizers.Adam(schedule.schedule), 4)
    restored = GradientAccumulationOptimizer.from_config(optimizer.get_config())
    assert restored.accumulation_steps == 4
    assert isinstance(restored.inner_optimizer._learning_rate, CosineAnnealingWithWarmup)
    # A compiled model with the optimizer saves and loads with plain load_model.
    model = _model()
    model.compile(optimizer=accumulating_optimizer(keras.optimizers.Adam(1e-2), 2), loss="mse")
    x = np.ones((4, 4, 4, 2), "float32")
    model.fit(x, x[..., :1], batch_size=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, GradientAccumulationOptimizer)
    assert int(loaded.optimizer.iterations.numpy()) == 1
    assert int(loaded.optimizer.micro_step.numpy()) == 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="accumulating_optimizer: `accumulation_steps`.*0"):
        accumulating_optimizer(keras.optimizers.Adam(), 0)
    with pytest.raises(ValueError, match="already has gradient_accumulation_steps=2"):
        accumulating_optimizer(keras.optimizers.Adam(gradient_accumulation_steps=2), 4)
    with pytest.raises(ValueError, match="GradientAccumulationOptimizer: `accumulation_steps`"):
        GradientAccumulationOptimizer(keras.optimizers.Adam(), 1)
    with pytest.raises(ValueError, match="already accumulates"):
        accumulating_optimizer(GradientAccumulationOptimizer("adam", 2), 2)
    built = keras.optimizers.SGD()
    built.build([keras.Variable(1.0)])
    with pytest.raises(ValueError, match="must not be built"):
        accumulating_optimizer(built, 2)
    with pytest.raises(ValueError, match="AccumulatedSchedule: `schedule`"):
        AccumulatedSchedule(0.1, 2)
    with pytest.raises(ValueError, match="effective_batch_size: `replicas`"):
        effective_batch_size(4, 2, 0)


def test_effective_batch_size():
    assert effective_batch_size(4, 8) == 32
    assert effective_batch_size(2, 12, replicas=2) == 48
