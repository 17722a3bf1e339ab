"""TiltedCrossEntropy against an independent NumPy log-sum-exp reference (paper 002, eqs. 2-3)."""

import keras
import numpy as np

from tests.training.replicas import two_cpu_replicas
import pytest
import tensorflow as tf

import keras_seg_extras  # noqa: F401  (registers the classes for load_model)
from keras_seg_extras.losses import TiltedCrossEntropy, tilted_cross_entropy


# ----------------------------------------------------------------------------- reference


def _log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _tilt(values, t):
    """(1/t) log(mean exp(t v)) with scipy-style log-sum-exp; plain mean at t = 0."""
    values = np.asarray(values, np.float64)
    if t == 0:
        return values.mean()
    a = t * values
    amax = a.max()
    return (amax + np.log(np.exp(a - amax).sum()) - np.log(len(values))) / t


def reference(labels, logits, t, level, ignore_index=None):
    logp = _log_softmax(logits)
    classes = logits.shape[-1]
    per_image = []
    for m in range(labels.shape[0]):
        lab = labels[m]
        valid = np.ones(lab.shape, bool) if ignore_index is None else lab != ignore_index
        if not valid.any():
            continue
        if level == "image":
            ce = [-logp[m][i, j, lab[i, j]] for i, j in zip(*np.nonzero(valid))]
            per_image.append(np.mean(ce))
        else:
            class_losses = []
            for c in range(classes):
                sel = valid & (lab == c)
                if sel.any():
                    class_losses.append(-logp[m][..., c][sel].mean())
            per_image.append(_tilt(class_losses, t))
    if not per_image:
        return 0.0
    return _tilt(per_image, t) if level == "image" else float(np.mean(per_image))


def _data(rng, b=4, h=6, w=5, c=4, scale=3.0):
    logits = (rng.normal(size=(b, h, w, c)) * scale).astype("float32")
    labels = rng.integers(0, c, size=(b, h, w))
    return labels, logits


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("level", ["image", "class"])
@pytest.mark.parametrize("t", [-2.0, -0.3, 0.0, 0.1, 1.0, 5.0])
def test_matches_reference(rng, level, t):
    labels, logits = _data(rng)
    got = float(tilted_cross_entropy(labels, logits, t=t, level=level))
    np.testing.assert_allclose(got, reference(labels, logits, t, level), rtol=1e-5, atol=1e-5)
    # Class object, one-hot labels and (B, H, W, 1) labels give the same value.
    onehot = np.eye(logits.shape[-1], dtype="float32")[labels]
    loss = TiltedCrossEntropy(t=t, level=level)
    np.testing.assert_allclose(float(loss(onehot, logits)), got, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(float(loss(labels[..., None], logits)), got, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("level", ["image", "class"])
def test_ignore_index_and_ignored_only_images(rng, level):
    labels, logits = _data(rng, b=5)
    labels[labels == 2] = 255
    labels[1] = 255  # an image with only ignored pixels is left out of the mean
    got = float(tilted_cross_entropy(labels, logits, t=1.5, level=level, ignore_index=255))
    np.testing.assert_allclose(got, reference(labels, logits, 1.5, level, 255), rtol=1e-5)
    labels[:] = 255
    assert float(tilted_cross_entropy(labels, logits, t=1.5, level=level, ignore_index=255)) == 0


def test_class_level_single_class_image_and_all_foreground(rng):
    labels, logits = _data(rng, b=3)
    labels[0] = 1  # one class present: that image's tilt is its plain class loss
    for t in (0.5, 3.0):
        got = float(tilted_cross_entropy(labels, logits, t=t, level="class"))
        np.testing.assert_allclose(got, reference(labels, logits, t, "class"), rtol=1e-5)


@pytest.mark.parametrize("level", ["image", "class"])
def test_t_to_zero_is_cross_entropy_and_continuous(rng, level):
    labels, logits = _data(rng)
    ce = reference(labels, logits, 0.0, level)
    if level == "image":
        plain = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
            labels, logits))
        np.testing.assert_allclose(ce, plain, rtol=1e-5)
    at_zero = float(tilted_cross_entropy(labels, logits, t=0.0, level=level))
    np.testing.assert_allclose(at_zero, ce, rtol=1e-6)
    for t in (1e-3, 1e-5, 1e-8, -1e-8, -1e-5):
        near = float(tilted_cross_entropy(labels, logits, t=t, level=level))
        np.testing.assert_allclose(near, ce, rtol=2e-3 * max(abs(t) * 1e3, 1e-3), atol=1e-6)
    # Monotone in t (the tilted mean is increasing in t).
    values = [float(tilted_cross_entropy(labels, logits, t=t, level=level))
              for t in (-1.0, -0.1, 0.0, 0.1, 1.0)]
    assert all(a <= b + 1e-6 for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("level", ["image", "class"])
@pytest.mark.parametrize("tl", [1e3, 1e4])
def test_finite_at_huge_tilt(rng, level, tl):
    labels, logits = _data(rng, scale=30.0)
    logits[0, 0, 0] = [100.0, -100.0, 100.0, -100.0]
    ce_max = reference(labels, logits, 0.0, level)
    t = tl / max(ce_max, 1.0)
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        value = tilted_cross_entropy(labels, logits_t, t=t, level=level)
    grad = tape.gradient(value, logits_t).numpy()
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(float(value), reference(labels, logits, t, level), rtol=1e-5)
    # Negative tilt of the same size.
    neg = float(tilted_cross_entropy(labels, logits, t=-t, level=level))
    np.testing.assert_allclose(neg, reference(labels, logits, -t, level), rtol=1e-5, atol=1e-5)


def test_probabilities_and_extremes(rng):
    labels, logits = _data(rng)
    probs = np.exp(_log_softmax(logits)).astype("float32")
    a = float(tilted_cross_entropy(labels, probs, t=1.0, from_logits=False))
    b = float(tilted_cross_entropy(labels, logits, t=1.0))
    np.testing.assert_allclose(a, b, rtol=1e-4)
    # Probabilities exactly 0 and 1 stay finite (clipped at keras epsilon).
    hard = np.eye(4, dtype="float32")[rng.integers(0, 4, size=labels.shape)]
    value = float(tilted_cross_entropy(labels, hard, t=2.0, from_logits=False))
    assert np.isfinite(value)


def test_gradient_weights_images_by_tilt(rng):
    """d TCE / d L_m = softmax(t L)_m: the worst image gets the largest weight."""
    labels, logits = _data(rng, b=3)
    t = 2.0
    logits_t = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits_t)
        value = tilted_cross_entropy(labels, logits_t, t=t)
    grad = tape.gradient(value, logits_t).numpy()
    logp = _log_softmax(logits)
    losses = np.array([-np.take_along_axis(logp[m], labels[m][..., None], -1).mean()
                       for m in range(3)])
    weights = np.exp(t * losses - (t * losses).max())
    weights /= weights.sum()
    # Reference gradient of sum_m w_m * mean CE_m with w = softmax(t L).
    p = np.exp(logp)
    onehot = np.eye(4)[labels]
    pixels = labels.shape[1] * labels.shape[2]
    expected = weights[:, None, None, None] * (p - onehot) / pixels
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-7)


