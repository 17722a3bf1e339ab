"""Run under KERAS_BACKEND=jax or torch by test_local_adaptive_backends.py (keras fixes its
backend at import, hence a subprocess per backend).

LocallyAdaptiveLoss on a backend other than TensorFlow, against the per-pixel NumPy loop of
tests/losses/test_local_adaptive.py: the default ("auto" -> "static") inside the backend's
compiled function (jax.jit; torch runs eagerly) and the explicit "fast" eagerly, values and
gradients; the same numbers from compiled train_on_batch, fit and evaluate as from a direct
call; and NaN, never a silent number, for NaN predictions and out-of-range labels.
"""

import importlib.util
import os
import sys

import keras
import numpy as np

from keras_seg_extras.losses import LocallyAdaptiveLoss, locally_adaptive_loss

BACKEND = keras.backend.backend()
assert BACKEND in ("jax", "torch"), BACKEND

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "reference", os.path.join(HERE, os.pardir, "losses", "test_local_adaptive.py"))
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)  # reference_loss, numeric_gradient, make_inputs (NumPy)


def compiled(function):
    """The backend's compiled form of a function of (labels, logits): jax.jit; torch eager."""
    if BACKEND == "jax":
        import jax

        return jax.jit(function)
    return function


def value_and_gradient(labels, logits, **kwargs):
    """Per-image loss and d(sum)/d(logits), compiled where the backend compiles."""
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(z, y):
            values = locally_adaptive_loss(y, z, **kwargs)
            return jnp.sum(values), values

        (_, values), grad = jax.jit(jax.value_and_grad(total, has_aux=True))(
            jnp.asarray(logits), jnp.asarray(labels))
        return np.asarray(values), np.asarray(grad)
    import torch

    z = torch.tensor(logits, requires_grad=True)
    values = locally_adaptive_loss(torch.tensor(labels), z, **kwargs)
    values.sum().backward()
    return values.detach().numpy(), z.grad.numpy()


rng = np.random.default_rng(0)
# (kernel, stride, minkowski, normaliser, also run compiled): "fast" eagerly on all four, the
# compiled default on one here (each compilation costs seconds; the gradient and the model
# steps below compile it with k = 3, stride 1, Minkowski 3).
for kernel, stride, minkowski, normalize_by, run_compiled in [
        (1, 1, 3, "count", False), (3, 1, 3, "count", False), (5, 2, 1, "weight", True),
        (5, 1, 3, "count", False)]:
    labels, logits = reference.make_inputs(rng)
    kwargs = dict(kernel_size=kernel, stride=stride, minkowski_k=minkowski,
                  normalize_by=normalize_by, ignore_index=255)
    expected = reference.reference_loss(labels, logits, kernel, stride, minkowski, normalize_by,
                                        255)
    if run_compiled:
        got = compiled(lambda y, z: locally_adaptive_loss(y, z, **kwargs))(labels, logits)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, rtol=1e-5,
                                   atol=1e-5)
    fast = locally_adaptive_loss(labels, logits, implementation="fast", **kwargs)  # eager
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fast), expected, rtol=1e-5, atol=1e-5)

# Gradients of both formulations against central differences of the NumPy loop.
labels, logits = reference.make_inputs(rng, batch=1, height=5, width=6, classes=3)
kwargs = dict(kernel_size=3, ignore_index=255)
numeric = np.zeros(logits.shape)
for index in np.ndindex(*logits.shape):
    numeric[index] = reference.numeric_gradient(
        labels, logits, index, step=1e-4, kernel_size=3, stride=1, minkowski_k=3,
        normalize_by="count", ignore_index=255)
for implementation in ("auto", "fast"):
    if implementation == "fast" and BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        grad = np.asarray(jax.grad(lambda z: jnp.sum(locally_adaptive_loss(
            labels, z, implementation="fast", **kwargs)))(jnp.asarray(logits)))  # eager
    else:
        _, grad = value_and_gradient(labels, logits, implementation=implementation, **kwargs)
    np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4, err_msg=implementation)

# Compiled train_on_batch, fit and evaluate log the direct call's value (SGD with learning
# rate 0 keeps the weights, so every step sees the same predictions).
labels, _ = reference.make_inputs(rng, batch=4, height=8, width=8)
images = rng.normal(size=(4, 8, 8, 3)).astype("float32")
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same")])
loss = LocallyAdaptiveLoss.from_config(LocallyAdaptiveLoss(kernel_size=3,
                                                           ignore_index=255).get_config())
model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss)
predictions = keras.ops.convert_to_numpy(model(images))
direct = float(keras.ops.convert_to_numpy(loss(labels, predictions)))
np.testing.assert_allclose(direct, reference.reference_loss(labels, predictions, 3, 1, 3,
                                                            "count", 255).mean(), rtol=1e-5)
logged = {"train_on_batch": float(model.train_on_batch(images, labels)),
          "fit": model.fit(images, labels, batch_size=4, verbose=0).history["loss"][0],
          "evaluate": float(model.evaluate(images, labels, batch_size=4, verbose=0))}
for method, value in logged.items():
    np.testing.assert_allclose(value, direct, rtol=1e-5, err_msg=method)

# Faults on the compiled step: never a silent number.
nan_images = images.copy()
nan_images[1, 2, 3] = np.nan
assert np.isnan(model.evaluate(nan_images, labels, batch_size=4, verbose=0))
bad_labels = np.where(labels == 2, 7, labels)
try:
    bad = model.evaluate(images, bad_labels, batch_size=4, verbose=0)
except Exception as error:  # a host-side check may stop the step with the label message
    assert "integer labels must lie in [0, 4)" in str(error), error
else:
    assert np.isnan(bad), bad
if BACKEND == "jax":
    import jax

    try:
        jax.jit(lambda y, z: locally_adaptive_loss(y, z, implementation="fast"))(labels,
                                                                                 predictions)
    except ValueError as error:
        assert "`implementation`" in str(error) and "'static'" in str(error), error
    else:
        raise AssertionError("'fast' under jax.jit must fail with a clear error")
print(f"{BACKEND} backend ok", file=sys.stderr)
