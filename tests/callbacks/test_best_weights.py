"""WeightsCheckpoint: the model's own weights at the best epoch or at the end, nothing else."""

import warnings

import keras
import numpy as np
import pytest

from keras_seg_extras.callbacks import WeightsCheckpoint, load_weights_npz, save_weights_npz


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])


def _saved(path):
    with np.load(path) as saved:
        return [saved[k] for k in sorted(saved.files)]


@pytest.mark.parametrize("mode, values, best_epoch", [("min", [0.5, 0.3, 0.4, 0.3], 1),
                                                      ("max", [0.1, 0.7, 0.7, 0.2], 1)])
def test_saves_at_the_best_epoch_only(tmp_path, mode, values, best_epoch):
    model, path = _model(), tmp_path / "best.npz"
    checkpoint = WeightsCheckpoint(path, monitor="val_dice", mode=mode)
    checkpoint.set_model(model)
    snapshots = []
    for epoch, value in enumerate(values):
        model.layers[0].kernel.assign(np.full((3, 4), float(epoch), "float32"))
        snapshots.append(model.get_weights())
        checkpoint.on_epoch_end(epoch, {"val_dice": value})
    assert checkpoint.best == values[best_epoch]
    for saved, expected in zip(_saved(path), snapshots[best_epoch]):  # ties keep the first
        np.testing.assert_array_equal(saved, expected)


def test_fit_writes_only_the_models_weights_not_the_optimizer(tmp_path):
    model = _model()
    model.compile(optimizer="adam", loss="mse")
    best, final = tmp_path / "best.npz", tmp_path / "final.npz"
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, epochs=2, verbose=0, validation_data=(x, y),
              callbacks=[WeightsCheckpoint(best, "val_loss"), WeightsCheckpoint(final, None)])
    assert [a.shape for a in _saved(best)] == [w.shape for w in model.get_weights()]
    for saved, expected in zip(_saved(final), model.get_weights()):
        np.testing.assert_array_equal(saved, expected)
    twin = load_weights_npz(_model(seed=5), final)
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_monitor_never_logged_warns_once_and_saves_nothing(tmp_path):
    checkpoint = WeightsCheckpoint(tmp_path / "w.npz", monitor="val_iou")
    checkpoint.set_model(_model())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(3):
            checkpoint.on_epoch_end(epoch, {"val_loss": 1.0})
    assert len(caught) == 1 and "`val_iou` is not in the logs" in str(caught[0].message)
    assert not (tmp_path / "w.npz").exists()


def test_loading_into_another_architecture_is_refused(tmp_path):
    path = save_weights_npz(_model(), tmp_path / "w.npz")
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"load_weights_npz: `path` must hold 2 arrays of the "
                                         r"shapes of .*'s weights; it holds 4"):
        load_weights_npz(other, path)


@pytest.mark.parametrize("kwargs, match", [
    ({"path": "w.npz", "mode": "best"}, r"WeightsCheckpoint: `mode` must be one of 'min', 'max'"),
    ({"path": 3}, r"WeightsCheckpoint: `path` must be a file path"),
    ({"path": "w.npz", "monitor": 1}, r"`monitor` must be a log name or None"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightsCheckpoint(**kwargs)
