"""UNetPlusPlus: the Fig. 5 graph of paper 003 (widths, centre source, dropout placement, the
residual block with a norm on its shortcut), the nested decoder, sizes, training, saving.

Most tests use the default model on EfficientNet-B0 at 64 px (built once per module); the one
slow test builds EfficientNet-B4, where Fig. 5's measured size (11.47 M) is the target."""

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import with_tta
from keras_seg_extras.models import DROPOUT_PLACES, InputSizeCheck, UNetPlusPlus, fig5_dropout_rates

SMALL = (16, 8, 8, 4, 4)
LEVELS = ("s16", "s8", "s4", "s2", "s1")
# EfficientNet expand activations at strides 2, 4, 8, 16 (6x the stage's input width).
B0_SKIP_CHANNELS = (96, 144, 240, 672)
B4_SKIP_CHANNELS = (144, 192, 336, 960)


@pytest.fixture(scope="module")
def fig5():
    keras.utils.set_random_seed(1)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3))


@pytest.fixture(scope="module")
def nested():
    keras.utils.set_random_seed(2)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder="nested",
                        decoder_filters=SMALL)


def _images(rng, batch=2, height=64, width=64):
    return rng.uniform(0, 255, size=(batch, height, width, 3)).astype("float32")


def _input_of(model, name):
    inputs = model.get_layer(name).input
    return inputs if isinstance(inputs, list) else [inputs]


def _fed_by(model, consumer, producer):
    return any(t is model.get_layer(producer).output for t in _input_of(model, consumer))


# ----------------------------------------------------------------------------- Fig. 5 graph


def test_fig5_widths_start_at_8(fig5):
    # Level widths 16s, 8s, 4s, 2s, s with s = 8; centre 32s; hyper paths keep their level's width.
    assert fig5.get_layer("center_conv").filters == 256
    for level, width in zip(LEVELS, (128, 64, 32, 16, 8)):
        assert fig5.get_layer(f"decoder_{level}_conv").filters == width, level
        assert fig5.get_layer(f"decoder_{level}_up").filters == width, level
    assert fig5.get_layer("decoder_s2_hyper_from_s16").filters == 128
    assert fig5.get_layer("decoder_s2_hyper_from_s8").filters == 64
    assert fig5.get_layer("decoder_s2_hyper_from_s4").filters == 32
    assert fig5.get_layer("center_res2_conv2").filters == 256
    assert fig5.get_layer("probabilities_conv").kernel_size == (1, 1)


def test_fig5_centre_pools_the_stride16_features(fig5):
    # LeakyReLU(0.1) -> MaxPool 2 -> Dropout(r) -> conv -> two residual blocks -> LeakyReLU.
    assert fig5.get_layer("center_input_act").input is \
        fig5.get_layer("block6a_expand_activation").output
    assert fig5.get_layer("center_input_act").negative_slope == pytest.approx(0.1)
    pool = fig5.get_layer("center_input_pool")
    assert pool.pool_size == (2, 2) and pool.input is fig5.get_layer("center_input_act").output
    assert fig5.get_layer("center_dropout").input is pool.output
    assert fig5.get_layer("center_conv").input is fig5.get_layer("center_dropout").output
    assert fig5.get_layer("center_res2_conv1")
    assert fig5.get_layer("center_act").input is fig5.get_layer("center_res2_add").output
    # The stride-16 skip of level 4 is that LeakyReLU output; the stride-32 encoder is unused.
    assert _fed_by(fig5, "decoder_s16_concat", "center_input_act")
    assert not _fed_by(fig5, "decoder_s16_concat", "block6a_expand_activation")
    names = {layer.name for layer in fig5.layers}
    assert "top_activation" not in names and "block7a_expand_conv" not in names
    spec = keras.Model(fig5.input, fig5.get_layer("center_act").output).compute_output_spec(
        keras.KerasTensor((1, 64, 64, 3)))
    assert tuple(spec.shape) == (1, 2, 2, 256)  # stride 32


