"""ProgressiveTrainer: stages at growing sizes, weights and callbacks carried, exact resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.callbacks import StochasticWeightAveraging
from keras_seg_extras.training import (
    CosineAnnealingWithWarmup,
    GradientAccumulationOptimizer,
    ProgressiveTrainer,
    Stage,
)


def _model():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


REQUESTS = []  # (image_size, batch_size) of every dataset the trainer asked for


def _train_data(image_size, batch_size):
    REQUESTS.append((image_size, batch_size))
    rng = np.random.default_rng(image_size)
    x = rng.normal(size=(8, image_size, image_size, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


class InputShape(keras.metrics.Metric):
    """The size of one axis of the last batch of predictions the model produced (in the graph)."""

    def __init__(self, axis, name):
        super().__init__(name=name)
        self.axis = axis
        self.size = self.add_variable((), initializer="zeros", name="size")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.size.assign(keras.ops.cast(keras.ops.shape(y_pred)[self.axis], "float32"))

    def result(self):
        return self.size


def _probes():
    return [InputShape(0, "seen_batch"), InputShape(1, "seen_height"),
            InputShape(2, "seen_width")]


class Seen(keras.callbacks.Callback):
    """A carried callback: per epoch (global epoch, input height the model saw); per stage the
    loss the model was compiled with; per micro-batch (applied updates, learning rate)."""

    def __init__(self):
        super().__init__()
        self.epochs, self.losses, self.steps = [], [], []

    def on_train_begin(self, logs=None):
        self.losses.append(self.model.loss)

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        self.steps.append((int(optimizer.iterations.numpy()),
                           float(keras.ops.convert_to_numpy(optimizer.learning_rate))))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, int(logs["seen_height"])))


def _interrupt(at):
    """A callback that stops the process (an exception) when epoch ``at`` begins."""

    def check(epoch, logs=None):
        if epoch == at:
            raise RuntimeError("interrupted")

    return keras.callbacks.LambdaCallback(on_epoch_begin=check)


SCHEDULE_TOTALS = []  # the update counts the trainer passed to the stage's schedule factory


def _schedule(total):
    SCHEDULE_TOTALS.append(total)
    return CosineAnnealingWithWarmup(0.01, total)


def _stages():
    return [
        Stage(32, epochs=1, batch_size=4, loss="binary_crossentropy", learning_rate=0.01),
        Stage(64, epochs=2, batch_size=2, accumulation_steps=2, loss="mse",
              learning_rate=_schedule,
              callbacks=[StochasticWeightAveraging(start_epoch=1, name="last_stage")],
              scale_batchnorm_momentum=True),
    ]


def _trainer(checkpoint_dir, extra=(), validation=None):
    return ProgressiveTrainer(_model(), _stages(), _train_data,
                              validation_data=validation, callbacks=[Seen(), *extra],
                              metrics=_probes(), checkpoint_dir=checkpoint_dir,
                              compile_kwargs={"jit_compile": False}, verbose=0)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    REQUESTS.clear()
    SCHEDULE_TOTALS.clear()
    trainer = _trainer(tmp_path_factory.mktemp("straight"), validation=_train_data)
    histories = trainer.fit()
    return trainer, histories, list(REQUESTS), list(SCHEDULE_TOTALS)


def test_stages_carry_weights_and_callbacks(uninterrupted):
    trainer, histories, _, _ = uninterrupted
    assert len(histories) == 2
    seen = trainer.callbacks[0].epochs
    assert seen == [(0, 32), (1, 64), (2, 64)]  # (global epoch, input height the model saw)
    assert trainer.epoch_range(1) == (1, 3)
    # Stage 2: 4 micro-batches per epoch, 2 updates per epoch, schedule over 4 updates.
    assert int(trainer.model.optimizer.iterations.numpy()) == 4
    assert trainer.model.get_layer("bn").momentum == pytest.approx(0.99 ** 0.5)
    assert trainer.progress() == {"stage": 1, "epochs_done": 3, "complete": True,
                                  "stage_name": "stage1_64x64px"}
    assert "val_loss" in histories[1].history


@pytest.mark.parametrize("interrupt_at", [1, 2], ids=["at-stage-boundary", "mid-stage"])
def test_resumed_run_equals_uninterrupted(tmp_path, uninterrupted, interrupt_at):
    straight = uninterrupted[0]
    with pytest.raises(RuntimeError, match="interrupted"):
        _trainer(tmp_path / "b", extra=[_interrupt(interrupt_at)]).fit()
    resumed = _trainer(tmp_path / "b")
    resumed.fit()
    assert [e for e, _ in resumed.callbacks[0].epochs] == list(range(interrupt_at, 3))
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, rtol=0)
    swa = resumed.stages[1].callbacks[0]
    assert swa.count == 2  # epochs 1 and 2, across the interruption


def test_each_stage_reaches_the_data_and_the_model(uninterrupted):
    trainer, histories, requests, totals = uninterrupted
    # The data factories were asked for each stage's size and batch (train, then validation).
    assert requests == [(32, 4), (32, 4), (64, 2), (64, 2)]
    # The model saw those sizes in training and in validation, every epoch of each stage.
    for history, (size, batch) in zip(histories, [(32, 4), (64, 2)]):
        for key, expected in (("seen_height", size), ("seen_width", size), ("seen_batch", batch)):
            assert history.history[key] == [expected] * len(history.epoch), key
            assert history.history["val_" + key] == [expected] * len(history.epoch), key
    # Each stage compiled its own loss.
    assert trainer.callbacks[0].losses == ["binary_crossentropy", "mse"]


def test_each_stage_gets_its_accumulation_and_learning_rate_schedule(uninterrupted):
    trainer, _, _, totals = uninterrupted
    steps = trainer.callbacks[0].steps
    # Stage 0: plain Adam at 0.01, one update per micro-batch (8 images / batch 4 = 2 batches).
    assert steps[:2] == [(0, pytest.approx(0.01)), (1, pytest.approx(0.01))]
    # Stage 1: 4 micro-batches per epoch, 2 per update, over 2 epochs: the schedule factory
    # got 2 x ceil(4 / 2) = 4 updates, and the k-th update uses schedule(k).
    assert totals == [4]
    schedule = CosineAnnealingWithWarmup(0.01, 4)
    updates = [k // 2 for k in range(8)]
    assert [update for update, _ in steps[2:]] == updates
    np.testing.assert_allclose([rate for _, rate in steps[2:]],
                               [float(schedule(k)) for k in updates], rtol=1e-6)
    assert isinstance(trainer.model.optimizer, GradientAccumulationOptimizer)
    assert trainer.model.optimizer.accumulation_steps == 2


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
