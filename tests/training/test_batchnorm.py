"""BatchNorm helpers: finding the layers, setting and scaling momentum, exact re-estimation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.training import (
    batchnorm_layers,
    recompute_batchnorm_statistics,
    set_batchnorm_momentum,
    set_batchnorm_momentum_for_accumulation,
)
from keras_seg_extras.models.small_unet import small_unet

SIZE = 8


class _Block(keras.layers.Layer):
    """A custom layer holding BN sub-layers as an attribute, in a list and under an underscore."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.norm = keras.layers.BatchNormalization(name="attribute_bn")
        self.stack = [keras.layers.Dense(2), keras.layers.BatchNormalization(name="list_bn")]
        self._hidden = keras.layers.BatchNormalization(name="hidden_bn")

    def call(self, x, training=None):
        x = self.norm(x, training=training)
        for layer in self.stack:
            x = layer(x, training=training)
        return self._hidden(x, training=training)


def _nested_model():
    inner = keras.Sequential([keras.Input((2,)), keras.layers.BatchNormalization(name="inner_bn")],
                             name="inner")
    inputs = keras.Input((2,))
    x = inner(inputs)
    x = _Block(name="block")(x)
    x = keras.layers.BatchNormalization(name="outer_bn")(x)
    return keras.Model(inputs, x), inner


def test_finds_nested_models_and_public_attributes_once():
    model, inner = _nested_model()
    names = [layer.name for layer in batchnorm_layers(model)]
    assert sorted(names) == ["attribute_bn", "inner_bn", "list_bn", "outer_bn"]
    assert "hidden_bn" not in names  # underscore attributes are private state: not walked
    outer = keras.Model(model.inputs, inner(model.outputs[0]))  # the inner model used twice
    assert [layer.name for layer in batchnorm_layers(outer)].count("inner_bn") == 1
    wrapped = keras.Sequential([keras.Input((3, 2)), keras.layers.TimeDistributed(
        keras.layers.BatchNormalization(name="wrapped_bn"))])
    assert [layer.name for layer in batchnorm_layers(wrapped)] == ["wrapped_bn"]
    assert len(batchnorm_layers(small_unet((None, None, 1), num_classes=1, filters=(4, 8)))) == 6
    with pytest.raises(ValueError, match="batchnorm_layers: `model` must be a Keras model"):
        batchnorm_layers("model")


def test_set_momentum_everywhere_and_as_the_accumulation_base():
    model, _ = _nested_model()
    changes = set_batchnorm_momentum(model, 0.9)
    assert len(changes) == 4 and all(old == 0.99 and new == 0.9 for _, old, new in changes)
    assert all(layer.momentum == 0.9 for layer in batchnorm_layers(model))
    set_batchnorm_momentum_for_accumulation(model, 2)
    assert all(layer.momentum == pytest.approx(0.9 ** 0.5) for layer in batchnorm_layers(model))
    set_batchnorm_momentum(model, 0.8)  # a new base: the next scaling starts from it
    set_batchnorm_momentum_for_accumulation(model, 2)
    assert all(layer.momentum == pytest.approx(0.8 ** 0.5) for layer in batchnorm_layers(model))
    for bad in (-0.1, 1.5, "high"):
        with pytest.raises(ValueError, match="set_batchnorm_momentum: `momentum`"):
            set_batchnorm_momentum(model, bad)
    with pytest.raises(ValueError, match="set_batchnorm_momentum_for_accumulation: "
                                         "`accumulation_steps`"):
        set_batchnorm_momentum_for_accumulation(model, 0)


def test_batchnorm_momentum_spans_the_same_samples(rng):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,))
    outputs = keras.layers.BatchNormalization(momentum=0.9)(keras.layers.Dense(2)(inputs))
    model = keras.Model(inputs, outputs)
    changes = set_batchnorm_momentum_for_accumulation(model, 4)
    assert changes[0][1] == 0.9 and changes[0][2] == pytest.approx(0.9 ** 0.25)
    set_batchnorm_momentum_for_accumulation(model, 4)  # repeated: does not compound
    bn = model.layers[-1]
    assert bn.momentum == pytest.approx(0.9 ** 0.25)
    # Four micro-batch updates with constant statistics decay the old average by 0.9.
    x = rng.normal(size=(8, 3)).astype("float32")
    before = bn.moving_mean.numpy().copy()
    for _ in range(4):
        features = model.layers[1](x)
        bn(features, training=True)
    batch_mean = features.numpy().mean(axis=0)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * before + 0.1 * batch_mean,
                               atol=1e-6)
    set_batchnorm_momentum_for_accumulation(model, 1)
    assert bn.momentum == pytest.approx(0.9)


def _moving(bns):
    """Moving statistics, read before anything runs in training mode again."""
    return [(layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy())
            for layer in bns]


def _features(model, bns, x):
    """Pre-BN activations of ``bns`` in training mode (independent of the recording hook)."""
    extractor = keras.Model(model.inputs, [layer.input for layer in bns])
    return [np.asarray(f, "float64") for f in extractor(x, training=True)]


def test_batchnorm_statistics_are_exact_pooled_moments(rng):
    keras.utils.set_random_seed(5)
    model = small_unet((None, None, 1), num_classes=1, activation="sigmoid", filters=(4, 8))
    batches = [rng.normal(size=(n, SIZE, SIZE, 1)).astype("float32") * 2 + 1 for n in (4, 4, 3)]
    result = recompute_batchnorm_statistics(model, [(b, None) for b in batches])
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    moving = _moving(bns)
    assert len(result) == len(bns) == 6
    per_batch = [_features(model, bns, b) for b in batches]
    for i, bn in enumerate(bns):
        pooled = np.concatenate([f[i].reshape(-1, f[i].shape[-1]) for f in per_batch])
        np.testing.assert_allclose(moving[i][0], pooled.mean(0), atol=1e-5, rtol=0)
        np.testing.assert_allclose(moving[i][1], pooled.var(0), atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(result[bn.name][0], moving[i][0])
    # The layers' own call is restored afterwards.
    assert "call" not in bns[0].__dict__


def test_reestimation_reaches_nested_models_and_skips_frozen_layers(rng):
    model, inner = _nested_model()
    frozen = model.get_layer("outer_bn")
    frozen.trainable = False
    x = rng.normal(size=(5, 2)).astype("float32") * 3 + 2
    result = recompute_batchnorm_statistics(model, [x], steps=1)
    assert sorted(result) == ["attribute_bn", "inner_bn", "list_bn"]
    # inner_bn sees the raw inputs: its statistics are theirs (biased variance).
    bn = inner.get_layer("inner_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.astype("float64").mean(0), atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.astype("float64").var(0),
                               rtol=1e-5)
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), np.zeros(2))


def test_reestimation_rejects_bad_data():
    model = small_unet((None, None, 1), num_classes=1, filters=(4, 8))
    with pytest.raises(ValueError, match="recompute_batchnorm_statistics: `data`"):
        recompute_batchnorm_statistics(model, np.zeros((2, SIZE, SIZE, 1)))
    with pytest.raises(ValueError, match="recompute_batchnorm_statistics: `data`.*one batch"):
        recompute_batchnorm_statistics(model, [])
    infinite = tf.data.Dataset.from_tensors(np.zeros((1, SIZE, SIZE, 1), "float32")).repeat()
    with pytest.raises(ValueError, match="`steps`.*infinite"):
        recompute_batchnorm_statistics(model, infinite)
    with pytest.raises(ValueError, match="recompute_batchnorm_statistics: `steps`"):
        recompute_batchnorm_statistics(model, [np.zeros((1, SIZE, SIZE, 1))], steps=0)
