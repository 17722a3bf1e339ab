"""ProgressiveTrainer interrupted in stage 2 of 3 resumes to the uninterrupted final weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.callbacks import StochasticWeightAveraging
from keras_seg_extras.training import ProgressiveTrainer, Stage


def _model():
    keras.utils.set_random_seed(11)
    inputs = keras.Input((None, None, 1), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    return keras.Model(inputs, outputs)


def _train_data(image_size, batch_size):
    x = np.random.default_rng(image_size).normal(size=(4, image_size, image_size, 1))
    x = x.astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, (x > 0.3).astype("float32"))).batch(batch_size)


def _stages():
    # Global epochs: stage 0 = [0], stage 1 = [1, 2], stage 2 = [3, 4] (SWA over 3, 4).
    return [Stage(32, epochs=1, batch_size=2, loss="binary_crossentropy", learning_rate=0.02),
            Stage(64, epochs=2, batch_size=2, accumulation_steps=2, loss="mse",
                  learning_rate=0.02),
            Stage(32, epochs=2, batch_size=4, loss="binary_crossentropy", learning_rate=0.01,
                  callbacks=[StochasticWeightAveraging(start_epoch=3, name="final")])]


class Epochs(keras.callbacks.Callback):
    def __init__(self, stop_at=None):
        super().__init__()
        self.stop_at, self.seen = stop_at, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise RuntimeError("interrupted")
        self.seen.append(epoch)


def _trainer(folder, epochs):
    return ProgressiveTrainer(_model(), _stages(), _train_data, callbacks=[epochs],
                              checkpoint_dir=folder, compile_kwargs={"jit_compile": False},
                              verbose=0)


def test_interrupted_in_stage_2_of_3_resumes_to_the_same_weights(tmp_path):
    straight = _trainer(tmp_path / "a", Epochs())
    straight.fit()
    with pytest.raises(RuntimeError, match="interrupted"):
        _trainer(tmp_path / "b", Epochs(stop_at=2)).fit()  # stage 1 has done epoch 1 of 1..2
    assert _trainer(tmp_path / "b", Epochs()).progress() == {
        "stage": 1, "epochs_done": 2, "complete": False, "stage_name": "stage1_64x64px"}
    epochs = Epochs()
    resumed = _trainer(tmp_path / "b", epochs)
    histories = resumed.fit()
    assert epochs.seen == [2, 3, 4] and len(histories) == 2
    assert resumed.stages[2].callbacks[0].count == 2
    for a, b in zip(straight.model.weights, resumed.model.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=0, atol=1e-6)
    assert resumed.progress()["complete"] and resumed.progress()["stage"] == 2