def test_fig5_levels_concatenate_hyper_paths_and_skips(fig5):
    # A level concatenates the up-convolved level below, the deeper levels' up-convolutions
    # carried up (only those outputs travel), and the encoder skip; channel sums as in Fig. 5.
    sources = {"decoder_s16_concat": ["decoder_s16_up", "center_input_act"],
               "decoder_s8_concat": ["decoder_s8_up", "decoder_s8_hyper_from_s16",
                                     "block4a_expand_activation"],
               "decoder_s4_concat": ["decoder_s4_up", "decoder_s4_hyper_from_s8",
                                     "decoder_s4_hyper_from_s16", "block3a_expand_activation"],
               "decoder_s2_concat": ["decoder_s2_up", "decoder_s2_hyper_from_s4",
                                     "decoder_s2_hyper_from_s8", "decoder_s2_hyper_from_s16",
                                     "block2a_expand_activation"]}
    for concat, producers in sources.items():
        assert len(_input_of(fig5, concat)) == len(producers), concat
        for producer in producers:
            assert _fed_by(fig5, concat, producer), (concat, producer)
    widths = {name: fig5.get_layer(name).output.shape[-1] for name in sources}
    assert widths == {"decoder_s16_concat": 128 + B0_SKIP_CHANNELS[3],
                      "decoder_s8_concat": 64 + 128 + B0_SKIP_CHANNELS[2],
                      "decoder_s4_concat": 32 + 64 + 128 + B0_SKIP_CHANNELS[1],
                      "decoder_s2_concat": 16 + 32 + 64 + 128 + B0_SKIP_CHANNELS[0]}
    assert fig5.get_layer("decoder_s8_hyper_from_s16").input is \
        fig5.get_layer("decoder_s16_up").output
    assert fig5.get_layer("decoder_s4_hyper_from_s16").input is \
        fig5.get_layer("decoder_s8_hyper_from_s16").output
    assert fig5.get_layer("decoder_s1_dropout").input is fig5.get_layer("decoder_s1_up").output


def _rates(model):
    places = ("center",) + tuple(f"decoder_{level}" for level in LEVELS)
    rates = [model.get_layer(f"{place}_dropout").rate for place in places]
    return rates + [model.get_layer("head_dropout").rate]


def test_fig5_dropout_placement(fig5):
    # r on the centre and the two deepest levels, 0.1 above, r / 2 before the head; r = 0.5.
    assert _rates(fig5) == pytest.approx([0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.25])
    assert DROPOUT_PLACES == ("center", "s16", "s8", "s4", "s2", "s1", "head")
    assert fig5_dropout_rates(0.2) == pytest.approx((0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.1))
    for place in ("center", "decoder_s16", "decoder_s2"):  # dropout comes before the conv
        assert fig5.get_layer(f"{place}_conv").input is fig5.get_layer(f"{place}_dropout").output
    assert fig5.get_layer("head_dropout").input is fig5.get_layer("decoder_s1_act").output
    assert fig5.get_layer("probabilities_conv").input is fig5.get_layer("head_dropout").output
    decoder = [layer for layer in fig5.layers if isinstance(layer, keras.layers.Dropout)
               and not layer.name.startswith("block")]  # EfficientNet's own: block*_drop
    assert len(decoder) == 7


