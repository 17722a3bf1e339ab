"""The encoder table: every skip layer exists on the built keras.applications model and sits at
the stride the table claims (EfficientNet-B0 and ResNet50 here at 64 px; EfficientNet-B4 in the
slow test of test_unet_plus_plus.py)."""

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from keras_seg_extras.models.encoders import (
    ENCODERS,
    SKIP_STRIDES,
    CaffePreprocessing,
    build_encoder,
    encoder_names,
    imagenet_cache_path,
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


def test_imagenet_reads_only_the_keras_cache_and_never_downloads(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def no_download(*args, **kwargs):
        raise AssertionError("keras' get_file was called: a download was attempted")

    monkeypatch.setattr(file_utils, "get_file", no_download)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    expected = tmp_path / "models" / "efficientnetb0_notop.h5"
    assert imagenet_cache_path("efficientnet_b0") == str(expected)
    assert imagenet_cache_path("resnet50").endswith(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    with pytest.raises(ValueError, match=r"encoder_weights`='imagenet'.*efficientnetb0_notop\.h5"
                                         r".*never downloads.*local path"):
        build_encoder("efficientnet_b0", keras.Input((64, 64, 3)), encoder_weights="imagenet")

    # With the file in the cache it is loaded from there.
    source = keras.applications.EfficientNetB0(include_top=False, weights=None,
                                               input_shape=(None, None, 3))
    expected.parent.mkdir()
    with h5py.File(expected, "w") as handle:  # keras' legacy .h5 layout, as the download has
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, build_encoder("efficientnet_b0", inputs,
                                              encoder_weights="imagenet"))
    np.testing.assert_array_equal(model.get_layer("top_conv").get_weights()[0],
                                  source.get_layer("top_conv").get_weights()[0])
