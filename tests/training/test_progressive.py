"""ProgressiveTrainer: stages at growing sizes, weights and callbacks carried, exact resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.callbacks import StochasticWeightAveraging
from keras_seg_extras.training import CosineAnnealingWithWarmup, ProgressiveTrainer, Stage


def _model():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


def _train_data(image_size, batch_size):
    rng = np.random.default_rng(image_size)
    x = rng.normal(size=(8, image_size, image_size, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


class Seen(keras.callbacks.Callback):
    """A carried callback: records (global epoch, input size) of every epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, self.model.optimizer.__class__.__name__))


def _interrupt(at):
    """A callback that stops the process (an exception) when epoch ``at`` begins."""

    def check(epoch, logs=None):
        if epoch == at:
            raise RuntimeError("interrupted")

    return keras.callbacks.LambdaCallback(on_epoch_begin=check)


def _stages():
    return [
        Stage(32, epochs=1, batch_size=4, loss="binary_crossentropy", learning_rate=0.01),
        Stage(64, epochs=2, batch_size=2, accumulation_steps=2, loss="mse",
              learning_rate=lambda total: CosineAnnealingWithWarmup(0.01, total),
              callbacks=[StochasticWeightAveraging(start_epoch=1, name="last_stage")],
              scale_batchnorm_momentum=True),
    ]


def _trainer(checkpoint_dir, extra=(), validation=None):
    return ProgressiveTrainer(_model(), _stages(), _train_data,
                              validation_data=validation, callbacks=[Seen(), *extra],
                              checkpoint_dir=checkpoint_dir,
                              compile_kwargs={"jit_compile": False}, verbose=0)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    trainer = _trainer(tmp_path_factory.mktemp("straight"), validation=_train_data)
    histories = trainer.fit()
    return trainer, histories


def test_stages_carry_weights_and_callbacks(uninterrupted):
    trainer, histories = uninterrupted
    assert len(histories) == 2
    seen = trainer.callbacks[0].epochs
    assert [e for e, _ in seen] == [0, 1, 2]
    assert [name for _, name in seen] == ["Adam", "GradientAccumulationOptimizer",
                                          "GradientAccumulationOptimizer"]
    assert trainer.epoch_range(1) == (1, 3)
    # Stage 2: 4 micro-batches per epoch, 2 updates per epoch, schedule over 4 updates.
    assert int(trainer.model.optimizer.iterations.numpy()) == 4
    assert trainer.model.get_layer("bn").momentum == pytest.approx(0.99 ** 0.5)
    assert trainer.progress() == {"stage": 1, "epochs_done": 3, "complete": True,
                                  "stage_name": "stage1_64x64px"}
    assert "val_loss" in histories[1].history


@pytest.mark.parametrize("interrupt_at", [1, 2], ids=["at-stage-boundary", "mid-stage"])
def test_resumed_run_equals_uninterrupted(tmp_path, uninterrupted, interrupt_at):
    straight, _ = uninterrupted
    with pytest.raises(RuntimeError, match="interrupted"):
        _trainer(tmp_path / "b", extra=[_interrupt(interrupt_at)]).fit()
    resumed = _trainer(tmp_path / "b")
    resumed.fit()
    assert [e for e, _ in resumed.callbacks[0].epochs] == list(range(interrupt_at, 3))
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, rtol=0)
    swa = resumed.stages[1].callbacks[0]
    assert swa.count == 2  # epochs 1 and 2, across the interruption


def test_bad_stages_and_models():
    with pytest.raises(ValueError, match="Stage 0: `image_size` must be a multiple of 32; "
                                         "received 48"):
        ProgressiveTrainer(_model(), [Stage(48, 1, 2, "mse")], _train_data)
    with pytest.raises(ValueError, match="Stage 0: `loss` must be given"):
        ProgressiveTrainer(_model(), [Stage(32, 1, 2, None)], _train_data)
    with pytest.raises(ValueError, match="Stage 0: `epochs`"):
        ProgressiveTrainer(_model(), [Stage(32, 0, 2, "mse")], _train_data)
    fixed = keras.Sequential([keras.Input((32, 32, 1)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ValueError, match="undefined spatial dims"):
        ProgressiveTrainer(fixed, [Stage(64, 1, 2, "mse")], _train_data)
    with pytest.raises(ValueError, match="`train_data` must be a callable"):
        ProgressiveTrainer(_model(), [Stage(32, 1, 2, "mse")], train_data=[1, 2])
    with pytest.raises(ValueError, match="`stages` must hold at least one"):
        ProgressiveTrainer(_model(), [], _train_data)
