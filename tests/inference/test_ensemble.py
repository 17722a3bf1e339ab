"""WeightedEnsemble: a weighted mean of members at their own resolutions, one saveable model."""

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import WeightedEnsemble, ensemble, with_tta
from keras_seg_extras.models import small_unet


@pytest.fixture(scope="module")
def members():
    keras.utils.set_random_seed(5)
    return [small_unet((None, None, 3), filters=(4, 8, 16), name=f"member{i}") for i in range(2)]


def _predict(model, x):
    return np.asarray(model(x), dtype="float64")


def test_weighted_mean_at_the_same_resolution(members, rng):
    x = rng.uniform(size=(2, 32, 64, 3)).astype("float32")
    out = np.asarray(WeightedEnsemble(members, weights=[1.0, 3.0])(x))
    expected = 0.25 * _predict(members[0], x) + 0.75 * _predict(members[1], x)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # A zero weight drops the member.
    np.testing.assert_allclose(np.asarray(WeightedEnsemble(members, weights=[0, 2])(x)),
                               _predict(members[1], x), atol=1e-6)


def test_members_at_other_resolutions_are_resized_back(members, rng):
    import tensorflow as tf

    x = rng.uniform(size=(1, 64, 64, 3)).astype("float32")
    out = np.asarray(WeightedEnsemble(members, resolutions=[None, (96, 96)])(x))
    big = tf.image.resize(x, (96, 96)).numpy()
    back = tf.image.resize(members[1](big), (64, 64)).numpy()
    np.testing.assert_allclose(out, 0.5 * (_predict(members[0], x) + back), atol=1e-5)
    scaled = np.asarray(WeightedEnsemble(members, resolutions=[1.5, None])(x))
    up = tf.image.resize(members[0](tf.image.resize(x, (96, 96))), (64, 64)).numpy()
    np.testing.assert_allclose(scaled, 0.5 * (up + _predict(members[1], x)), atol=1e-5)


def test_ensemble_of_tta_models_round_trips_through_keras_file(members, rng, tmp_path):
    model = ensemble([with_tta(members[0], "hflip"), members[1]], weights=[2, 1],
                     resolutions=[None, (96, 96)])
    x = rng.uniform(size=(1, 64, 64, 3)).astype("float32")
    expected = np.asarray(model(x))
    path = tmp_path / "ensemble.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-6)
    layer = loaded.get_layer("weighted_ensemble")
    assert layer.weights_list == [2.0, 1.0] and layer.resolutions == [None, (96, 96)]


@pytest.mark.parametrize("kwargs, match", [
    ({"weights": [1.0]}, r"WeightedEnsemble: `weights` must have 2 entries"),
    ({"weights": [1.0, -1.0]}, r"`weights` must hold numbers >= 0"),
    ({"weights": [0.0, 0.0]}, r"`weights` must have a positive sum"),
    ({"resolutions": [None]}, r"`resolutions` must have 2 entries"),
    ({"resolutions": [None, (100, 96)]}, r"fixed sizes must be \(H, W\) with positive multiples"),
    ({"resolutions": [None, -1.0]}, r"entries must be None, a scale > 0"),
])
def test_bad_arguments(members, kwargs, match):
    with pytest.raises(ValueError, match=match):
        WeightedEnsemble(members, **kwargs)


def test_bad_members(members):
    with pytest.raises(ValueError, match=r"`models` must be a non-empty list of Keras models"):
        WeightedEnsemble([])
    three = small_unet((None, None, 3), num_classes=3, filters=(4, 8))
    with pytest.raises(ValueError, match=r"must all output the same number of channels"):
        WeightedEnsemble([members[0], three])
