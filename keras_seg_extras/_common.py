"""Conventions shared by every loss, metric, layer and callback of the package.

One place for: registration with Keras serialisation, argument validation with errors that
name the object, the argument and the value, float32 computation whatever the input dtype,
and the normalisation of segmentation labels (integer maps or one-hot) with ``ignore_index``.
"""

import inspect
import numbers
import warnings

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


def call_member(owner, argument, member, *args, **kwargs):
    """Call a wrapped loss; a ``ValueError`` it raises is re-raised naming both objects.

    ``CombinedLoss: member `losses[1]` (DiceLoss) failed: DiceLoss: ...``: the user sees
    which wrapper and which of its members refused the input.
    """
    try:
        return member(*args, **kwargs)
    except ValueError as error:
        target = getattr(member, "__self__", member)  # a bound ``Loss.call``: its loss
        name = target.__name__ if inspect.isfunction(target) else type(target).__name__
        raise ValueError(f"{owner}: member `{argument}` ({name}) failed: {error}") from error


def check_flag(owner, argument, value):
    """A boolean argument must be a real ``bool`` (not 0/1, not a string such as ``"no"``)."""
    if not isinstance(value, bool):
        fail(owner, argument, value, "must be True or False")
    return value


def check_choice(owner, argument, value, choices):
    """``value`` must be one of ``choices`` (compared with ``in``); returns it."""
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


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def _raise_from_compiled_step(message, bad, values):
    """JAX: a host callback in the compiled step that raises ``ValueError`` when ``bad``.

    The step then fails with a ``JaxRuntimeError`` whose text holds the message and the
    smallest and largest offending value. Not under a ``keras.distribution`` (several
    devices): a callback that raises on one device leaves the others waiting in their
    all-reduce, and XLA aborts the process; there the NaN of ``faulty_to_nan`` is the signal.
    Other backends: no-op (TensorFlow graphs assert, torch runs eagerly, XLA under
    TensorFlow has no host callback).
    """
    if keras.backend.backend() != "jax" or keras.distribution.distribution() is not None:
        return
    import jax

    def check(any_bad, low, high):
        if any_bad:
            raise ValueError(f"{message}; received values from {low} to {high}.")

    values = ops.cast(values, "float32")
    jax.debug.callback(check, ops.any(bad), ops.min(ops.where(bad, values, np.inf)),
                       ops.max(ops.where(bad, values, -np.inf)))


def _tensorflow_assert(x, bad, message):
    """``x`` with a runtime assertion that no element is ``bad`` (TensorFlow graphs)."""
    import tensorflow as tf

    check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [message])
    with tf.control_dependencies([check]):
        return tf.identity(x)


def faulty_to_nan(x, bad):
    """``x`` (float) with NaN where ``bad``: what a compiled step does with bad targets.

    Where no error can be raised (XLA under TensorFlow drops assertions; JAX raises through
    a host callback, which the step may not reach before the loss), a bad label makes the
    loss and every metric NaN, so ``keras.callbacks.TerminateOnNaN`` stops training and the
    logs show it; nothing trains on a silently wrong target. On clean inputs this is ``x``.
    """
    return ops.where(bad, np.float32(np.nan), x)


def _label_faults(labels, num_classes, ignore_index):
    bad = ops.logical_or(ops.less(labels, 0), ops.greater_equal(labels, num_classes))
    if ignore_index is not None:
        bad = ops.logical_and(bad, ops.not_equal(labels, ignore_index))
    return bad


def _label_message(owner, num_classes, ignore_index):
    return (f"{owner}: integer labels must lie in [0, {num_classes})"
            + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))


def on_meta_device(x):
    """Whether ``x`` is a torch tensor on the "meta" device (no data, shapes only).

    Keras's PyTorch backend infers the output of a metric (``update_state`` then ``result``)
    once on that device before ``evaluate``; when an op has no meta kernel it retries on the
    CPU, but the state assigned in the failed attempt stays meta and the retry fails ("Tensor
    on device cpu is not on the expected device meta"). A ``result()`` that needs such an op
    (``segment_sum``) returns a placeholder of the right shape there instead.
    """
    device = getattr(x, "device", None)
    return keras.backend.backend() == "torch" and getattr(device, "type", None) == "meta"


