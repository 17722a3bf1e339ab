"""Soft focal, class-balanced focal and reduced focal losses against NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_seg_extras as kse
from keras_seg_extras.losses import (
    ClassBalancedFocalLoss,
    ReducedFocalLoss,
    SoftFocalLoss,
    class_balanced_focal_loss,
    reduced_focal_loss,
    soft_focal_loss,
)

# ----------------------------------------------------------------------------- references


def ref_log_sigmoid(z):
    return -np.logaddexp(0.0, -z)


def ref_p_hat_and_log(y, logits=None, probs=None):
    """p̂ = 1 - |y - p| and log p̂ in float64 (log-sigmoid where y is exactly 0 or 1)."""
    if logits is not None:
        z = np.asarray(logits, dtype="float64")
        p = 1.0 / (1.0 + np.exp(-z))
        hard_log = np.where(y == 1, ref_log_sigmoid(z), ref_log_sigmoid(-z))
    else:
        eps = 1e-7
        p = np.clip(np.asarray(probs, dtype="float64"), eps, 1 - eps)
        hard_log = np.where(y == 1, np.log(p), np.log(1 - p))
    p_hat = 1.0 - np.abs(y - p)
    hard = (y == 0) | (y == 1)
    log_p_hat = np.where(hard, hard_log, np.log(np.where(hard, 1.0, p_hat)))
    return p_hat, log_p_hat


def ref_soft_focal(y, gamma, weights=None, **pred):
    p_hat, log_p_hat = ref_p_hat_and_log(y, **pred)
    terms = -((1.0 - p_hat) ** gamma) * log_p_hat
    if weights is not None:
        terms = terms * np.asarray(weights)
    return terms.sum(-1)


def ref_cb_weights(counts, beta, normalize=True):
    counts = np.asarray(counts, dtype="float64")
    w = (1.0 - beta) / (1.0 - beta ** counts)
    return w / w.sum() * len(counts) if normalize else w


def ref_reduced(y, threshold, gamma, weights=None, **pred):
    p_hat, log_p_hat = ref_p_hat_and_log(y, **pred)
    factor = np.where(p_hat < threshold, 1.0, ((1.0 - p_hat) / threshold) ** gamma)
    terms = -factor * log_p_hat
    if weights is not None:
        terms = terms * np.asarray(weights)
    return terms.sum(-1)


def soft_targets(rng, shape):
    """Random soft targets with exact 0s and 1s and the paper's 0.25/0.5 values mixed in."""
    y = rng.random(shape)
    pick = rng.integers(0, 5, shape)
    y = np.where(pick == 0, 0.0, np.where(pick == 1, 1.0, np.where(pick == 2, 0.25, y)))
    return y.astype("float32")


def grad_of(loss_fn, y, logits):
    z = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(loss_fn(y, z))
    return value.numpy(), tape.gradient(value, z).numpy()


# ----------------------------------------------------------------------------- soft focal


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.0])
@pytest.mark.parametrize("from_logits", [True, False])
def test_soft_focal_matches_reference(rng, gamma, from_logits):
    y = soft_targets(rng, (6, 5))
    if from_logits:
        pred = (rng.normal(size=(6, 5)) * 4).astype("float32")
        expected = ref_soft_focal(y, gamma, logits=pred)
    else:
        pred = rng.random((6, 5)).astype("float32")
        pred[0, :2] = [0.0, 1.0]
        expected = ref_soft_focal(y, gamma, probs=pred)
    got = soft_focal_loss(y, pred, gamma=gamma, from_logits=from_logits)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)
    weights = rng.random(5)
    got = SoftFocalLoss(gamma, from_logits, class_weights=weights, reduction="none")(y, pred)
    key = "logits" if from_logits else "probs"
    np.testing.assert_allclose(np.asarray(got), ref_soft_focal(y, gamma, weights, **{key: pred}),
                               rtol=1e-5, atol=1e-5)
    mean = SoftFocalLoss(gamma, from_logits)(y, pred)
    np.testing.assert_allclose(float(mean), expected.mean(), rtol=1e-5)