def test_fig5_residual_block_has_a_norm_on_its_shortcut(fig5):
    block = "decoder_s4_res1"
    entry = fig5.get_layer("decoder_s4_conv").output
    assert fig5.get_layer(f"{block}_shortcut_norm").input is entry
    assert isinstance(fig5.get_layer(f"{block}_shortcut_norm"), keras.layers.BatchNormalization)
    chain = ["act0", "norm0", "conv1", "norm1", "act1", "conv2", "norm2"]
    assert fig5.get_layer(f"{block}_act0").input is entry
    for before, after in zip(chain, chain[1:]):
        assert fig5.get_layer(f"{block}_{after}").input is \
            fig5.get_layer(f"{block}_{before}").output, after
    assert _fed_by(fig5, f"{block}_add", f"{block}_norm2")
    assert _fed_by(fig5, f"{block}_add", f"{block}_shortcut_norm")
    assert fig5.get_layer("decoder_s4_act").input is fig5.get_layer(f"{block}_add").output
    assert fig5.get_layer("decoder_s4_conv").use_bias  # read by a LeakyReLU before any norm
    assert not fig5.get_layer(f"{block}_conv1").use_bias  # feeds a norm directly
    leaky = [layer for layer in fig5.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert leaky and all(layer.negative_slope == pytest.approx(0.1) for layer in leaky)


def _conv3x3_same(x, kernel, bias=None):
    """NumPy 'same' 3x3 convolution of (H, W, Cin) with a (3, 3, Cin, Cout) kernel."""
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = sum(padded[i:i + x.shape[0], j:j + x.shape[1]] @ kernel[i, j]
              for i in range(3) for j in range(3))
    return out if bias is None else out + bias


def _batch_norm(x, layer):
    gamma, beta, mean, variance = layer.get_weights()
    return gamma * (x - mean) / np.sqrt(variance + layer.epsilon) + beta


def _leaky_relu(x):
    return np.where(x > 0, x, 0.1 * x)


def test_fig5_elementary_block_matches_numpy(fig5, rng):
    # Stride-1 elementary block (8 channels): conv -> [norm(x) + conv_norm(leaky(conv_norm(
    # norm(leaky(x)))))] -> LeakyReLU, evaluated in inference mode with non-trivial norm stats.
    model, block = fig5, "decoder_s1_res1"
    norms = [model.get_layer(f"{block}_{name}")
             for name in ("shortcut_norm", "norm0", "norm1", "norm2")]
    saved = [layer.get_weights() for layer in norms]
    for layer in norms:
        layer.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(size=8),
                           rng.normal(size=8), rng.uniform(0.5, 2.0, 8)])
    sub = keras.Model(model.get_layer("decoder_s1_up").output,
                      model.get_layer("decoder_s1_act").output)
    x = rng.normal(size=(1, 6, 5, 8)).astype("float32")
    got = np.asarray(sub(x, training=False))[0]
    kernel, bias = model.get_layer("decoder_s1_conv").get_weights()
    entry = _conv3x3_same(x[0], kernel, bias)
    y = _batch_norm(_leaky_relu(entry), model.get_layer(f"{block}_norm0"))
    y = _conv3x3_same(y, model.get_layer(f"{block}_conv1").get_weights()[0])
    y = _leaky_relu(_batch_norm(y, model.get_layer(f"{block}_norm1")))
    y = _conv3x3_same(y, model.get_layer(f"{block}_conv2").get_weights()[0])
    y = _batch_norm(y, model.get_layer(f"{block}_norm2"))
    expected = _leaky_relu(y + _batch_norm(entry, model.get_layer(f"{block}_shortcut_norm")))
    for layer, weights in zip(norms, saved):
        layer.set_weights(weights)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def fig5_parameter_count(skip_channels, s=8, classes=1):
    """Parameters of the Fig. 5 decoder from its description (independent of the code):
    3x3 convs feeding a norm have no bias; norms hold 4 numbers per channel."""
    def conv(c_in, c_out, bias=True):
        return 9 * c_in * c_out + (c_out if bias else 0)

    def elementary(c_in, f, residual_blocks=1):  # conv + residual block(s): 4 norms, 2 convs
        return conv(c_in, f) + residual_blocks * (4 * 4 * f + 2 * conv(f, f, bias=False))

    c1, c2, c3, c4 = skip_channels
    widths = (16 * s, 8 * s, 4 * s, 2 * s, s)
    total = elementary(c4, 32 * s, residual_blocks=2)
    total += conv(32 * s, widths[0]) + elementary(widths[0] + c4, widths[0])
    below, carried = widths[0], [widths[0]]  # widths of the hyper paths reaching this level
    for f, skip in zip(widths[1:4], (c3, c2, c1)):
        total += conv(below, f) + sum(conv(h, h) for h in carried)
        total += elementary(f + sum(carried) + skip, f)
        below = f
        carried.append(f)
    total += conv(widths[3], widths[4]) + elementary(widths[4], widths[4])
    return total + widths[4] * classes + classes


def _encoder_until_stride16(constructor):
    encoder = constructor(include_top=False, weights=None, input_shape=(None, None, 3))
    return keras.Model(encoder.input, encoder.get_layer("block6a_expand_activation").output)


DECODER_PREFIXES = ("center", "decoder", "head", "probabilities")


def test_fig5_decoder_parameter_count_matches_its_description(fig5):
    decoder = sum(layer.count_params() for layer in fig5.layers
                  if layer.name.startswith(DECODER_PREFIXES))
    assert decoder == fig5_parameter_count(B0_SKIP_CHANNELS)


