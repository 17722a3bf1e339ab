"""The encoder table: every skip layer exists on the built keras.applications model and sits at
the stride the table claims (EfficientNet-B0 and ResNet50 here at 64 px; EfficientNet-B4 in the
slow test of test_unet_plus_plus.py)."""

import keras
import numpy as np
import pytest

from keras_seg_extras.models.encoders import (
    ENCODERS,
    SKIP_STRIDES,
    CaffePreprocessing,
    build_encoder,
    encoder_names,
)


def test_table_covers_efficientnet_b0_to_b7_and_resnet50():
    assert set(encoder_names()) == {f"efficientnet_b{i}" for i in range(8)} | {"resnet50"}
    for name, (constructor, skips, _) in ENCODERS.items():
        assert hasattr(keras.applications, constructor), name
        assert len(skips) == len(SKIP_STRIDES) == 5


@pytest.mark.parametrize("name, expected", [
    ("efficientnet_b0", ["block2a_expand_activation", "block3a_expand_activation",
                         "block4a_expand_activation", "block6a_expand_activation",
                         "top_activation"]),
    ("resnet50", ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out",
                  "conv5_block3_out"]),
])
def test_skips_exist_at_strides_2_to_32(name, expected):
    inputs = keras.Input((64, 64, 3))
    skips = build_encoder(name, inputs)
    model = keras.Model(inputs, skips)
    for skip, layer_name, stride in zip(skips, expected, SKIP_STRIDES):
        assert skip is model.get_layer(layer_name).output
        assert tuple(skip.shape[1:3]) == (64 // stride, 64 // stride), (layer_name, stride)
    # EfficientNet-B0's expand activations: 6x the input width of the stage's first block.
    if name.startswith("efficientnet"):
        assert [s.shape[-1] for s in skips] == [96, 144, 240, 672, 1280]


def test_caffe_preprocessing_matches_keras_resnet_preprocess_input(rng):
    images = rng.uniform(0, 255, size=(2, 5, 7, 3)).astype("float32")
    expected = images[..., ::-1] - np.array([103.939, 116.779, 123.68], dtype="float32")
    np.testing.assert_allclose(np.asarray(CaffePreprocessing()(images)), expected, atol=1e-4)
    reference = keras.applications.resnet.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(CaffePreprocessing()(images)), reference, atol=1e-4)


def test_local_weights_file_is_loaded(tmp_path):
    source = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                               input_shape=(None, None, 3))
    path = str(tmp_path / "efficientnetb0_notop.weights.h5")
    source.save_weights(path)
    inputs = keras.Input((None, None, 3))
    skips = build_encoder("efficientnet_b0", inputs, encoder_weights=path)
    loaded = keras.Model(inputs, skips[-1])
    # Both start from independent random initialisations; only the file can make them equal.
    for layer in ("stem_conv", "block4a_expand_conv", "top_conv"):
        np.testing.assert_array_equal(loaded.get_layer(layer).get_weights()[0],
                                      source.get_layer(layer).get_weights()[0])


def test_bad_encoder_and_weights_raise_clear_errors(tmp_path):
    inputs = keras.Input((64, 64, 3))
    with pytest.raises(ValueError, match=r"`encoder` must be one of .*received 'vgg16'"):
        build_encoder("vgg16", inputs)
    missing = tmp_path / "nothing.h5"
    with pytest.raises(ValueError, match=r"encoder_weights.*names no existing file"):
        build_encoder("efficientnet_b0", inputs, encoder_weights=str(missing))
    with pytest.raises(ValueError, match=r"encoder_weights.*local weights file.*received 3"):
        build_encoder("efficientnet_b0", inputs, encoder_weights=3)


def test_imagenet_offline_explains_how_to_pass_a_local_file(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: network is unreachable")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(ValueError, match=r"encoder_weights`='imagenet'.*local path.*notop"):
        build_encoder("efficientnet_b0", keras.Input((64, 64, 3)), encoder_weights="imagenet")