def test_paper_figure_one_example():
    # Soft labels of Fig. 1 (flood 1, smoke 0.25, none 0.25); p̂ = 1 - |y - p|.
    y = np.array([[1.0, 0.25, 0.25, 0.0]], "float32")
    p = np.array([[0.8, 0.5, 0.1, 0.3]], "float32")
    p_hat = np.array([0.8, 0.75, 0.85, 0.7])
    expected = -np.sum((1 - p_hat) ** 2 * np.log(p_hat))
    np.testing.assert_allclose(float(soft_focal_loss(y, p)[0]), expected, rtol=1e-6)


def test_hard_targets_equal_sigmoid_focal_without_alpha(rng):
    y = (rng.random((8, 6)) < 0.4).astype("float32")
    z = (rng.normal(size=(8, 6)) * 3).astype("float32")
    p = 1 / (1 + np.exp(-z.astype("float64")))
    p_t = np.where(y == 1, p, 1 - p)
    expected = np.sum(-((1 - p_t) ** 2) * np.log(p_t), axis=-1)
    got = soft_focal_loss(y, z, gamma=2.0, from_logits=True)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    keras_focal = keras.losses.BinaryFocalCrossentropy(
        apply_class_balancing=False, gamma=2.0, from_logits=True, reduction=None)(y, z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(keras_focal) * 6, rtol=1e-4)


def test_gamma_zero_is_summed_binary_cross_entropy(rng):
    y = (rng.random((7, 4)) < 0.5).astype("float32")
    z = (rng.normal(size=(7, 4)) * 5).astype("float32")
    p = 1 / (1 + np.exp(-z.astype("float64")))
    bce = -(y * np.log(p) + (1 - y) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(np.asarray(soft_focal_loss(y, z, gamma=0.0, from_logits=True)),
                               bce, rtol=1e-5)


def test_extreme_logits_hard_targets_exact_values():
    y = np.array([[1.0, 0.0, 1.0, 0.0]], "float32")
    z = np.array([[-100.0, 100.0, 100.0, -100.0]], "float32")
    # Wrong by 100 on the first two: -log σ(-100) = 100 (focal factor 1); right ones ~0.
    got = np.asarray(soft_focal_loss(y, z, gamma=2.0, from_logits=True))
    np.testing.assert_allclose(got, [200.0], rtol=1e-6)


LOSSES = {
    "soft": lambda **kw: SoftFocalLoss(reduction="none", **kw),
    "class_balanced": lambda **kw: ClassBalancedFocalLoss([5, 50, 500, 5000], beta=0.99,
                                                          reduction="none", **kw),
    "reduced": lambda **kw: ReducedFocalLoss(threshold=0.3, reduction="none", **kw),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_finite_values_and_gradients_at_extreme_logits(name, gamma):
    loss = LOSSES[name](gamma=gamma, from_logits=True)
    y = np.array([[0.0, 1.0, 0.3, 1.0], [1.0, 0.0, 0.7, 0.0], [0.0, 1.0, 0.0, 1.0]], "float32")
    z = np.array([[100.0, -100.0, 100.0, 100.0], [-100.0, 100.0, -100.0, -100.0],
                  [0.0, 0.0, 0.3, 80.0]], "float32")
    value, grad = grad_of(loss, y, z)
    assert np.isfinite(value) and value > 100
    assert np.all(np.isfinite(grad))
    # A confidently wrong hard target still pushes the logit the right way.
    assert grad[0, 0] > 0 and grad[0, 1] < 0


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs(rng, name, dtype):
    loss = LOSSES[name](from_logits=True)
    y = soft_targets(rng, (4, 4))
    z = (rng.normal(size=(4, 4)) * 5).astype("float32")
    z[0] = [100, -100, 60, -60]
    z_low = tf.cast(z, dtype)
    y_low = tf.cast(y, dtype)
    with tf.GradientTape() as tape:
        tape.watch(z_low)
        value = loss(y_low, z_low)
        total = tf.reduce_sum(value)
    grad = tape.gradient(total, z_low)
    assert value.dtype == tf.float32
    assert np.all(np.isfinite(value.numpy()))
    assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))
    reference = LOSSES[name](from_logits=True)(tf.cast(y_low, "float32"), tf.cast(z_low, "float32"))
    np.testing.assert_allclose(value.numpy(), reference.numpy(), rtol=1e-6)


