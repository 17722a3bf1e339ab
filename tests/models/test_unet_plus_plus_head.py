"""UNetPlusPlus(classification_head=K): the multi-label classification sub-network of the
YouTubeVOS 2021 report (3.5.1) as a second, named output; training both outputs, saving,
test-time augmentation of both, and what ensembles and export do with two outputs.

Small decoders on EfficientNet-B0 at 32-64 px keep every test cheap."""

import warnings

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import ensemble, with_tta
from keras_seg_extras.models import UNetPlusPlus, small_unet

SMALL = (16, 8, 8, 4, 4)
B0_STRIDE16_CHANNELS = 672  # block6a_expand_activation
B0_STRIDE32_CHANNELS = 1280  # top_activation


@pytest.fixture(scope="module")
def two():
    keras.utils.set_random_seed(5)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder_filters=SMALL,
                        classification_head=3)


def _images(rng, batch=2, size=64):
    return rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")


def test_default_is_unchanged_and_the_head_adds_pool_dropout_dense(two):
    plain = UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder_filters=SMALL)
    assert not isinstance(plain.output, dict) and len(plain.outputs) == 1
    assert not [layer for layer in plain.layers if layer.name.startswith("classification")]
    # The head: a (C + 1) x K dense layer on the pooled stride-16 features, nothing else.
    assert two.count_params() - plain.count_params() == (B0_STRIDE16_CHANNELS + 1) * 3
    assert set(two.output) == {"mask", "classification"}
    assert tuple(two.output["mask"].shape) == (None, None, None, 1)
    assert tuple(two.output["classification"].shape) == (None, 3)
    pool = two.get_layer("classification_pool")
    assert isinstance(pool, keras.layers.GlobalAveragePooling2D)
    assert pool.input is two.get_layer("block6a_expand_activation").output
    assert two.get_layer("classification_dropout").rate == pytest.approx(0.2)


def test_nested_head_reads_c5_and_every_output_is_named():
    model = UNetPlusPlus("efficientnet_b0", (32, 32, 3), decoder="nested",
                         decoder_filters=SMALL, deep_supervision=True, classification_head=2)
    assert list(model.output) == ["deep_supervision_1", "deep_supervision_2",
                                  "deep_supervision_3", "mask", "classification"]
    assert model.get_layer("classification_pool").input is \
        model.get_layer("top_activation").output
    assert model.get_layer("classification_logits").kernel.shape == (B0_STRIDE32_CHANNELS, 2)


def test_classification_logits_match_numpy(two, rng):
    # Inference: logits = mean over H, W of the stride-16 features, times W, plus b.
    images = _images(rng, 2, 64)
    features = keras.Model(two.input, two.get_layer("block6a_expand_activation").output)
    pooled = np.asarray(features(images, training=False), np.float64).mean(axis=(1, 2))
    kernel, bias = two.get_layer("classification_logits").get_weights()
    expected = pooled @ kernel + bias
    got = two(images, training=False)
    assert got["classification"].dtype == "float32"
    np.testing.assert_allclose(np.asarray(got["classification"]), expected, rtol=1e-4,
                               atol=1e-4)


def test_fit_on_both_outputs_reduces_both_losses(rng):
    # Synthetic task: a bright square in some images; the mask is the square, label 0 says
    # "there is a square", label 1 "the square is in the left half".
    keras.utils.set_random_seed(6)
    model = UNetPlusPlus("efficientnet_b0", (32, 32, 3), decoder_filters=SMALL, dropout=0.0,
                         classification_head=2)
    images = np.full((4, 32, 32, 3), 40.0, "float32")
    masks = np.zeros((4, 32, 32, 1), "float32")
    labels = np.zeros((4, 2), "float32")
    for i, corner in enumerate([(4, 2), (14, 18), None, (6, 20)]):
        if corner is None:
            continue
        top, left = corner
        images[i, top:top + 10, left:left + 10] = 220.0
        masks[i, top:top + 10, left:left + 10] = 1.0
        labels[i] = (1.0, float(left < 16))
    model.compile(optimizer=keras.optimizers.Adam(5e-3),
                  loss={"mask": "binary_crossentropy",
                        "classification": keras.losses.BinaryCrossentropy(from_logits=True)},
                  run_eagerly=True)  # a traced B0 training step costs ~40 s to compile
    history = model.fit(images, {"mask": masks, "classification": labels}, batch_size=4,
                        epochs=3, verbose=0).history
    for key in ("mask_loss", "classification_loss"):
        first, last = history[key][0], history[key][-1]
        assert np.isfinite(last) and last < 0.7 * first, (key, history[key])


