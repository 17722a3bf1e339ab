"""UNetPlusPlus(remat=True): the same loss and gradients as the plain model on the same weights
(in a traced TensorFlow step, where Keras' own RematScope fails on layers taking `training`),
only pure layers rematerialised, and the setting kept by .keras save and load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.models import UNetPlusPlus
from keras_seg_extras.models.unet_plus_plus import _rematerialisable

SMALL = (16, 8, 8, 4, 4)


def _pair(normalization):
    keras.utils.set_random_seed(8)
    plain = UNetPlusPlus("efficientnet_b0", (32, 32, 3), decoder_filters=SMALL,
                         normalization=normalization, dropout=0.3)
    remat = UNetPlusPlus("efficientnet_b0", (32, 32, 3), decoder_filters=SMALL,
                         normalization=normalization, dropout=0.3, remat=True)
    for source, target in zip(plain.variables, remat.variables):  # weights, stats, seeds
        target.assign(source.value)
    return plain, remat


@pytest.fixture(scope="module")
def pair():
    return _pair("group")


def _loss_and_gradients(model, images, masks, traced):
    """Loss and gradients of a training-mode step (dropout and norms as in fit), eager or
    traced (what fit runs, and where Keras' own RematScope fails)."""
    def step():
        with tf.GradientTape() as tape:
            loss = keras.losses.binary_crossentropy(masks, model(images, training=True))
            loss = tf.reduce_mean(loss)
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = tf.function(step)() if traced else step()
    return float(loss), [g.numpy() for g in gradients]


def _images_and_masks(rng):
    images = rng.uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    return images, (rng.uniform(size=(2, 32, 32, 1)) > 0.7).astype("float32")


def _rematerialised(model):
    """Layers Keras will rematerialise (its per-layer mode, set by the RematScope they were
    built in: Keras has no public accessor)."""
    return {layer.name for layer in model.layers if layer._remat_mode is not None
            and layer.name in layer._remat_mode.layer_names}


def test_remat_gives_the_same_loss_and_gradients(pair, rng):
    plain, remat = pair
    images, masks = _images_and_masks(rng)
    expected_loss, expected = _loss_and_gradients(plain, images, masks, traced=False)
    loss, got = _loss_and_gradients(remat, images, masks, traced=True)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    largest = max(np.max(np.abs(e)) for e in expected)
    assert len(got) == len(expected) and largest > 0
    for g, e in zip(got, expected):  # float rounding only: eager and traced kernels differ
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5 * largest)


def test_only_pure_layers_are_rematerialised(pair):
    _, remat = pair
    names = _rematerialised(remat)
    assert not _rematerialised(pair[0])
    # Every layer but the stateful ones and the counter-named input rescalings of the encoder.
    for layer in remat.layers:
        left_out = isinstance(layer, (keras.layers.Dropout, keras.layers.BatchNormalization,
                                      keras.layers.Normalization, keras.layers.InputLayer))
        if not left_out and layer.name.startswith("rescaling"):
            continue
        assert (layer.name in names) is not left_out, layer.name
    assert {"stem_conv", "decoder_s4_conv", "decoder_s4_res1_norm1", "center_input_pool",
            "decoder_s2_concat"} <= names


def test_remat_survives_keras_save_and_load(pair, rng, tmp_path):
    plain, remat = pair
    path = tmp_path / "remat.keras"
    remat.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(remat)
    # Loading keeps the saved names, so there the input rescaling is rematerialised too.
    kept = {name for name in _rematerialised(loaded) if not name.startswith("rescaling")}
    assert kept == _rematerialised(remat) != set()
    images = rng.uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(images)), np.asarray(plain(images)), atol=1e-6)


def test_remat_must_be_a_bool():
    with pytest.raises(ValueError, match=r"UNetPlusPlus: `remat` must be True or False; "
                                         r"received 'yes'"):
        UNetPlusPlus("efficientnet_b0", remat="yes")
