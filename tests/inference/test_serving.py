"""served_model (TTA + each member's size in one graph) and predict_stream (batched, in
order), against the members called by hand."""

import keras
import numpy as np
import pytest

from keras_seg_extras.inference import predict_stream, served_classifier, served_model


def _net(seed, name):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((None, None, 3)),
                             keras.layers.Conv2D(2, 3, padding="same", activation="relu"),
                             keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")],
                            name=name)


def _resize(x, size):
    return keras.ops.convert_to_numpy(keras.ops.image.resize(x, size))


def _by_hand(model, image, size):
    """h-flip TTA at the member's size, resized back: written out without the library."""
    x = _resize(image, (size, size))
    plain = keras.ops.convert_to_numpy(model(x))
    flipped = keras.ops.convert_to_numpy(model(x[:, :, ::-1]))[:, :, ::-1]
    return _resize((plain + flipped) / 2, image.shape[1:3])


def test_one_member_and_an_ensemble_match_the_members_by_hand():
    a, b = _net(0, "a"), _net(1, "b")
    image = np.random.default_rng(0).uniform(0, 255, (2, 40, 56, 3)).astype("float32")
    single = served_model(a, 32)
    assert single.name == "a_served"
    np.testing.assert_allclose(single.predict(image, verbose=0), _by_hand(a, image, 32),
                               atol=1e-5)
    pair = served_model([a, b], [32, 64], weights=[3, 1], name="pair")
    expected = (3 * _by_hand(a, image, 32) + _by_hand(b, image, 64)) / 4
    assert pair.name == "pair" and len(pair.get_layer("weighted_ensemble").models) == 2
    np.testing.assert_allclose(pair.predict(image, verbose=0), expected, atol=1e-5)


def test_stream_batches_same_shapes_and_keeps_the_order():
    calls = []

    class Recording(keras.Model):
        def call(self, x):
            return keras.ops.mean(x, axis=-1, keepdims=True) * 2.0

        def predict_on_batch(self, x):
            calls.append(x.shape)
            return super().predict_on_batch(x)

    model = Recording()
    rng = np.random.default_rng(1)
    images = [rng.uniform(size=s) for s in [(4, 5), (4, 5), (4, 5), (6, 3), (4, 5), (4, 5, 3)]]
    outputs = list(predict_stream({"m": model, "n": model}, iter(images), batch_size=2))
    assert len(outputs) == 6 and all(set(o) == {"m", "n"} for o in outputs)
    for image, out in zip(images, outputs):
        expected = 2 * (image if image.ndim == 2 else image.mean(axis=-1))  # grey -> 3 copies
        np.testing.assert_allclose(out["m"], expected, rtol=1e-6)
    # (4, 5) x2, (4, 5), (6, 3), (4, 5), then (4, 5, 3): a change of shape ends a batch.
    assert calls[::2] == [(2, 4, 5, 3), (1, 4, 5, 3), (1, 6, 3, 3), (1, 4, 5, 3), (1, 4, 5, 3)]


def _two_outputs(seed, name):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    logits = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(features[:, :, :8]))
    return keras.Model(inputs, {"mask": keras.layers.Conv2D(1, 1, activation="sigmoid")(features),
                                "classification": logits}, name=name)


def test_head_models_serve_the_mask_and_the_gate_probability_by_hand():
    """The classifier: sigmoid of the h-flip-averaged logits at each member's size, averaged
    over members; the mask output is served as a one-output model."""
    a, b = _two_outputs(2, "net"), _two_outputs(3, "net")  # kept models share a name
    image = np.random.default_rng(2).uniform(0, 255, (2, 40, 48, 3)).astype("float32")

    def logits(model, size):
        x = _resize(image, (size, size))
        plain = keras.ops.convert_to_numpy(model(x)["classification"])
        return (plain + keras.ops.convert_to_numpy(model(x[:, :, ::-1])["classification"])) / 2

    def sigmoid(z):
        return 1 / (1 + np.exp(-z))

    head = served_classifier([a, b], [32, 64])
    expected = (sigmoid(logits(a, 32)) + sigmoid(logits(b, 64))) / 2
    np.testing.assert_allclose(head.predict(image, verbose=0), expected, atol=1e-5)
    assert head.output_shape == (None, 1)
    mask_only = keras.Model(a.inputs, a.output["mask"])
    np.testing.assert_allclose(served_model(a, 32, output="mask").predict(image, verbose=0),
                               _by_hand(mask_only, image, 32), atol=1e-5)


@pytest.mark.parametrize("call, match", [
    (lambda: served_model([_net(0, "a")], [32, 64]), r"served_model: `sizes` must hold one size"),
    (lambda: served_model(_two_outputs(0, "t"), 32, output="logits"),
     r"served_model: `output` must name an output of 't'; its outputs are "
     r"\['classification', 'mask'\]"),
    (lambda: served_classifier(_net(0, "a"), 32),
     r"served_classifier: `output` must name an output of 'a'; its outputs are one tensor"),
    (lambda: list(predict_stream({}, [np.zeros((2, 2))])), r"predict_stream: `models` must be"),
    (lambda: list(predict_stream({"a": _net(0, "a")}, [], batch_size=0)),
     r"predict_stream: `batch_size` must be >= 1"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
