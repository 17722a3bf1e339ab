"""UNetPlusPlus: shapes, decoder wiring, the multiple-of-32 rule, a training step, saving.

Most tests use EfficientNet-B0 at 64 px with tiny decoder filters (built once per module); the
one slow test builds EfficientNet-B4 at 256 and 512 px."""

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import with_tta
from keras_seg_extras.models import InputSizeCheck, UNetPlusPlus

FILTERS = (16, 8, 8, 4, 4)
B4_SKIPS = ("block2a_expand_activation", "block3a_expand_activation",
            "block4a_expand_activation", "block6a_expand_activation", "top_activation")


@pytest.fixture(scope="module")
def simplified():
    keras.utils.set_random_seed(1)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder_filters=FILTERS)


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(2)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder="nested",
                        decoder_filters=FILTERS)


def _images(rng, batch=2, height=64, width=64):
    return rng.uniform(0, 255, size=(batch, height, width, 3)).astype("float32")


def test_simplified_output_shape_and_range(simplified, rng):
    assert simplified.output_shape == (None, None, None, 1)
    for height, width in ((64, 64), (64, 96)):
        out = np.asarray(simplified(_images(rng, 2, height, width)))
        assert out.shape == (2, height, width, 1)
        assert out.dtype == np.float32
        assert np.all((out > 0) & (out < 1))
    for size in (256, 512):
        assert simplified.compute_output_shape((1, size, size, 3)) == (1, size, size, 1)


def test_simplified_decoder_wiring(simplified):
    # Fig. 5: a level's node concatenates the up-convolved previous node, the up-convolution
    # outputs of every deeper level carried up ("hyper" paths) and the encoder skip.
    expected_inputs = {"decoder_s16_concat": 2, "decoder_s8_concat": 3, "decoder_s4_concat": 4,
                       "decoder_s2_concat": 5}
    for name, count in expected_inputs.items():
        layer = simplified.get_layer(name)
        assert len(layer.input) == count, name
    sources = simplified.get_layer("decoder_s2_concat").input
    for producer in ("decoder_s2_up", "decoder_s2_hyper_from_s4", "decoder_s2_hyper_from_s8",
                     "decoder_s2_hyper_from_s16", "block2a_expand_activation"):
        assert any(t is simplified.get_layer(producer).output for t in sources), producer
    # Hyper paths apply the up-convolution to the deeper level's up-convolution output only.
    hyper = simplified.get_layer("decoder_s8_hyper_from_s16")
    assert hyper.input is simplified.get_layer("decoder_s16_up").output
    # LeakyReLU(0.1) and residual additions in the decoder.
    leaky = [l for l in simplified.layers if isinstance(l, keras.layers.LeakyReLU)]
    assert leaky and all(abs(l.negative_slope - 0.1) < 1e-12 for l in leaky)
    assert simplified.get_layer("decoder_s4_res1_add")


def test_nested_output_shape_and_dense_skips(nested, rng):
    out = np.asarray(nested(_images(rng, 1, 64, 96)))
    assert out.shape == (1, 64, 96, 1)
    assert np.all(np.isfinite(out))
    # Zhou et al.: X^{0,4} sees X^{0,0..3} and Up(X^{1,3}).
    assert len(nested.get_layer("decoder_x04_concat").input) == 5
    assert len(nested.get_layer("decoder_x13_concat").input) == 4
    assert len(nested.get_layer("decoder_x31_concat").input) == 2


def test_resnet50_nested_deep_supervision_group_norm(rng):
    model = UNetPlusPlus("resnet50", (64, 64, 3), classes=3, activation="softmax",
                         decoder="nested", decoder_filters=FILTERS, normalization="group",
                         deep_supervision=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 64, 64, 3)] * 4
    groups = [l for l in model.layers if isinstance(l, keras.layers.GroupNormalization)]
    assert groups and not any(isinstance(l, keras.layers.BatchNormalization)
                              and l.name.startswith("decoder") for l in model.layers)
    outputs = model(_images(rng, 1))
    for out in outputs:
        np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, atol=1e-5)


def test_training_step_changes_weights_and_gives_finite_loss(simplified, rng):
    model = keras.models.clone_model(simplified)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
                  run_eagerly=True)
    images = _images(rng)
    masks = (rng.uniform(size=(2, 64, 64, 1)) > 0.7).astype("float32")
    before = model.get_layer("decoder_s2_conv").get_weights()[0].copy()
    loss = model.train_on_batch(images, masks)
    assert np.isfinite(loss)
    assert not np.allclose(model.get_layer("decoder_s2_conv").get_weights()[0], before)