def check_label_values(owner, labels, num_classes, ignore_index):
    """Integer labels must lie in [0, num_classes) or equal ``ignore_index``.

    - concrete values (eager calls, PyTorch, tests): ``ValueError`` naming the values;
    - TensorFlow graph (``tf.function``, ``jit_compile=False``): a runtime assertion with the
      same message (``InvalidArgumentError``);
    - JAX compiled step: a host callback raises the same message (``JaxRuntimeError``);
    - XLA under TensorFlow: assertions are dropped; :func:`segmentation_targets` turns the
      pixel's targets into NaN (``faulty_to_nan``), so the loss or metric is NaN.
    """
    values = concrete_numpy(labels)
    message = _label_message(owner, num_classes, ignore_index)
    if values is not None:
        bad = (values < 0) | (values >= num_classes)
        if ignore_index is not None:
            bad &= values != ignore_index
        if np.any(bad):
            found = np.unique(values[bad])[:10].tolist()
            raise ValueError(f"{message}; received label values {found}.")
        return labels
    bad = _label_faults(labels, num_classes, ignore_index)
    if _is_tensorflow():
        return _tensorflow_assert(labels, bad, message)
    _raise_from_compiled_step(message, bad, labels)
    return labels


def check_same_shape(owner, y_true, y_pred, axes=None, shown_shape=None):
    """The known dimensions of ``y_true`` and ``y_pred`` must agree.

    ``axes=None`` compares every axis (and the ranks); otherwise only the given axes. A
    mismatch raises the package's ``ValueError`` naming both shapes (``shown_shape`` is the
    ``y_true`` shape to print, when the caller reshaped it), instead of a backend's
    broadcasting error deep inside the loss or a silent broadcast.
    """
    true_shape, pred_shape = tuple(y_true.shape), tuple(y_pred.shape)
    if axes is None:
        agree = len(true_shape) == len(pred_shape)
        axes = range(len(pred_shape)) if agree else ()
    else:
        agree = True
    agree = agree and all(true_shape[a] is None or pred_shape[a] is None
                          or true_shape[a] == pred_shape[a] for a in axes)
    if not agree:
        what = "the shape" if axes is None or len(axes) == len(pred_shape) else (
            f"dimensions {tuple(axes)} of the shape")
        fail(owner, "y_true", f"tensor of shape {shown_shape or true_shape}",
             f"must match {what} of y_pred {pred_shape}")


def segmentation_targets(owner, y_true, num_classes, ignore_index=None, *, binary=False,
                         y_pred=None, hard=False):
    """Normalise segmentation labels to a float32 one-hot map and a validity mask.

    Accepted label forms (channels-last, B the batch and C = ``num_classes``):

    - integer class maps, shape (B, H, W) or (B, H, W, 1), values in [0, C) or ``ignore_index``;
    - one-hot or soft maps, shape (B, H, W, C) with C > 1, values in [0, 1];
    - with ``binary=True`` (sigmoid outputs, one map per channel): {0, 1} or soft maps with
      the same shape as the prediction (B, H, W, C), or (B, H, W) for C = 1. ``ignore_index``
      then marks ignored pixels by value, per channel. ``hard=True`` accepts {0, 1} only
      (see :func:`check_binary_values`).

    Values outside these ranges raise (see :func:`check_label_values`); where a compiled step
    cannot raise, the faulty pixels' targets and validity are NaN, so whatever is computed
    from them is NaN. With ``y_pred`` given, the shapes must agree (batch and spatial axes for
    integer maps, every axis otherwise), else a ``ValueError`` names both shapes.

    Returns:
        ``(targets, valid)``: ``targets`` float32 (B, H, W, C); ``valid`` float32 (B, H, W, 1)
        for integer/one-hot labels (1 where the pixel counts), or (B, H, W, C) in binary mode.
        Ignored pixels have all-zero targets.
    """
    y_true = ops.convert_to_tensor(y_true)
    shown_shape = tuple(y_true.shape)
    rank = static_rank(owner, "y_true", y_true, (3, 4))
    if rank == 3:
        y_true = ops.expand_dims(y_true, -1)
    channels = y_true.shape[-1]
    integer_maps = channels == 1 and not binary
    if not integer_maps and channels is not None and channels != num_classes:
        fail(owner, "y_true", f"tensor of shape {shown_shape}",
             f"must have {num_classes} channel(s) like the prediction" if binary else
             f"must be integer labels (B, H, W[, 1]) or one-hot with {num_classes} channels")
    if y_pred is not None:
        check_same_shape(owner, y_true, y_pred, (0, 1, 2) if integer_maps else None,
                         shown_shape=shown_shape)

    if binary:
        targets = check_binary_values(owner, as_float32(y_true), ignore_index, hard=hard)
        if ignore_index is None:
            return targets, ops.ones_like(targets)
        valid = ops.cast(ops.not_equal(targets, float(ignore_index)), "float32")
        return targets * valid, valid

    if integer_maps:
        labels = ops.cast(y_true[..., 0], "int32")
        labels = check_label_values(owner, labels, num_classes, ignore_index)
        if ignore_index is None:
            valid = ops.ones_like(labels, dtype="float32")
        else:
            valid = ops.cast(ops.not_equal(labels, ignore_index), "float32")
        safe = ops.where(valid > 0, labels, ops.zeros_like(labels))
        valid = faulty_to_nan(valid, _label_faults(labels, num_classes, ignore_index))
        targets = ops.one_hot(safe, num_classes, dtype="float32") * valid[..., None]
        return targets, valid[..., None]

    targets = check_binary_values(owner, as_float32(y_true), kind="one-hot/soft targets")
    # A one-hot pixel whose row sums to zero carries no label: treat it as ignored.
    row = ops.sum(targets, axis=-1, keepdims=True)
    valid = faulty_to_nan(ops.cast(row > 0, "float32"), ops.isnan(row))
    return targets, valid


