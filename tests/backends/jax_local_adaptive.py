"""Run under KERAS_BACKEND=jax by test_jax.py (the backend is fixed when keras is imported).

The fast Locally Adaptive loss is keras.ops only (the sparse matmul is a TensorFlow-only
speed-up with a gather fallback): on JAX its values must match the per-pixel NumPy loop of
tests/losses/test_local_adaptive.py and jax.grad must match central differences of it.
"""

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import keras
import numpy as np

from keras_seg_extras.losses import LocallyAdaptiveLoss, locally_adaptive_loss

assert keras.backend.backend() == "jax", keras.backend.backend()

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location(
    "reference", os.path.join(HERE, os.pardir, "losses", "test_local_adaptive.py"))
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)  # reference_loss, numeric_gradient, make_inputs (NumPy)

rng = np.random.default_rng(0)
for kernel, stride, minkowski, normalize_by in [(1, 1, 3, "count"), (3, 1, 3, "count"),
                                                (5, 2, 1, "weight"), (5, 1, 3, "count")]:
    labels, logits = reference.make_inputs(rng)
    got = np.asarray(locally_adaptive_loss(
        labels, logits, kernel_size=kernel, stride=stride, minkowski_k=minkowski,
        normalize_by=normalize_by, ignore_index=255))
    expected = reference.reference_loss(labels, logits, kernel, stride, minkowski, normalize_by,
                                        255)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

labels, logits = reference.make_inputs(rng, batch=1, height=5, width=6, classes=3)


def total(z):
    return jnp.sum(locally_adaptive_loss(labels, z, kernel_size=3, ignore_index=255))


gradient = np.asarray(jax.grad(total)(jnp.asarray(logits)))
numeric = np.zeros(logits.shape)
for index in np.ndindex(*logits.shape):
    numeric[index] = reference.numeric_gradient(
        labels, logits, index, step=1e-4, kernel_size=3, stride=1, minkowski_k=3,
        normalize_by="count", ignore_index=255)
np.testing.assert_allclose(gradient, numeric, rtol=1e-3, atol=1e-4)

loss = LocallyAdaptiveLoss.from_config(LocallyAdaptiveLoss(kernel_size=3,
                                                           ignore_index=255).get_config())
np.testing.assert_allclose(float(loss(labels, logits)),
                           reference.reference_loss(labels, logits, 3, 1, 3, "count", 255).mean(),
                           rtol=1e-5)
print("jax backend ok", file=sys.stderr)