def test_stride32_centre_and_dropout_rate_r():
    model = UNetPlusPlus("efficientnet_b0", (64, 64, 3), decoder_filters=SMALL,
                         center_input="stride32", dropout=0.3)
    assert _rates(model) == pytest.approx([0.3, 0.3, 0.3, 0.1, 0.1, 0.1, 0.15])
    assert model.get_layer("center_dropout").input is model.get_layer("top_activation").output
    assert _fed_by(model, "decoder_s16_concat", "block6a_expand_activation")
    names = {layer.name for layer in model.layers}
    assert "center_input_pool" not in names and "center_input_act" not in names
    assert model.get_layer("center_conv").filters == 32


# ----------------------------------------------------------------------------- behaviour


def test_output_shape_and_range(fig5, rng):
    assert fig5.output_shape == (None, None, None, 1)
    for height, width in ((64, 64), (64, 96)):
        out = np.asarray(fig5(_images(rng, 2, height, width)))
        assert out.shape == (2, height, width, 1)
        assert out.dtype == np.float32
        assert np.all((out > 0) & (out < 1))
    for size in (256, 512):
        assert fig5.compute_output_shape((1, size, size, 3)) == (1, size, size, 1)


def test_nested_output_shape_dense_skips_and_defaults(nested, rng):
    out = np.asarray(nested(_images(rng, 1, 64, 96)))
    assert out.shape == (1, 64, 96, 1)
    assert np.all(np.isfinite(out))
    # Zhou et al.: X^{0,4} sees X^{0,0..3} and Up(X^{1,3}).
    assert len(nested.get_layer("decoder_x04_concat").input) == 5
    assert len(nested.get_layer("decoder_x13_concat").input) == 4
    assert len(nested.get_layer("decoder_x31_concat").input) == 2
    assert _fed_by(nested, "decoder_x31_concat", "top_activation") is False
    assert nested.get_layer("decoder_x31_up").input is nested.get_layer("top_activation").output
    rates = {layer.rate for layer in nested.layers if isinstance(layer, keras.layers.Dropout)
             and layer.name.startswith("decoder")}
    assert rates == {0.1}  # the nested decoder's default: 0.1 on every node


def test_resnet50_nested_deep_supervision_group_norm(rng):
    model = UNetPlusPlus("resnet50", (64, 64, 3), num_classes=3, activation="softmax",
                         decoder="nested", decoder_filters=SMALL, normalization="group",
                         deep_supervision=True)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 64, 64, 3)] * 4
    groups = [l for l in model.layers if isinstance(l, keras.layers.GroupNormalization)]
    assert groups and not any(isinstance(l, keras.layers.BatchNormalization)
                              and l.name.startswith("decoder") for l in model.layers)
    outputs = model(_images(rng, 1))
    for out in outputs:
        np.testing.assert_allclose(np.asarray(out).sum(-1), 1.0, atol=1e-5)


def test_resnet50_fig5_group_norm_and_seven_dropout_rates(rng):
    given = (0.4, 0.3, 0.2, 0.0, 0.05, 0.1, 0.0)
    model = UNetPlusPlus("resnet50", (64, 64, 3), decoder_filters=SMALL, normalization="group",
                         dropout=given)
    places = ("center", "decoder_s16", "decoder_s8", "decoder_s2", "decoder_s1")
    assert [model.get_layer(f"{p}_dropout").rate for p in places] == pytest.approx(
        [0.4, 0.3, 0.2, 0.05, 0.1])
    names = {layer.name for layer in model.layers}
    assert "decoder_s4_dropout" not in names and "head_dropout" not in names  # rate 0: no layer
    assert model.get_layer("center_input_act").input is \
        model.get_layer("conv4_block6_out").output
    assert isinstance(model.get_layer("decoder_s8_res1_shortcut_norm"),
                      keras.layers.GroupNormalization)
    assert "conv5_block3_out" not in names
    out = np.asarray(model(_images(rng, 1)))
    assert out.shape == (1, 64, 64, 1) and np.all(np.isfinite(out))


def test_training_step_changes_weights_and_gives_finite_loss(fig5, rng):
    model = keras.models.clone_model(fig5)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy",
                  run_eagerly=True)
    images = _images(rng)
    masks = (rng.uniform(size=(2, 64, 64, 1)) > 0.7).astype("float32")
    before = model.get_layer("decoder_s2_conv").get_weights()[0].copy()
    loss = model.train_on_batch(images, masks)
    assert np.isfinite(loss)
    assert not np.allclose(model.get_layer("decoder_s2_conv").get_weights()[0], before)


