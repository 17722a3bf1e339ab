"""LocallyAdaptiveLoss (paper 004, eqs. 2-5) against a slow, obvious per-pixel NumPy loop."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_seg_extras as kse
from keras_seg_extras.losses import LocallyAdaptiveLoss, locally_adaptive_loss
from tests.losses import references as R

EPS = 1e-6  # the documented epsilon added to the variance of the z-score


def reference_loss(labels, logits, kernel_size, stride, minkowski_k, normalize_by, ignore_index):
    """Eqs. 2-5 of paper 004 written as loops (the shared NumPy reference), per image."""
    return R.locally_adaptive(labels, logits, kernel_size, minkowski_k, ignore_index, stride,
                              normalize_by, eps=EPS)


def make_inputs(rng, batch=2, height=9, width=11, classes=4, ignore_index=255):
    """Piecewise-constant regions (interiors) with noisy pixels, ignored pixels and borders."""
    labels = np.zeros((batch, height, width), "int64")
    labels[:, :, width // 2:] = 1
    labels[:, height // 2:, : width // 3] = 2
    noise = rng.random(labels.shape) < 0.2
    labels[noise] = rng.integers(0, classes, noise.sum())
    if ignore_index is not None:
        labels[rng.random(labels.shape) < 0.1] = ignore_index
        labels[-1, 0, :] = ignore_index  # an ignored row on the border
    logits = rng.normal(size=(batch, height, width, classes)).astype("float32") * 2.0
    return labels, logits


def value_and_grad(labels, logits, **kwargs):
    logits = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = locally_adaptive_loss(labels, logits, **kwargs)
        total = tf.reduce_sum(value)
    return value.numpy(), tape.gradient(total, logits).numpy()


@pytest.mark.parametrize("kernel_size,stride,minkowski_k,normalize_by", [
    combo for combo in itertools.product((1, 3, 5), (1, 2), (1, 3), ("count", "weight"))
])
def test_matches_per_pixel_reference_and_implementations_agree(
        rng, kernel_size, stride, minkowski_k, normalize_by):
    labels, logits = make_inputs(rng)
    kwargs = dict(kernel_size=kernel_size, stride=stride, minkowski_k=minkowski_k,
                  normalize_by=normalize_by, ignore_index=255)
    expected = reference_loss(labels, logits, **kwargs)
    fast, fast_grad = value_and_grad(labels, logits, implementation="fast", **kwargs)
    static, static_grad = value_and_grad(labels, logits, implementation="static", **kwargs)
    patches, patches_grad = value_and_grad(labels, logits, implementation="patches", **kwargs)
    np.testing.assert_allclose(fast, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(patches, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast_grad, patches_grad, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static_grad, patches_grad, rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(fast_grad)) and np.abs(fast_grad).sum() > 0


def test_random_labels_worst_case_uses_both_boundary_modes(rng):
    # Two classes at random: every centre is on a boundary; some have more same-label
    # neighbours than differing ones (correction mode), others fewer (direct mode).
    labels = rng.integers(0, 2, (2, 12, 10))
    logits = rng.normal(size=(2, 12, 10, 3)).astype("float32")
    padded = np.pad(labels, ((0, 0), (2, 2), (2, 2)), constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5), axis=(1, 2))
    n_same = (windows == labels[..., None, None]).sum((-1, -2))
    n_diff = ((windows >= 0) & (windows != labels[..., None, None])).sum((-1, -2))
    assert np.any(n_same > n_diff) and np.any(n_same <= n_diff)
    kwargs = dict(kernel_size=5, minkowski_k=3)
    fast, fast_grad = value_and_grad(labels, logits, implementation="fast", **kwargs)
    static, static_grad = value_and_grad(labels, logits, implementation="static", **kwargs)
    patches, patches_grad = value_and_grad(labels, logits, implementation="patches", **kwargs)
    np.testing.assert_allclose(fast, reference_loss(labels, logits, 5, 1, 3, "count", None),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast, patches, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static, patches, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fast_grad, patches_grad, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(static_grad, patches_grad, rtol=1e-5, atol=1e-5)


def numeric_gradient(labels, logits, index, step=1e-5, **kwargs):
    """Central difference of the summed reference loss with respect to logits[index]."""
    plus, minus = logits.astype("float64"), logits.astype("float64")
    plus[index] += step
    minus[index] -= step
    return (reference_loss(labels, plus, **kwargs).sum()
            - reference_loss(labels, minus, **kwargs).sum()) / (2 * step)


@pytest.mark.parametrize("implementation,stride", [("fast", 1), ("static", 1), ("static", 2)])
def test_gradient_matches_finite_differences_of_reference(rng, implementation, stride):
    labels, logits = make_inputs(rng, batch=1, height=5, width=6, classes=3)
    kwargs = dict(kernel_size=3, stride=stride, minkowski_k=3, normalize_by="count",
                  ignore_index=255)
    _, grad = value_and_grad(labels, logits, implementation=implementation, **kwargs)
    for index in [(0, 1, 1, 0), (0, 2, 3, 2), (0, 4, 5, 1), (0, 3, 0, 1)]:
        np.testing.assert_allclose(grad[index], numeric_gradient(labels, logits, index, **kwargs),
                                   rtol=1e-3, atol=1e-5)


def test_minkowski_mean_runs_per_image(rng):
    labels, logits = make_inputs(rng, batch=3)
    together = locally_adaptive_loss(labels, logits, ignore_index=255).numpy()
    alone = [locally_adaptive_loss(labels[b:b + 1], logits[b:b + 1], ignore_index=255).numpy()[0]
             for b in range(3)]
    np.testing.assert_allclose(together, alone, rtol=1e-6)
    loss = LocallyAdaptiveLoss(ignore_index=255)
    np.testing.assert_allclose(float(loss(labels, logits)), np.mean(alone), rtol=1e-5)


@pytest.mark.parametrize("implementation", ["fast", "static", "patches"])
def test_edge_cases(rng, implementation):
    kwargs = dict(kernel_size=3, ignore_index=255, implementation=implementation)
    # An image with only ignored pixels gives 0 and zero gradient; a one-class image has no
    # boundary at all; logits of +-100 and constant prediction vectors stay finite.
    labels = np.full((4, 6, 6), 255)
    labels[1] = 2
    labels[2] = rng.integers(0, 3, (6, 6))
    labels[3] = 1
    logits = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    logits[2] = 100.0 * np.sign(logits[2])
    logits[3] = 0.7  # constant vectors: x = 0, f = 0, L^S = log C
    value, grad = value_and_grad(labels, logits, **kwargs)
    expected = reference_loss(labels, logits, 3, 1, 3, "count", 255)
    np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5)
    assert value[0] == 0.0 and np.all(grad[0] == 0.0)
    np.testing.assert_allclose(value[3], np.log(3.0), rtol=1e-6)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_give_finite_float32(rng, dtype):
    labels, logits = make_inputs(rng)
    low = tf.cast(tf.constant(logits * 20.0), dtype)
    with tf.GradientTape() as tape:
        tape.watch(low)
        value = locally_adaptive_loss(labels, low, ignore_index=255)
        total = tf.reduce_sum(value)
    grad = tape.gradient(total, low)
    assert value.dtype == tf.float32
    assert np.all(np.isfinite(value.numpy()))
    assert np.all(np.isfinite(tf.cast(grad, "float32").numpy()))
    expected = reference_loss(labels, tf.cast(low, "float32").numpy(), 5, 1, 3, "count", 255)
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_label_forms_and_probabilities(rng):
    labels, logits = make_inputs(rng, ignore_index=None)
    base = locally_adaptive_loss(labels, logits).numpy()
    np.testing.assert_allclose(locally_adaptive_loss(labels[..., None], logits), base, rtol=1e-6)
    onehot = np.eye(4, dtype="float32")[labels]
    np.testing.assert_allclose(locally_adaptive_loss(onehot, logits), base, rtol=1e-6)
    probabilities = keras.ops.softmax(logits, axis=-1)
    np.testing.assert_allclose(locally_adaptive_loss(labels, probabilities, from_logits=False),
                               base, rtol=1e-4)


def test_config_round_trip_and_keras_file(tmp_path, rng):
    loss = LocallyAdaptiveLoss(kernel_size=3, stride=2, minkowski_k=2, normalize_by="weight",
                               ignore_index=255, implementation="patches")
    assert LocallyAdaptiveLoss().get_config()["implementation"] == "auto"
    clone = LocallyAdaptiveLoss.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    assert isinstance(keras.losses.deserialize(keras.losses.serialize(loss)), LocallyAdaptiveLoss)

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    model.compile(optimizer="sgd", loss=LocallyAdaptiveLoss(kernel_size=3, ignore_index=255))
    images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    labels, _ = make_inputs(rng, batch=4, height=8, width=8)
    history = model.fit(images, labels, batch_size=2, epochs=1, verbose=0)  # graph mode
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.loss, LocallyAdaptiveLoss)
    assert reloaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(reloaded.evaluate(images, labels, verbose=0),
                               model.evaluate(images, labels, verbose=0), rtol=1e-5)


def test_exported_from_package():
    assert kse.losses.LocallyAdaptiveLoss is LocallyAdaptiveLoss
    assert kse.losses.locally_adaptive_loss is locally_adaptive_loss


@pytest.mark.parametrize("kwargs,argument", [
    (dict(kernel_size=4), "kernel_size"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(stride=0), "stride"),
    (dict(minkowski_k=0.5), "minkowski_k"),
    (dict(normalize_by="mean"), "normalize_by"),
    (dict(implementation="slow"), "implementation"),
    (dict(ignore_index=2.5), "ignore_index"),
    (dict(from_logits="yes"), "from_logits"),
])
def test_bad_arguments_name_object_argument_and_value(kwargs, argument):
    with pytest.raises(ValueError, match=f"LocallyAdaptiveLoss: `{argument}`") as info:
        LocallyAdaptiveLoss(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(info.value)


def test_bad_inputs(rng, monkeypatch):
    labels, logits = make_inputs(rng, ignore_index=None)
    with pytest.raises(ValueError, match=r"LocallyAdaptiveLoss.*label values \[7\]"):
        locally_adaptive_loss(np.where(labels == 3, 7, labels), logits)
    with pytest.raises(ValueError, match="LocallyAdaptiveLoss: `y_pred`.*rank 4"):
        locally_adaptive_loss(labels, logits[0])
    with pytest.raises(ValueError, match="LocallyAdaptiveLoss: `y_pred`.*at least 2 channels"):
        locally_adaptive_loss(labels, logits[..., :1])
    with pytest.raises(ValueError, match="LocallyAdaptiveLoss: `y_true`.*spatial size"):
        locally_adaptive_loss(labels[:, :-1], logits)
    with pytest.raises(ValueError, match="LocallyAdaptiveLoss: `y_true`.*4 channels"):
        locally_adaptive_loss(np.zeros(labels.shape + (3,)), logits)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="'patches'.*TensorFlow backend.*'jax'"):
        locally_adaptive_loss(labels, logits, implementation="patches")


def test_fast_is_right_in_a_tf1_style_graph(rng):
    # Inside a tf.compat.v1 Graph (outside tf.function) `tensor == tensor` is Python identity,
    # not elementwise: the fast path must compare with ops.equal to stay right there too.
    labels, logits = make_inputs(rng, ignore_index=None)
    expected = reference_loss(labels, logits, 3, 1, 3, "count", None)
    with tf.Graph().as_default() as graph:
        value = locally_adaptive_loss(tf.constant(labels), tf.constant(logits), kernel_size=3)
        with tf.compat.v1.Session(graph=graph) as session:
            np.testing.assert_allclose(session.run(value), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("path", ["_row_sums_sparse", "_row_sums_gather"])
def test_weighted_row_sums_both_paths_match_numpy_with_gradient(rng, path):
    # The boundary correction of the fast version: out[t] = sum_p w_p x[source_p] over the pairs
    # p aimed at t. TensorFlow uses a sparse matmul; other backends the gather path.
    from keras_seg_extras.losses import local_adaptive

    x = rng.normal(size=(7, 3)).astype("float32")
    source = np.array([0, 2, 2, 6, 1, 0], "int32")
    target = np.array([0, 0, 1, 3, 3, 4], "int32")  # sorted, as the fast version emits them
    weight = rng.normal(size=6).astype("float32")
    expected = np.zeros((5, 3), "float32")
    for s, t, w in zip(source, target, weight):
        expected[t] += w * x[s]
    upstream = rng.normal(size=(5, 3)).astype("float32")
    expected_grad = np.zeros_like(x)
    for s, t, w in zip(source, target, weight):
        expected_grad[s] += w * upstream[t]
    variable = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(variable)
        out = getattr(local_adaptive, path)(variable, tf.constant(source), tf.constant(target),
                                            tf.constant(weight), 5)
        total = tf.reduce_sum(out * upstream)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tf.convert_to_tensor(tape.gradient(total, variable)), expected_grad,
                               rtol=1e-6, atol=1e-6)


def test_batch_without_any_boundary_centre(rng):
    # No pairs at all: the sparse correction is an empty matrix and every centre is interior.
    labels = np.ones((2, 5, 7), "int64")
    logits = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    value, grad = value_and_grad(labels, logits, kernel_size=5)
    np.testing.assert_allclose(value, reference_loss(labels, logits, 5, 1, 3, "count", None),
                               rtol=1e-5, atol=1e-5)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# ----------------------------------------------------------------------------- compiled paths


def compiled_value_and_grad(labels, logits, jit_compile, **kwargs):
    @tf.function(jit_compile=jit_compile)
    def step(y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            value = locally_adaptive_loss(y, z, **kwargs)
            total = tf.reduce_sum(value)
        return value, tape.gradient(total, z)

    value, grad = step(tf.constant(labels), tf.constant(logits))
    return value.numpy(), grad.numpy()


@pytest.mark.parametrize("kernel_size,stride,minkowski_k,normalize_by", [(3, 2, 3, "weight")])
def test_default_under_xla_matches_reference_values_and_gradients(
        rng, kernel_size, stride, minkowski_k, normalize_by):
    labels, logits = make_inputs(rng)
    kwargs = dict(kernel_size=kernel_size, stride=stride, minkowski_k=minkowski_k,
                  normalize_by=normalize_by, ignore_index=255)
    value, grad = compiled_value_and_grad(labels, logits, True, **kwargs)  # "auto"
    np.testing.assert_allclose(value, reference_loss(labels, logits, **kwargs), rtol=1e-5,
                               atol=1e-5)
    _, patches_grad = value_and_grad(labels, logits, implementation="patches", **kwargs)
    np.testing.assert_allclose(grad, patches_grad, rtol=1e-5, atol=1e-5)


def test_auto_is_fast_outside_xla_and_static_inside(rng, monkeypatch):
    from keras_seg_extras.losses import local_adaptive

    used = []
    for name in ("_fast", "_static"):
        original = getattr(local_adaptive, name)
        monkeypatch.setattr(local_adaptive, name, lambda *args, original=original, name=name: (
            used.append(name), original(*args))[1])
    labels, logits = make_inputs(rng, ignore_index=None)
    kwargs = dict(kernel_size=3)
    locally_adaptive_loss(labels, logits, **kwargs)
    compiled_value_and_grad(labels, logits, False, **kwargs)
    compiled_value_and_grad(labels, logits, True, **kwargs)
    assert used == ["_fast", "_fast", "_static"]
    with pytest.raises(ValueError, match="LocallyAdaptiveLoss: `implementation`.*static shapes"
                                         ".*'static'; received 'fast'"):
        compiled_value_and_grad(labels, logits, True, implementation="fast", **kwargs)


def small_model(jit_compile, **loss_kwargs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")])
    model.compile(optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile,
                  loss=LocallyAdaptiveLoss(kernel_size=3, ignore_index=255, **loss_kwargs))
    return model


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_train_fit_evaluate_log_the_direct_value(rng, jit_compile):
    images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    labels, _ = make_inputs(rng, batch=4, height=8, width=8)
    model = small_model(jit_compile)  # SGD with learning rate 0: the same predictions each step
    predictions = model(images).numpy()
    direct = float(model.loss(labels, predictions))
    np.testing.assert_allclose(
        direct, reference_loss(labels, predictions, 3, 1, 3, "count", 255).mean(), rtol=1e-5)
    logged = {"train_on_batch": float(model.train_on_batch(images, labels)),
              "fit": model.fit(images, labels, batch_size=4, verbose=0).history["loss"][0],
              "evaluate": float(model.evaluate(images, labels, batch_size=4, verbose=0))}
    for method, value in logged.items():
        np.testing.assert_allclose(value, direct, rtol=1e-5, err_msg=method)


def test_bad_labels_stop_every_tensorflow_path(rng):
    images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    labels, _ = make_inputs(rng, batch=4, height=8, width=8)
    bad = np.where(labels == 2, 7, labels)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 4\)"):
        small_model(False).fit(images, bad, batch_size=4, verbose=0)  # graph: an assertion
    model = small_model(True)  # XLA drops assertions: the loss is NaN, TerminateOnNaN stops
    history = model.fit(images, bad, batch_size=2, epochs=3, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert np.isnan(history.history["loss"][0]) and len(history.history["loss"]) == 1
    onehot = np.eye(4, dtype="float32")[np.where(labels == 255, 0, labels)]
    onehot[1, 2, 3] = [0.0, 1.5, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"LocallyAdaptiveLoss.*\[0, 1\].*1\.5"):
        locally_adaptive_loss(onehot, images[..., :1].repeat(4, -1))
    value, _ = compiled_value_and_grad(onehot, rng.normal(size=(4, 8, 8, 4)).astype("float32"),
                                       True)
    assert np.isnan(value[1]) and np.all(np.isfinite(value[[0, 2, 3]]))


@pytest.mark.parametrize("minkowski_k", [1, 3])
@pytest.mark.parametrize("implementation", ["fast", "static", "patches", "xla"])
def test_nan_or_inf_prediction_gives_nan_never_zero(rng, implementation, minkowski_k):
    # Image 0: NaN at a valid pixel; image 1: an infinity at an ignored pixel; image 2 clean.
    labels, logits = make_inputs(rng, batch=3)
    labels[1, 4, 4] = 255
    logits[0, 2, 3, 1] = np.nan
    logits[1, 4, 4, 0] = np.inf
    kwargs = dict(kernel_size=3, minkowski_k=minkowski_k, ignore_index=255)
    if implementation == "xla":
        value, _ = compiled_value_and_grad(labels, logits, True, **kwargs)
    else:
        value = locally_adaptive_loss(labels, logits, implementation=implementation,
                                      **kwargs).numpy()
    assert np.isnan(value[0]) and np.isnan(value[1])
    np.testing.assert_allclose(value[2], reference_loss(labels[2:], logits[2:], 3, 1, minkowski_k,
                                                        "count", 255)[0], rtol=1e-5)
