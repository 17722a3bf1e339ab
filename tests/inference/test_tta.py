"""TestTimeAugmentation: the output equals the mean of the model's predictions on transformed
inputs, transformed back, computed here in NumPy from the plain model's outputs."""

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import TestTimeAugmentation, with_tta
from keras_seg_extras.models import small_unet


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return small_unet((None, None, 3), num_classes=2, filters=(4, 8, 16))


def _predict(model, x):
    return np.asarray(model(np.ascontiguousarray(x)), dtype="float64")


def _bilinear(image, height, width):
    """Half-pixel-centre bilinear resize of (B, H, W, C), written from the formula."""
    in_h, in_w = image.shape[1:3]

    def axis(out_size, in_size):
        source = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
        source = np.clip(source, 0, in_size - 1)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, source - low

    y0, y1, wy = axis(height, in_h)
    x0, x1, wx = axis(width, in_w)
    top = image[:, y0][:, :, x0] * (1 - wx)[None, None, :, None] + \
        image[:, y0][:, :, x1] * wx[None, None, :, None]
    bottom = image[:, y1][:, :, x0] * (1 - wx)[None, None, :, None] + \
        image[:, y1][:, :, x1] * wx[None, None, :, None]
    return top * (1 - wy)[None, :, None, None] + bottom * wy[None, :, None, None]


# forward and inverse in NumPy, written independently of the layer's table.
D4 = {
    "identity": (lambda x: x, lambda y: y),
    "hflip": (lambda x: x[:, :, ::-1], lambda y: y[:, :, ::-1]),
    "vflip": (lambda x: x[:, ::-1], lambda y: y[:, ::-1]),
    "rot180": (lambda x: x[:, ::-1, ::-1], lambda y: y[:, ::-1, ::-1]),
    "rot90": (lambda x: np.rot90(x, 1, axes=(1, 2)), lambda y: np.rot90(y, -1, axes=(1, 2))),
    "rot270": (lambda x: np.rot90(x, -1, axes=(1, 2)), lambda y: np.rot90(y, 1, axes=(1, 2))),
    "transpose": (lambda x: x.transpose(0, 2, 1, 3), lambda y: y.transpose(0, 2, 1, 3)),
    "antitranspose": (lambda x: np.rot90(x, 2, axes=(1, 2)).transpose(0, 2, 1, 3),
                      lambda y: np.rot90(y.transpose(0, 2, 1, 3), 2, axes=(1, 2))),
}


def test_hflip_tta_is_the_mean_of_the_flipped_predictions(model, rng):
    x = rng.uniform(size=(2, 32, 64, 3)).astype("float32")
    expected = 0.5 * (_predict(model, x) + _predict(model, x[:, :, ::-1])[:, :, ::-1])
    out = np.asarray(TestTimeAugmentation(model, "hflip")(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Not a no-op: the flipped prediction differs from the plain one.
    assert np.abs(expected - _predict(model, x)).max() > 1e-4


def test_d4_tta_on_a_non_square_image(model, rng):
    x = rng.uniform(size=(1, 32, 64, 3)).astype("float32")
    predictions = [inverse(_predict(model, forward(x))) for forward, inverse in D4.values()]
    expected = np.mean(predictions, axis=0)
    out = np.asarray(TestTimeAugmentation(model, "d4")(x))
    np.testing.assert_allclose(out, expected, atol=1e-5)
    flips = np.mean([D4[n][1](_predict(model, D4[n][0](x)))
                     for n in ("identity", "hflip", "vflip", "rot180")], axis=0)
    np.testing.assert_allclose(np.asarray(TestTimeAugmentation(model, "flips")(x)), flips,
                               atol=1e-5)


def test_multi_scale_resizes_to_multiples_of_32_and_back(model, rng):
    x = rng.uniform(size=(1, 64, 96, 3)).astype("float32")
    # scale 0.5 -> 32 x 64 (rounded to multiples of 32: 48 -> 64), scale 1.5 -> 96 x 160.
    small = _bilinear(x.astype("float64"), 32, 64).astype("float32")
    large = _bilinear(x.astype("float64"), 96, 160).astype("float32")
    terms = []
    for image in (x, small, large):
        for forward, inverse in (D4["identity"], D4["hflip"]):
            terms.append(_bilinear(inverse(_predict(model, forward(image))), 64, 96))
    out = np.asarray(TestTimeAugmentation(model, "hflip", scales=(1.0, 0.5, 1.5))(x))
    np.testing.assert_allclose(out, np.mean(terms, axis=0), atol=1e-4)


def test_edge_cases_extreme_inputs_and_float16(model, rng):
    tta = TestTimeAugmentation(model, ("identity", "vflip"))
    for x in (np.zeros((1, 32, 32, 3), "float32"), np.full((1, 32, 32, 3), 1e3, "float32")):
        expected = 0.5 * (_predict(model, x) + _predict(model, x[:, ::-1])[:, ::-1])
        np.testing.assert_allclose(np.asarray(tta(x)), expected, atol=1e-5)
    out = tta(rng.uniform(size=(1, 32, 32, 3)).astype("float16"))
    assert out.dtype == "float32" and np.all(np.isfinite(np.asarray(out)))


def test_gradients_flow_through_the_wrapper(model, rng):
    import tensorflow as tf

    x = tf.constant(rng.uniform(size=(1, 32, 32, 3)).astype("float32"))
    tta = TestTimeAugmentation(model, "hflip")
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tta(x))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


def test_with_tta_keras_round_trip_and_config(model, rng, tmp_path):
    wrapped = with_tta(model, "d4", scales=(1.0, 0.5))
    x = rng.uniform(size=(1, 64, 64, 3)).astype("float32")
    expected = np.asarray(wrapped(x))
    path = tmp_path / "tta.keras"
    wrapped.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)), expected, atol=1e-6)
    layer = loaded.get_layer("tta")
    assert layer.transforms == TestTimeAugmentation(model, "d4").transforms
    assert layer.scales == (1.0, 0.5)
    config = TestTimeAugmentation(model, ("identity", "rot90")).get_config()
    assert config["transforms"] == ["identity", "rot90"] and config["scales"] == [1.0]


@pytest.mark.parametrize("kwargs, match", [
    ({"transforms": "rotate"}, r"TestTimeAugmentation: `transforms` must be a preset"),
    ({"transforms": ("hflip", "shear")}, r"`transforms` must be a non-empty tuple of names"),
    ({"transforms": ()}, r"`transforms` must be a non-empty tuple"),
    ({"transforms": ("hflip", "hflip")}, r"`transforms` must not repeat"),
    ({"scales": (1.0, 0.0)}, r"`scales` must hold numbers > 0"),
    ({"scales": ()}, r"`scales` must hold at least one scale"),
])
def test_bad_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TestTimeAugmentation(model, **kwargs)


def test_multi_output_model_is_rejected():
    inputs = keras.Input((None, None, 3))
    two = keras.Model(inputs, [keras.layers.Conv2D(1, 1)(inputs), keras.layers.Conv2D(1, 1)(inputs)])
    with pytest.raises(ValueError, match=r"`model` must have a single output; it has 2"):
        TestTimeAugmentation(two)
    with pytest.raises(ValueError, match=r"with_tta: `model` must be a keras.Model"):
        with_tta("model")