def test_probabilities_exactly_zero_and_one_are_finite():
    y = np.array([[1.0, 0.0, 0.5, 1.0]], "float32")
    p = np.array([[0.0, 1.0, 1.0, 1.0]], "float32")
    for loss in (SoftFocalLoss(reduction="none"), ReducedFocalLoss(reduction="none"),
                 ClassBalancedFocalLoss([1, 2, 3, 4], reduction="none")):
        value, grad = grad_of(loss, y, p)
        assert np.isfinite(value) and np.all(np.isfinite(grad))


# ----------------------------------------------------------------------------- class-balanced


@pytest.mark.parametrize("normalize", [True, False])
def test_class_balanced_matches_reference(rng, normalize):
    counts = [24009, 33120, 67, 116, 1756]  # a slice of paper 000, table 1
    y = soft_targets(rng, (6, 5))
    z = (rng.normal(size=(6, 5)) * 3).astype("float32")
    extra = [1.0, 1.0, 1.0, 0.1, 0.01]
    for beta in (0.0, 0.999, 0.9999):
        w = ref_cb_weights(counts, beta, normalize) * np.asarray(extra)
        expected = ref_soft_focal(y, 2.0, w, logits=z)
        got = ClassBalancedFocalLoss(counts, beta=beta, from_logits=True, class_weights=extra,
                                     normalize=normalize, reduction="none")(y, z)
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)
        got_fn = class_balanced_focal_loss(y, z, counts, beta=beta, from_logits=True,
                                           class_weights=extra, normalize=normalize)
        np.testing.assert_allclose(np.asarray(got_fn), expected, rtol=1e-5, atol=1e-6)


def test_class_balanced_with_equal_counts_equals_soft_focal(rng):
    y = soft_targets(rng, (5, 4))
    z = (rng.normal(size=(5, 4)) * 3).astype("float32")
    soft = np.asarray(SoftFocalLoss(from_logits=True, reduction="none")(y, z))
    balanced = ClassBalancedFocalLoss([300] * 4, beta=0.999, from_logits=True, reduction="none")
    np.testing.assert_allclose(np.asarray(balanced(y, z)), soft, rtol=1e-6)
    raw = ClassBalancedFocalLoss([300] * 4, beta=0.999, from_logits=True, normalize=False,
                                 reduction="none")
    constant = (1 - 0.999) / (1 - 0.999 ** 300)
    np.testing.assert_allclose(np.asarray(raw(y, z)), soft * constant, rtol=1e-5)


# ----------------------------------------------------------------------------- reduced focal


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("from_logits", [True, False])
def test_reduced_focal_matches_reference(rng, threshold, from_logits):
    y = soft_targets(rng, (8, 5))
    if from_logits:
        pred = (rng.normal(size=(8, 5)) * 3).astype("float32")
        expected = ref_reduced(y, threshold, 2.0, logits=pred)
    else:
        pred = rng.random((8, 5)).astype("float32")
        expected = ref_reduced(y, threshold, 2.0, probs=pred)
    got = reduced_focal_loss(y, pred, threshold=threshold, from_logits=from_logits)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_reduced_focal_is_cross_entropy_below_threshold(rng):
    # Hard targets, predictions on the wrong side: p̂ < th everywhere -> plain CE.
    y = (rng.random((6, 5)) < 0.5).astype("float32")
    p = np.where(y == 1, rng.uniform(0.01, 0.45, y.shape), rng.uniform(0.55, 0.99, y.shape))
    p = p.astype("float32")
    p64 = p.astype("float64")
    ce = -(y * np.log(p64) + (1 - y) * np.log(1 - p64)).sum(-1)
    got = ReducedFocalLoss(threshold=0.5, gamma=2.0, reduction="none")(y, p)
    np.testing.assert_allclose(np.asarray(got), ce, rtol=1e-5)


def test_reduced_focal_is_the_original_not_the_literal_equations():
    # y = 1, p = 0.9 > th: the original down-weights it ((0.1/0.5)^2 = 0.04); eqs. 4-6 read
    # literally (w1 = 1 for p > th) would give the plain -log 0.9.
    y = np.array([[1.0, 0.0]], "float32")
    p = np.array([[0.9, 0.9]], "float32")
    got = np.asarray(ReducedFocalLoss(threshold=0.5, gamma=2.0, reduction="none")(y, p))[0]
    original = 0.04 * -np.log(0.9) + -np.log(0.1)  # second class: p̂ = 0.1 < th -> plain CE
    literal = -np.log(0.9) + (0.9 / 0.5) ** 2 * -np.log(0.1)
    np.testing.assert_allclose(got, original, rtol=1e-5)
    assert abs(got - literal) > 1.0


