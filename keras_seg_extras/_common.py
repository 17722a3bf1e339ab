"""Conventions shared by every loss, metric, layer and callback of the package.

One place for: registration with Keras serialisation, argument validation with errors that
name the object, the argument and the value, float32 computation whatever the input dtype,
and the normalisation of segmentation labels (integer maps or one-hot) with ``ignore_index``.
"""

import numbers

import keras
import numpy as np
from keras import ops

PACKAGE = "keras_seg_extras"


def register(cls):
    """Register ``cls`` with Keras serialisation under the package name.

    A saved ``.keras`` model that uses it then loads with plain ``keras.saving.load_model``
    once ``keras_seg_extras`` is imported.
    """
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


# ----------------------------------------------------------------------------- arguments


def fail(owner, argument, value, expectation):
    """Raise the package's standard ``ValueError``: which object, which argument, what value."""
    raise ValueError(f"{owner}: `{argument}` {expectation}; received {value!r}.")


def check_choice(owner, argument, value, choices):
    if value not in choices:
        fail(owner, argument, value, f"must be one of {', '.join(repr(c) for c in choices)}")
    return value


def check_number(owner, argument, value, *, minimum=None, maximum=None, min_inclusive=True,
                 max_inclusive=True, integer=False):
    """Check that ``value`` is a real (or integer) number inside the given bounds."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        fail(owner, argument, value, "must be an integer" if integer else "must be a number")
    if not np.isfinite(value):
        fail(owner, argument, value, "must be finite")
    if minimum is not None and (value < minimum or (value == minimum and not min_inclusive)):
        fail(owner, argument, value, f"must be {'>=' if min_inclusive else '>'} {minimum}")
    if maximum is not None and (value > maximum or (value == maximum and not max_inclusive)):
        fail(owner, argument, value, f"must be {'<=' if max_inclusive else '<'} {maximum}")
    return int(value) if integer else float(value)


def check_optional_int(owner, argument, value):
    """``ignore_index`` and friends: None or an integer."""
    if value is None:
        return None
    return check_number(owner, argument, value, integer=True)


def check_vector(owner, argument, value, *, length=None, positive=False, non_negative=False):
    """Turn a list/array argument into a float64 NumPy vector and validate it."""
    try:
        array = np.asarray(value, dtype="float64")
    except (TypeError, ValueError):
        fail(owner, argument, value, "must be a sequence of numbers")
    if array.ndim != 1:
        fail(owner, argument, value, "must be one-dimensional")
    if length is not None and array.shape[0] != length:
        fail(owner, argument, value, f"must have {length} entries, not {array.shape[0]}")
    if not np.all(np.isfinite(array)):
        fail(owner, argument, value, "must hold finite numbers")
    if positive and np.any(array <= 0):
        fail(owner, argument, value, "must hold numbers > 0")
    if non_negative and np.any(array < 0):
        fail(owner, argument, value, "must hold numbers >= 0")
    return array


# ----------------------------------------------------------------------------- tensors


def as_float32(x):
    """Convert to a float32 tensor; losses and metrics compute in float32 under any policy."""
    return ops.cast(ops.convert_to_tensor(x), "float32")


def static_rank(owner, argument, x, ranks):
    """Check the static rank of ``x`` against the allowed ``ranks``; return the rank."""
    rank = len(x.shape)
    if rank not in ranks:
        allowed = " or ".join(str(r) for r in ranks)
        fail(owner, argument, f"tensor of shape {tuple(x.shape)}", f"must have rank {allowed}")
    return rank


def concrete_numpy(x):
    """NumPy value of ``x`` when it is concrete (eager), else None (inside a traced graph)."""
    if isinstance(x, np.ndarray):
        return x
    try:
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if not tf.executing_eagerly() or isinstance(x, keras.KerasTensor):
                return None
        return np.asarray(ops.convert_to_numpy(x))
    except Exception:  # traced values (jax tracers, symbolic tensors) have no value yet
        return None


def check_label_values(owner, labels, num_classes, ignore_index):
    """Integer labels must lie in [0, num_classes) or equal ``ignore_index``.

    Checked on concrete values (eager calls, tests, the first call of a user). Inside a
    compiled TensorFlow graph the check becomes a runtime assertion with the same message;
    other backends cannot raise from a traced function, so there it only runs eagerly.
    """
    values = concrete_numpy(labels)
    message = (f"{owner}: integer labels must lie in [0, {num_classes})"
               + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    if values is not None:
        bad = (values < 0) | (values >= num_classes)
        if ignore_index is not None:
            bad &= values != ignore_index
        if np.any(bad):
            found = np.unique(values[bad])[:10].tolist()
            raise ValueError(f"{message}; received label values {found}.")
        return labels
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        bad = tf.logical_or(labels < 0, labels >= num_classes)
        if ignore_index is not None:
            bad = tf.logical_and(bad, tf.not_equal(labels, ignore_index))
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message])
        with tf.control_dependencies([check]):
            return tf.identity(labels)
    return labels


def segmentation_targets(owner, y_true, num_classes, ignore_index=None, *, binary=False):
    """Normalise segmentation labels to a float32 one-hot map and a validity mask.

    Accepted label forms (channels-last, B the batch and C = ``num_classes``):

    - integer class maps, shape (B, H, W) or (B, H, W, 1), values in [0, C) or ``ignore_index``;
    - one-hot or soft maps, shape (B, H, W, C) with C > 1;
    - with ``binary=True`` (sigmoid outputs, one map per channel): {0, 1} or soft maps with
      the same shape as the prediction (B, H, W, C), or (B, H, W) for C = 1. ``ignore_index``
      then marks ignored pixels by value, per channel.

    Returns:
        ``(targets, valid)``: ``targets`` float32 (B, H, W, C); ``valid`` float32 (B, H, W, 1)
        for integer/one-hot labels (1 where the pixel counts), or (B, H, W, C) in binary mode.
        Ignored pixels have all-zero targets.
    """
    y_true = ops.convert_to_tensor(y_true)
    rank = static_rank(owner, "y_true", y_true, (3, 4))
    if rank == 3:
        y_true = ops.expand_dims(y_true, -1)
    channels = y_true.shape[-1]

    if binary:
        if channels is not None and channels != num_classes:
            fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
                 f"must have {num_classes} channel(s) like the prediction")
        targets = as_float32(y_true)
        if ignore_index is None:
            return targets, ops.ones_like(targets)
        valid = ops.cast(ops.not_equal(targets, float(ignore_index)), "float32")
        return targets * valid, valid

    if channels == 1:
        labels = ops.cast(y_true[..., 0], "int32")
        labels = check_label_values(owner, labels, num_classes, ignore_index)
        if ignore_index is None:
            valid = ops.ones_like(labels, dtype="float32")
        else:
            valid = ops.cast(ops.not_equal(labels, ignore_index), "float32")
        safe = ops.where(valid > 0, labels, ops.zeros_like(labels))
        targets = ops.one_hot(safe, num_classes, dtype="float32") * valid[..., None]
        return targets, valid[..., None]

    if channels is not None and channels != num_classes:
        fail(owner, "y_true", f"tensor of shape {tuple(y_true.shape)}",
             f"must be integer labels (B, H, W[, 1]) or one-hot with {num_classes} channels")
    targets = as_float32(y_true)
    # A one-hot pixel whose row sums to zero carries no label: treat it as ignored.
    valid = ops.cast(ops.sum(targets, axis=-1, keepdims=True) > 0, "float32")
    return targets, valid


def num_channels(owner, y_pred):
    """The static channel count of a channels-last prediction; it must be known."""
    channels = y_pred.shape[-1]
    if channels is None:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             "must have a known number of channels (last axis)")
    return int(channels)


def check_binary_values(owner, targets, ignore_index=None):
    """Sigmoid-mode targets must lie in [0, 1] (hard or soft) or equal ``ignore_index``.

    Same behaviour as :func:`check_label_values`: a ``ValueError`` naming the values on
    concrete inputs, a runtime assertion with the same message inside a TensorFlow graph.
    """
    message = (f"{owner}: binary/multi-label targets must lie in [0, 1]"
               + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    values = concrete_numpy(targets)
    if values is not None:
        bad = (values < 0) | (values > 1) | np.isnan(values)
        if ignore_index is not None:
            bad &= values != ignore_index
        if np.any(bad):
            raise ValueError(f"{message}; received target values {np.unique(values[bad])[:10].tolist()}.")
        return targets
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        targets = tf.cast(targets, "float32")
        bad = tf.logical_not(tf.logical_and(targets >= 0, targets <= 1))
        if ignore_index is not None:
            bad = tf.logical_and(bad, tf.not_equal(targets, float(ignore_index)))
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message])
        with tf.control_dependencies([check]):
            return tf.identity(targets)
    return targets


def per_sample_weight(sample_weight, value_rank):
    """Give per-sample weights (B,) the rank of a loss's unreduced values (B, ...).

    Keras broadcasts weights against the values from the right, so (B,) weights on per-pixel
    values (B, H, W) fail, or weight the wrong axis when W == B. Reshaped to (B, 1, ..., 1),
    a per-sample weight multiplies every value of its sample. Other shapes pass unchanged.
    """
    if sample_weight is None or value_rank < 2:
        return sample_weight
    sample_weight = ops.convert_to_tensor(sample_weight)
    if len(sample_weight.shape) != 1:
        return sample_weight
    return ops.reshape(sample_weight, (-1,) + (1,) * (value_rank - 1))