def test_float16_input_gives_finite_float32(simplified, rng):
    out = simplified(_images(rng, 1).astype("float16"))
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))


def test_size_not_multiple_of_32_fails_clearly(simplified):
    with pytest.raises(ValueError, match=r"UNetPlusPlus.*input_shape.*multiples of 32.*65x64"):
        UNetPlusPlus("efficientnet_b0", (65, 64, 3), decoder_filters=FILTERS)
    with pytest.raises(ValueError, match=r"UNetPlusPlus.*multiples of 32.*size 64x80"):
        simplified(np.zeros((1, 64, 80, 3), "float32"))
    with pytest.raises(ValueError, match=r"multiples of 32.*size 48x64"):
        simplified.predict(np.zeros((1, 48, 64, 3), "float32"), verbose=0)


def test_input_size_check_config_round_trip():
    layer = InputSizeCheck(16, owner="Mine")
    clone = InputSizeCheck.from_config(layer.get_config())
    assert (clone.multiple, clone.owner) == (16, "Mine")
    x = np.zeros((1, 32, 48, 1), "float32")
    np.testing.assert_array_equal(np.asarray(clone(x)), x)
    with pytest.raises(ValueError, match=r"Mine.*multiples of 16.*33x48"):
        clone(np.zeros((1, 33, 48, 1), "float32"))


@pytest.mark.parametrize("kwargs, match", [
    ({"encoder": "efficientnet_b9"}, r"`encoder` must be one of.*efficientnet_b9"),
    ({"decoder": "dense"}, r"`decoder` must be one of.*'dense'"),
    ({"activation": "relu"}, r"`activation` must be one of.*'relu'"),
    ({"normalization": "layer"}, r"`normalization` must be one of.*'layer'"),
    ({"classes": 0}, r"`classes` must be >= 1; received 0"),
    ({"dropout": 1.0}, r"`dropout` must be < 1.0; received 1.0"),
    ({"decoder_filters": (8, 8)}, r"`decoder_filters` must be five positive integers"),
    ({"deep_supervision": True}, r"`deep_supervision` is only available with decoder='nested'"),
    ({"input_shape": (64, 64)}, r"`input_shape` must be a tuple \(H, W, channels\)"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetPlusPlus(**{"encoder": "efficientnet_b0", **kwargs})


def test_keras_round_trip_with_tta_wrapper(simplified, rng, tmp_path):
    model = with_tta(simplified, "hflip")
    images = _images(rng, 1)
    expected = np.asarray(model(images))
    path = tmp_path / "unetpp_tta.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(images)), expected, atol=1e-5)
    assert loaded.get_layer("tta").model.get_layer("decoder_s2_hyper_from_s16")


@pytest.mark.slow
def test_efficientnet_b4_builds_at_256_and_512_and_trains(rng):
    keras.utils.set_random_seed(4)
    model = UNetPlusPlus("efficientnet_b4", (None, None, 3))
    # Skips of the paper's encoder: strides 2, 4, 8, 16, 32 on the built model.
    skips = keras.Model(model.input, [model.get_layer(n).output for n in B4_SKIPS])
    shapes = [tuple(s.shape) for s in skips.compute_output_spec(keras.KerasTensor((1, 256, 256, 3)))]
    assert shapes == [(1, 128, 128, 144), (1, 64, 64, 192), (1, 32, 32, 336),
                      (1, 16, 16, 960), (1, 8, 8, 1792)]
    assert model.compute_output_shape((2, 512, 512, 3)) == (2, 512, 512, 1)
    out = np.asarray(model(_images(rng, 1, 256, 256)))
    assert out.shape == (1, 256, 256, 1) and np.all(np.isfinite(out))
    fixed = UNetPlusPlus("efficientnet_b4", (512, 512, 3), decoder="nested")
    assert fixed.output_shape == (None, 512, 512, 1)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy",
                  run_eagerly=True)
    masks = (rng.uniform(size=(2, 64, 64, 1)) > 0.7).astype("float32")
    loss = model.train_on_batch(_images(rng, 2, 64, 64), masks)
    assert np.isfinite(loss)