# ----------------------------------------------------------------------------- config, errors


@pytest.mark.parametrize("loss", [
    SoftFocalLoss(gamma=1.5, from_logits=True, class_weights=[1.0, 0.1, 0.01]),
    ClassBalancedFocalLoss([10, 20, 30], beta=0.99, gamma=1.0, class_weights=[1, 1, 0.1],
                           normalize=False),
    ReducedFocalLoss(threshold=0.3, gamma=2.0, from_logits=True),
])
def test_get_config_round_trip(rng, loss):
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    y = soft_targets(rng, (3, 3))
    z = rng.normal(size=(3, 3)).astype("float32")
    np.testing.assert_allclose(float(again(y, z)), float(loss(y, z)), rtol=1e-6)


def test_keras_save_and_load_with_losses_and_metrics(tmp_path, rng):
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3)(inputs)
    model = keras.Model(inputs, outputs)
    loss = kse.losses.DropWorst(ClassBalancedFocalLoss([3, 30, 300], from_logits=True), k=1)
    model.compile(optimizer="sgd", loss=loss,
                  metrics=[kse.metrics.LabelRankingAveragePrecision(),
                           kse.metrics.MeanAveragePrecision(3, capacity=16)])
    x = rng.normal(size=(8, 4)).astype("float32")
    y = soft_targets(rng, (8, 3))
    model.train_on_batch(x, y)
    before = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, kse.losses.DropWorst)
    assert isinstance(loaded.loss.loss, ClassBalancedFocalLoss)
    after = loaded.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    for key in ("loss", "lrap", "map"):
        np.testing.assert_allclose(after[key], before[key], rtol=1e-5)


@pytest.mark.parametrize("build, argument, value", [
    (lambda: SoftFocalLoss(gamma=-1.0), "gamma", "-1.0"),
    (lambda: SoftFocalLoss(class_weights=[1.0, -0.5]), "class_weights", "-0.5"),
    (lambda: ClassBalancedFocalLoss([10, 0, 5]), "class_counts", "0"),
    (lambda: ClassBalancedFocalLoss([10, 5], beta=1.0), "beta", "1.0"),
    (lambda: ClassBalancedFocalLoss([10, 5], beta=-0.1), "beta", "-0.1"),
    (lambda: ClassBalancedFocalLoss([10, 5], class_weights=[1.0]), "class_weights", "1.0"),
    (lambda: ReducedFocalLoss(threshold=0.0), "threshold", "0.0"),
    (lambda: ReducedFocalLoss(threshold=1.0), "threshold", "1.0"),
])
def test_construction_errors(build, argument, value):
    with pytest.raises(ValueError, match=argument) as info:
        build()
    assert value in str(info.value)
    assert "Loss" in str(info.value)


def test_call_errors_name_the_loss_and_the_problem():
    y = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match=r"SoftFocalLoss: .*targets must lie in \[0, 1\].*1.5"):
        SoftFocalLoss()(y + 1.5, y)
    graph = tf.function(SoftFocalLoss(), input_signature=[tf.TensorSpec((None, 3))] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="SoftFocalLoss"):
        graph(y - 0.5, y)
    with pytest.raises(ValueError, match=r"ReducedFocalLoss: `y_true`.*shape"):
        ReducedFocalLoss()(np.zeros((2, 4), "float32"), y)
    with pytest.raises(ValueError, match=r"SoftFocalLoss: `class_weights`.*3"):
        SoftFocalLoss(class_weights=[1.0, 1.0])(y, y)
    with pytest.raises(ValueError, match=r"ClassBalancedFocalLoss: `class_counts`.*3"):
        ClassBalancedFocalLoss([1, 2])(y, y)
    with pytest.raises(ValueError, match=r"soft_focal_loss: `y_pred`.*rank"):
        soft_focal_loss(np.zeros(3), np.zeros(3))