def test_keras_round_trip_of_the_two_output_model(two, rng, tmp_path):
    images = _images(rng, 1)
    expected = two(images, training=False)
    path = tmp_path / "unetpp_head.keras"
    two.save(path)
    loaded = keras.saving.load_model(path)
    assert set(loaded.output) == {"mask", "classification"}
    got = loaded(images, training=False)
    for key in ("mask", "classification"):
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5)


def test_tta_averages_the_mask_flipped_back_and_the_classification_as_is(two, rng):
    images = _images(rng, 2)
    plain = two(images, training=False)
    flipped = two(np.ascontiguousarray(images[:, :, ::-1]), training=False)
    got = with_tta(two, "hflip")(images)
    mask = (np.asarray(plain["mask"]) + np.asarray(flipped["mask"])[:, :, ::-1]) / 2
    classification = (np.asarray(plain["classification"])
                      + np.asarray(flipped["classification"])) / 2
    np.testing.assert_allclose(np.asarray(got["mask"]), mask, atol=1e-5)
    np.testing.assert_allclose(np.asarray(got["classification"]), classification, atol=1e-5)


def test_ensemble_members_need_one_output(two):
    with pytest.raises(ValueError, match=r"WeightedEnsemble.*single output.*output\['mask'\]"):
        ensemble([two, two])


def test_export_serves_the_mask_only_with_a_warning(tmp_path):
    # Any model whose dict of outputs holds "mask" (a tiny one here: export is what is tested).
    import tensorflow as tf

    import keras_seg_extras as kse

    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(2, 1, name="features")(inputs)
    mask = keras.layers.Activation("sigmoid", name="mask_probabilities")(features)
    label = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(inputs, {"mask": mask, "classification": label}, name="two_outputs")
    with pytest.warns(UserWarning, match=r"outputs \['classification', 'mask'\].*'mask' output "
                                         r"only"):
        path = kse.export_model(model, tmp_path / "two", verify=True, multiple=1)
    images = np.random.default_rng(0).integers(0, 256, (1, 5, 7, 3), np.uint8)
    served = tf.saved_model.load(str(path))  # held: its functions read its variables
    out = served.serve_uint8(tf.constant(images))
    assert set(out) == {"probabilities"}
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               np.asarray(model(images.astype("float32"))["mask"]), atol=1e-6)


@pytest.mark.parametrize("value, match", [
    (0, r"`classification_head` must be >= 1; received 0"),
    (True, r"`classification_head` must be an integer; received True"),
    (2.5, r"`classification_head` must be an integer; received 2.5"),
])
def test_bad_classification_head_raises(value, match):
    with pytest.raises(ValueError, match=rf"UNetPlusPlus: {match}"):
        UNetPlusPlus("efficientnet_b0", classification_head=value)


def test_classes_is_the_deprecated_name_of_num_classes():
    with pytest.warns(DeprecationWarning, match=r"UNetPlusPlus: `classes` is renamed `num_classes`.*"
                                                r"num_classes=3"):
        model = UNetPlusPlus("efficientnet_b0", (32, 32, 3), decoder_filters=SMALL, classes=3)
    assert model.output_shape == (None, 32, 32, 3)
    with pytest.raises(ValueError, match=r"UNetPlusPlus: `classes` is the former name of "
                                         r"`num_classes`.*received 2"):
        UNetPlusPlus("efficientnet_b0", num_classes=3, classes=2)
    with pytest.warns(DeprecationWarning, match=r"small_unet: `classes` is renamed `num_classes`"):
        unet = small_unet((32, 32, 1), classes=4, filters=(4, 8))
    assert unet.output_shape == (None, 32, 32, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert small_unet((32, 32, 1), num_classes=2, filters=(4, 8)).output_shape[-1] == 2