def test_sample_weight_weights_images_inside_the_tilt(rng):
    labels, logits = _data(rng, b=4)
    loss = TiltedCrossEntropy(t=1.0)
    weighted = float(loss(labels, logits, sample_weight=np.array([1.0, 0.0, 2.0, 1.0])))
    # Weight 2 equals duplicating the image, weight 0 equals dropping it.
    dup_labels = labels[[0, 2, 2, 3]]
    dup_logits = logits[[0, 2, 2, 3]]
    np.testing.assert_allclose(weighted, reference(dup_labels, dup_logits, 1.0, "image"),
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("level", ["image", "class"])
def test_low_precision_inputs(rng, dtype, level):
    labels, logits = _data(rng)
    x = tf.cast(tf.constant(logits), dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tilted_cross_entropy(labels, x, t=1.0, level=level)
    grad = tape.gradient(value, x)
    assert value.dtype == tf.float32 and np.isfinite(float(value))
    assert np.all(np.isfinite(tf.cast(grad, "float32").numpy()))
    ref = reference(labels, tf.cast(x, "float32").numpy(), 1.0, level)
    np.testing.assert_allclose(float(value), ref, rtol=1e-4)


# ----------------------------------------------------------------------------- Keras


def test_config_round_trip():
    loss = TiltedCrossEntropy(t=-0.5, level="class", from_logits=False, ignore_index=255)
    clone = TiltedCrossEntropy.from_config(loss.get_config())
    assert (clone.t, clone.level, clone.from_logits, clone.ignore_index) == (
        -0.5, "class", False, 255)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, TiltedCrossEntropy) and restored.level == "class"


def test_keras_save_load_and_fit(tmp_path, rng):
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs))
    model.compile(optimizer="adam", loss=TiltedCrossEntropy(t=1.0, ignore_index=255))
    x = rng.normal(size=(4, 16, 16, 1)).astype("float32")
    y = rng.integers(0, 3, size=(4, 16, 16, 1))
    y[0, :4] = 255
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = str(tmp_path / "tce.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, TiltedCrossEntropy) and loaded.loss.ignore_index == 255
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)


def test_mirrored_strategy_is_mean_of_per_replica_tilts(rng):
    """Under 2 replicas the summed gradient objective is the mean of the sub-batch TCEs."""
    strategy = two_cpu_replicas()
    labels, logits = _data(rng, b=4)
    loss = TiltedCrossEntropy(t=2.0)

    def step(lab, log):
        return loss(lab, log)

    ds = tf.data.Dataset.from_tensors((labels, logits))
    batch = next(iter(strategy.experimental_distribute_dataset(ds)))
    per_replica = strategy.run(step, args=batch)
    total = float(strategy.reduce("SUM", per_replica, axis=None))
    expected = 0.5 * (reference(labels[:2], logits[:2], 2.0, "image")
                      + reference(labels[2:], logits[2:], 2.0, "image"))
    np.testing.assert_allclose(total, expected, rtol=1e-5)


def test_errors_name_object_argument_and_value(rng):
    labels, logits = _data(rng)
    with pytest.raises(ValueError, match=r"TiltedCrossEntropy: `level`.*'pixel'"):
        TiltedCrossEntropy(level="pixel")
    with pytest.raises(ValueError, match=r"TiltedCrossEntropy: `t`.*inf"):
        TiltedCrossEntropy(t=float("inf"))
    with pytest.raises(ValueError, match=r"TiltedCrossEntropy: `t`.*'1'"):
        TiltedCrossEntropy(t="1")
    with pytest.raises(ValueError, match=r"tilted_cross_entropy: `y_pred`.*rank 4"):
        tilted_cross_entropy(labels, logits[0], t=1.0)
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        TiltedCrossEntropy()(np.full_like(labels, 7), logits)
    with pytest.raises(ValueError, match=r"`y_true`.*4 channels"):
        TiltedCrossEntropy()(np.zeros((4, 6, 5, 3), "float32"), logits)
