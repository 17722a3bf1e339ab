"""One way to check a gradient: autodiff of our loss against finite differences of a reference.

``assert_gradient_matches(loss, reference, y_pred)`` differentiates ``loss(y_pred)`` (our code,
TensorFlow's GradientTape) and compares it elementwise with the central finite differences of
``reference(y_pred)`` (an independent float64 NumPy formula of the same value). A gradient
that is wrong while the value is right (a ``stop_gradient`` on a focal factor or a Dice
denominator, a detached normaliser, a swapped branch) fails here, whereas value tests and
"the gradient is finite" tests pass.
"""

import numpy as np
import tensorflow as tf


def central_differences(function, x, step=1e-6):
    """Gradient of the scalar ``function`` (float64 NumPy) at ``x`` by central differences."""
    x = np.array(x, dtype="float64")
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index]
        x[index] = original + step
        upper = function(x)
        x[index] = original - step
        lower = function(x)
        x[index] = original
        gradient[index] = (upper - lower) / (2.0 * step)
    return gradient


def autodiff_gradient(loss, x):
    """``(value, d value / d x)`` of the scalar ``loss(x)`` with a GradientTape in float32."""
    x = tf.constant(np.asarray(x, dtype="float32"))
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(tf.cast(loss(x), "float32"))
    return float(value), tape.gradient(value, x).numpy()


def assert_gradient_matches(loss, reference, x, rtol=2e-3, atol=1e-5, step=1e-6):
    """Value and every gradient entry of ``loss`` at ``x`` equal the reference's.

    ``atol`` is relative to the largest reference gradient entry (floored at 1), so the check
    is as strict for small losses as for large ones; the loss runs in float32, the finite
    differences in float64.
    """
    value, gradient = autodiff_gradient(loss, x)
    x64 = np.asarray(np.asarray(x, dtype="float32"), dtype="float64")
    expected_value = float(reference(x64))
    np.testing.assert_allclose(value, expected_value, rtol=1e-5, atol=1e-6,
                               err_msg="the loss value differs from the reference")
    expected = central_differences(reference, x64, step)
    assert np.all(np.isfinite(gradient)), "the autodiff gradient is not finite"
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(gradient, expected, rtol=rtol, atol=atol * scale,
                               err_msg="autodiff gradient differs from finite differences")
    return gradient, expected
