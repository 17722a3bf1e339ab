"""SWA resumed on every documented save path ends with the uninterrupted run's weights."""

import keras
import numpy as np
import pytest

from keras_seg_extras.callbacks import StochasticWeightAveraging

EPOCHS, START, INTERRUPT = 4, 1, 2  # average epochs 1, 2, 3; stop when epoch 2 begins


def _model():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6, 6, 1), name="image")
    x = keras.layers.Conv2D(3, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="head")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy",
                  jit_compile=False)
    return model


def _data():
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 1)).astype("float32")
    return x, (x > 0.2).astype("float32")


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == INTERRUPT:
            raise RuntimeError("interrupted")


def _fit(model, callbacks, initial_epoch=0):
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=EPOCHS, initial_epoch=initial_epoch, shuffle=False,
              verbose=0, callbacks=callbacks)
    return model


@pytest.fixture(scope="module")
def uninterrupted():
    swa = StochasticWeightAveraging(START)
    model = _fit(_model(), [swa])
    assert swa.count == EPOCHS - START
    return [w.numpy() for w in model.weights]


def _assert_same(uninterrupted, model, swa):
    assert swa.count == EPOCHS - START
    for expected, weight in zip(uninterrupted, model.weights):
        np.testing.assert_allclose(weight.numpy(), expected, rtol=0, atol=1e-7)


ORDERS = ["swa-first", "checkpoints-first"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per callback order, one interrupted run writing every kind of checkpoint each epoch.

    With the checkpoints listed first, they are written before SWA adds the epoch's
    snapshot: the resumed callback must catch that epoch up.
    """
    return {order: _interrupted(order, tmp_path_factory.mktemp(order)) for order in ORDERS}


def _interrupted(order, folder):
    paths = {"keras": str(folder / "last.keras"), "weights": str(folder / "last.weights.h5"),
             "backup": str(folder / "backup")}
    checkpoints = [keras.callbacks.ModelCheckpoint(paths["keras"]),
                   keras.callbacks.ModelCheckpoint(paths["weights"], save_weights_only=True),
                   keras.callbacks.BackupAndRestore(paths["backup"])]
    swa = [StochasticWeightAveraging(START)]
    callbacks = swa + checkpoints if order == "swa-first" else checkpoints + swa
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(_model(), callbacks + [Interrupt()])
    return paths


@pytest.mark.parametrize("order", ORDERS)
def test_dot_keras_checkpoint_with_resume_from(runs, uninterrupted, order):
    paths = runs[order]
    model = keras.saving.load_model(paths["keras"])  # a fresh model with the optimizer state
    swa = StochasticWeightAveraging(START, resume_from=paths["keras"])
    _assert_same(uninterrupted, _fit(model, [swa], initial_epoch=INTERRUPT), swa)


@pytest.mark.parametrize("how, order", [("resume_from", "swa-first"),
                                        ("resume_from", "checkpoints-first"),
                                        ("set_model-then-load_weights", "checkpoints-first")])
def test_weights_only_checkpoint_into_a_fresh_model(runs, uninterrupted, how, order):
    paths = runs[order]
    model = _model()
    model.optimizer.build(model.trainable_variables)  # else Keras skips the optimizer state
    if how == "resume_from":
        swa = StochasticWeightAveraging(START, resume_from=paths["weights"])
    else:
        swa = StochasticWeightAveraging(START)
        swa.set_model(model)  # the state exists, so load_weights fills it
    model.load_weights(paths["weights"])
    _assert_same(uninterrupted, _fit(model, [swa], initial_epoch=INTERRUPT), swa)


@pytest.mark.parametrize("order", ORDERS)
def test_backup_and_restore(runs, uninterrupted, order):
    paths = runs[order]
    swa, backup = StochasticWeightAveraging(START), keras.callbacks.BackupAndRestore(
        paths["backup"])
    model = _fit(_model(), [swa, backup] if order == "swa-first" else [backup, swa])
    _assert_same(uninterrupted, model, swa)


def test_a_state_lost_by_load_weights_is_caught_up_or_reported(runs, uninterrupted):
    paths = runs["swa-first"]
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.load_weights(paths["weights"])  # no SWA state yet: Keras cannot restore it
    # Only the epoch just before the resumed one was due: its weights are the loaded ones.
    swa = StochasticWeightAveraging(START)
    _assert_same(uninterrupted, _fit(model, [swa], initial_epoch=INTERRUPT), swa)
    # Further back, the snapshots are gone: never a silent restart.
    with pytest.warns(UserWarning, match=r"training starts at epoch 3, after start_epoch=1, "
                                         r"with an average that lacks epochs 1\.\.2 \(it holds "
                                         r"0 snapshot"):
        _fit(_model(), [StochasticWeightAveraging(START)], initial_epoch=3)


def test_resume_from_a_file_without_the_state_fails(tmp_path):
    plain = str(tmp_path / "plain.weights.h5")
    _model().save_weights(plain)
    swa = StochasticWeightAveraging(START, resume_from=plain)
    with pytest.raises(ValueError, match=r"StochasticWeightAveraging: `resume_from` holds no "
                                         r"SWA state named 'swa'"):
        swa.set_model(_model())
    with pytest.raises(ValueError, match="`resume_from` must be an existing"):
        StochasticWeightAveraging(START, resume_from=tmp_path / "nowhere.keras").set_model(
            _model())
    text = tmp_path / "notes.weights.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="`resume_from` must be a .keras or .weights.h5"):
        StochasticWeightAveraging(START, resume_from=text).set_model(_model())