def num_channels(owner, y_pred):
    """The static channel count of a channels-last prediction; it must be known."""
    channels = y_pred.shape[-1]
    if channels is None:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             "must have a known number of channels (last axis)")
    return int(channels)


def check_binary_values(owner, targets, ignore_index=None, kind="binary/multi-label targets",
                        hard=False):
    """Targets of sigmoid outputs (and one-hot maps) must lie in [0, 1] or equal ``ignore_index``.

    With ``hard=True`` they must be exactly 0 or 1 (losses defined on sets only, such as the
    Lovász hinge, whose Jaccard set function has no value for a soft target).

    Same paths as :func:`check_label_values`: a ``ValueError`` naming the values on concrete
    inputs, a runtime assertion with the same message inside a TensorFlow graph, a host
    callback that raises inside a JAX step; under XLA the faulty values become NaN. A NaN
    target is faulty too.
    """
    allowed = "{0, 1}" if hard else "[0, 1]"
    message = (f"{owner}: {kind} must lie in {allowed}"
               + ("" if ignore_index is None else f" or equal ignore_index={ignore_index}"))
    values = concrete_numpy(targets)
    if values is not None:
        if hard:
            bad = (values != 0) & (values != 1)
        else:
            bad = (values < 0) | (values > 1) | np.isnan(values)
        if ignore_index is not None:
            bad &= values != ignore_index
        if np.any(bad):
            raise ValueError(f"{message}; received target values {np.unique(values[bad])[:10].tolist()}.")
        return targets
    targets = as_float32(targets)
    if hard:
        bad = ops.logical_not(ops.logical_or(ops.equal(targets, 0.0), ops.equal(targets, 1.0)))
    else:
        bad = ops.logical_not(ops.logical_and(targets >= 0, targets <= 1))
    if ignore_index is not None:
        bad = ops.logical_and(bad, ops.not_equal(targets, float(ignore_index)))
    if _is_tensorflow():
        targets = _tensorflow_assert(targets, bad, message)
    else:
        _raise_from_compiled_step(message, bad, targets)
    return faulty_to_nan(targets, bad)


def any_nan(*tensors):
    """A scalar bool: whether any element of the tensors is NaN."""
    flags = [ops.any(ops.isnan(as_float32(t))) for t in tensors]
    result = flags[0]
    for flag in flags[1:]:
        result = ops.logical_or(result, flag)
    return result


def nan_if_any_nan(value, *tensors):
    """``value``, or NaN (same shape) when any input holds a NaN.

    Predictions that went NaN (a diverged model, a float16 overflow) must never turn into a
    loss of 0 or a perfect score: comparisons (``p > 0.5``, ``argmax``) silently map NaN to a
    class, and masks of the form ``sum > 0`` skip it. Applied at the end of each such
    computation, this keeps the NaN for ``TerminateOnNaN`` and the logs.
    """
    return faulty_to_nan(value, ops.broadcast_to(any_nan(*tensors), ops.shape(value)))


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


