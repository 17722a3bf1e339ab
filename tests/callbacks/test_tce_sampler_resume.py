"""StochasticTCESampler resumed into a fresh model from .keras and weights-only checkpoints."""

import keras
import numpy as np
import pytest

import keras_seg_extras as kse
from keras_seg_extras.callbacks import StochasticTCESampler
from tests.callbacks.test_tce_sampler import _StateAtBegin

K, T, GAMMA = 3, 2.0, 0.3


def _data():
    labels = np.repeat(np.arange(K), 2)[:, None, None] * np.ones((1, 6, 6), int)
    return (labels[..., None] * 60).astype(np.uint8), labels


def _model():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 6, 1), name="image")
    model = keras.Model(inputs, keras.layers.Conv2D(K, 1)(inputs))
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _dataset(seed):
    images, labels = _data()
    return kse.data.class_sampled_dataset(images, labels, K, batch_size=2, seed=seed)


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """Two epochs with .keras and weights-only checkpoints; the sampler's state at the end."""
    folder = tmp_path_factory.mktemp("tce")
    paths = {"keras": str(folder / "last.keras"), "weights": str(folder / "last.weights.h5")}
    ds = _dataset(1)
    sampler = StochasticTCESampler(T, GAMMA, ds)
    _model().fit(ds, steps_per_epoch=3, epochs=2, verbose=0, callbacks=[
        sampler, keras.callbacks.ModelCheckpoint(paths["keras"]),
        keras.callbacks.ModelCheckpoint(paths["weights"], save_weights_only=True)])
    return paths, sampler.get_state()


@pytest.mark.parametrize("kind", ["keras", "weights"])
def test_fresh_model_resumes_the_sampler_state(checkpointed, kind):
    paths, state = checkpointed
    if kind == "keras":
        model = keras.saving.load_model(paths["keras"])
    else:
        model = _model()
        model.load_weights(paths["weights"])
    ds = _dataset(2)
    sampler = StochasticTCESampler(T, GAMMA, ds, resume_from=paths[kind])
    probe = _StateAtBegin(sampler, ds.sampling_weights)
    model.fit(ds, steps_per_epoch=3, epochs=3, initial_epoch=2, verbose=0,
              callbacks=[sampler, probe])
    assert probe.state["updates"] == state["updates"] == 6
    np.testing.assert_array_equal(probe.state["log_tilted_losses"], state["log_tilted_losses"])
    shifted = np.exp(state["log_tilted_losses"] - state["log_tilted_losses"].max())
    np.testing.assert_allclose(probe.variable, shifted / shifted.sum(), rtol=1e-6)
    assert sampler.get_state()["updates"] == 9


def test_a_sampler_that_lost_its_state_warns(checkpointed, tmp_path):
    paths, _ = checkpointed
    model = _model()
    model.load_weights(paths["weights"])  # no sampler attached yet: its entry is not read
    ds = _dataset(2)
    with pytest.warns(UserWarning, match="StochasticTCESampler: training starts at epoch 2 "
                                         "with a sampler that has never updated"):
        model.fit(ds, steps_per_epoch=1, epochs=3, initial_epoch=2, verbose=0,
                  callbacks=[StochasticTCESampler(T, GAMMA, ds)])
    plain = str(tmp_path / "plain.weights.h5")
    _model().save_weights(plain)
    with pytest.raises(ValueError, match=r"StochasticTCESampler: `resume_from` holds no "
                                         r"sampler state"):
        StochasticTCESampler(T, GAMMA, ds, resume_from=plain).set_model(_model())