def test_float16_input_gives_finite_float32(fig5, rng):
    out = fig5(_images(rng, 1).astype("float16"))
    assert out.dtype == "float32"
    assert np.all(np.isfinite(np.asarray(out)))


def test_size_not_multiple_of_32_fails_clearly(fig5):
    with pytest.raises(ValueError, match=r"UNetPlusPlus.*input_shape.*multiples of 32.*65x64"):
        UNetPlusPlus("efficientnet_b0", (65, 64, 3), decoder_filters=SMALL)
    with pytest.raises(ValueError, match=r"UNetPlusPlus.*multiples of 32.*size 64x80"):
        fig5(np.zeros((1, 64, 80, 3), "float32"))
    with pytest.raises(ValueError, match=r"multiples of 32.*size 48x64"):
        fig5.predict(np.zeros((1, 48, 64, 3), "float32"), verbose=0)


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
    ({"num_classes": 0}, r"`num_classes` must be >= 1; received 0"),
    ({"dropout": 1.0}, r"`dropout` must be < 1.0; received 1.0"),
    ({"dropout": (0.5, 0.1)}, r"`dropout` must be a rate r in \[0, 1\).*or 7 rates for "
                              r"center, s16.*head; received \(0.5, 0.1\)"),
    ({"dropout": (0.1,) * 6 + (1.5,)}, r"`dropout` must be < 1.0; received 1.5"),
    ({"dropout": "high"}, r"`dropout` must be a rate r.*received 'high'"),
    ({"decoder": "nested", "dropout": (0.1,) * 7}, r"`dropout` must be a number"),
    ({"center_input": "stride8"}, r"`center_input` must be one of 'pooled_stride16', "
                                  r"'stride32'; received 'stride8'"),
    ({"decoder": "nested", "center_input": "stride32"},
     r"`center_input` is only available with decoder='simplified'; received 'stride32'"),
    ({"decoder_filters": (8, 8)}, r"`decoder_filters` must be five positive integers"),
    ({"deep_supervision": True}, r"`deep_supervision` is only available with decoder='nested'"),
    ({"input_shape": (64, 64)}, r"`input_shape` must be a tuple \(H, W, channels\)"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetPlusPlus(**{"encoder": "efficientnet_b0", **kwargs})


def test_keras_round_trip_with_tta_wrapper(fig5, rng, tmp_path):
    model = with_tta(fig5, "hflip")
    images = _images(rng, 1)
    expected = np.asarray(model(images))
    path = tmp_path / "unetpp_tta.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(images)), expected, atol=1e-5)
    inner = loaded.get_layer("tta").model
    assert inner.get_layer("decoder_s2_hyper_from_s16")
    assert inner.get_layer("head_dropout").rate == pytest.approx(0.25)


@pytest.mark.slow
def test_efficientnet_b4_fig5_size_and_training(rng):
    keras.utils.set_random_seed(4)
    model = UNetPlusPlus("efficientnet_b4", (None, None, 3))
    # Fig. 5's skips on the paper's encoder, at strides 2, 4, 8, 16 (shapes at 512 px).
    names = ("block2a_expand_activation", "block3a_expand_activation",
             "block4a_expand_activation", "center_input_act", "center_act")
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    shapes = [tuple(s.shape) for s in probe.compute_output_spec(keras.KerasTensor((1, 512, 512, 3)))]
    assert shapes == [(1, 256, 256, 144), (1, 128, 128, 192), (1, 64, 64, 336),
                      (1, 32, 32, 960), (1, 16, 16, 256)]
    # The measured size of the author's network: 11.47 M (target 10.3-12.7 M).
    encoder = _encoder_until_stride16(keras.applications.EfficientNetB4)
    expected = encoder.count_params() + fig5_parameter_count(B4_SKIP_CHANNELS)
    assert model.count_params() == expected
    assert 10.3e6 <= model.count_params() <= 12.7e6
    assert model.compute_output_shape((2, 512, 512, 3)) == (2, 512, 512, 1)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy",
                  run_eagerly=True)
    masks = (rng.uniform(size=(2, 64, 64, 1)) > 0.7).astype("float32")
    loss = model.train_on_batch(_images(rng, 2, 64, 64), masks)
    assert np.isfinite(loss)