def scale_for_distribution(value):
    """Divide by the number of replicas inside a ``tf.distribute`` replica context.

    Keras' own ``Loss`` does this for non-scalar losses; a scalar returned from ``call``
    would skip it, so losses that reduce themselves apply it (gradients are summed over
    replicas).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            value = value * (1.0 / replicas)
    return value


# ----------------------------------------------------------------------------- optional imports


class OptionalModule:
    """A third-party module imported on first use, so that importing the package never needs it.

    ``import keras_seg_extras`` imports every subpackage; the TensorFlow-only parts (tf.data
    pipelines, serving export) write ``tf = OptionalModule("tensorflow", "tf")`` instead of
    ``import tensorflow as tf``, so the package imports under the JAX or PyTorch backend and
    where TensorFlow is not installed. The module is imported at the first attribute access;
    when it is missing, the ``ImportError`` says which extra installs it.

    Args:
        name: the module's import name, e.g. ``"tensorflow"``.
        extra: the ``keras-seg-extras`` extra that installs it, e.g. ``"tf"``.

    Example:
        >>> from keras_seg_extras._common import OptionalModule
        >>> json = OptionalModule("json", "none")  # imported below, at its first use
        >>> json.dumps([1, 2])
        '[1, 2]'
        >>> OptionalModule("not_a_module_here", "extra").anything
        Traceback (most recent call last):
        ...
        ImportError: `not_a_module_here` is needed here and is not installed:
        pip install 'keras-seg-extras[extra]'
    """

    def __init__(self, name, extra):
        self._name = name
        self._extra = extra
        self._module = None

    def __getattr__(self, attribute):
        if attribute.startswith("__"):  # introspection (copy, pickle, inspect) imports nothing
            raise AttributeError(attribute)
        if self._module is None:
            import importlib

            try:
                self._module = importlib.import_module(self._name)
            except ImportError as error:
                raise ImportError(f"`{self._name}` is needed here and is not installed: "
                                  f"pip install 'keras-seg-extras[{self._extra}]'") from error
        return getattr(self._module, attribute)

    def __repr__(self):
        state = "imported" if self._module is not None else "not imported yet"
        return f"<optional module {self._name!r} ({state})>"


# ----------------------------------------------------------------------------- numerics and weights


def epsilon():
    """The package's one numerical epsilon: ``keras.config.epsilon()`` (1e-7 unless changed).

    Every loss reads it here, at call time, for each of its floors: the clip of probabilities
    before a logarithm (``log(max(p, epsilon()))``) and the guard of a denominator that can be
    0 (``sum / max(count, epsilon())``, where a count is either 0 or >= 1, so the guard never
    changes a value). ``keras.config.set_epsilon`` therefore moves all of them together. Kept
    apart, with their reasons in their modules: the variance floor of the locally adaptive
    loss's z-score (a statistic of logits, not a probability) and the focal loss's base floor
    of ``(1 - p̂)^γ`` (a gradient guard far below any value the loss can take).
    """
    return keras.config.epsilon()


def pixel_weights(owner, sample_weight, per_image):
    """Sample weights of a batch-global loss as float32 (B, H, W, 1) (or (B, 1, 1, 1)), or None.

    Per-image (B,) / (B, 1) and per-pixel (B, H, W) / (B, H, W, 1) weights are accepted; they
    must be >= 0 (checked on concrete values). With ``per_image=True`` Keras's reduction
    weights the per-image values instead, so weights are refused there (``ValueError``).
    """
    if sample_weight is None:
        return None
    if per_image:
        fail(owner, "sample_weight", "a weight tensor",
             "must be None with per_image=True (the Keras loss class weights per-image values)")
    weights = as_float32(sample_weight)
    shape = tuple(weights.shape)
    if len(shape) in (1, 2) and (len(shape) == 1 or shape[1] == 1):
        weights = ops.reshape(weights, (-1, 1, 1, 1))
    elif len(shape) == 3:
        weights = ops.expand_dims(weights, -1)
    elif not (len(shape) == 4 and shape[-1] == 1):
        fail(owner, "sample_weight", f"tensor of shape {shape}",
             "must hold per-image (B,) or per-pixel (B, H, W) weights")
    values = concrete_numpy(weights)
    if values is not None and np.any(values < 0):
        fail(owner, "sample_weight", f"minimum {values.min()}", "must hold weights >= 0")
    return weights


# ----------------------------------------------------------------------------- renamed arguments


def renamed_argument(owner, new_name, new_value, old_name, old_value, default):
    """The value of an argument renamed from ``old_name`` to ``new_name``.

    ``old_value`` is None when the caller did not use the old name: ``new_value`` is returned.
    Otherwise the old name still works with a ``DeprecationWarning`` naming the new one, unless
    the new name was given as well (``new_value`` differs from its ``default``): a
    ``ValueError``, since the two could disagree.

    Args:
        owner: the object named in the warning or error.
        new_name: the argument's current name.
        new_value: the value passed under ``new_name``.
        old_name: its former name.
        old_value: the value passed under ``old_name``, or None.
        default: the default of ``new_name``.

    Returns:
        The value to use.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     renamed_argument("small_unet", "num_classes", 1, "classes", 3, default=1)
        3
        >>> caught[0].category.__name__
        'DeprecationWarning'
    """
    if old_value is None:
        return new_value
    if new_value != default:
        fail(owner, old_name, old_value,
             f"is the former name of `{new_name}`; give only `{new_name}` "
             f"(received also {new_name}={new_value!r})")
    warnings.warn(f"{owner}: `{old_name}` is renamed `{new_name}` and deprecated; use "
                  f"{new_name}={old_value!r}.", DeprecationWarning, stacklevel=3)
    return old_value
