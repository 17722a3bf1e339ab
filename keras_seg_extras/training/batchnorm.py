"""BatchNormalization helpers: find the layers, set or scale their momentum, re-estimate statistics.

One home for what training with small or accumulated batches and weight averaging needs of
BatchNorm (Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network Training by
Reducing Internal Covariate Shift", ICML 2015), on public Keras API only.

Which layers are found (:func:`batchnorm_layers`): every ``keras.layers.BatchNormalization``
reachable from the model through ``Model.layers`` (recursively, so nested functional,
sequential and subclassed models are searched) and through the public attributes of any
layer on the way: a sub-layer stored as ``self.norm = BatchNormalization()``, in a list,
tuple or dict attribute (``self.blocks = [...]``), or wrapped (``TimeDistributed(...).layer``).
Keras 3 has no public "all sub-layers" accessor for a plain ``Layer`` (``_flatten_layers``
and ``_layers`` are private), so this walk is what the public surface allows. Not found: a
layer kept only under an underscore attribute (``self._norm``), created inside ``call``, or
held by a non-container object (a closure, a dataclass); subclasses of
``BatchNormalization`` are found (``isinstance``), other normalisations are not.
"""

import keras
import numpy as np
from keras import ops

from keras_seg_extras._common import check_number, fail

_BASE_MOMENTUM = "_kse_base_momentum"  # the momentum before any accumulation scaling


def _children(layer):
    if isinstance(layer, keras.Model):
        yield from layer.layers
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        values = value.values() if isinstance(value, dict) else (
            value if isinstance(value, (list, tuple)) else (value,))
        for item in values:
            if isinstance(item, keras.layers.Layer):
                yield item


def batchnorm_layers(model):
    """Every ``BatchNormalization`` layer inside ``model``, nested models included, once each.

    Walks ``Model.layers`` recursively and the public attributes (single layers, lists,
    tuples, dicts) of every layer met, in depth-first order; the module docstring lists
    what this public-API walk does and does not reach.

    Args:
        model: a Keras model or layer.

    Returns:
        A list of ``keras.layers.BatchNormalization`` layers (``model`` itself excluded).

    Example:
        >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
        >>> inputs = keras.Input((4,))
        >>> outputs = keras.layers.BatchNormalization()(inner(inputs))
        >>> len(batchnorm_layers(keras.Model(inputs, outputs)))
        2
    """
    if not isinstance(model, keras.layers.Layer):
        fail("batchnorm_layers", "model", model, "must be a Keras model or layer")
    found, seen, stack = [], {id(model)}, list(_children(model))[::-1]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack.extend(list(_children(layer))[::-1])
    return found


def set_batchnorm_momentum(model, momentum):
    """Set the momentum of every BatchNorm layer of ``model`` (nested models included).

    The moving statistics follow ``moving = momentum * moving + (1 - momentum) * batch``.
    Keras's default 0.99 remembers about 100 steps, so a run of a few hundred steps (a CPU
    demo, a small data set) ends with moving statistics still near their initial values and
    inference-mode predictions far below training; 0.9 (about 10 steps) fixes that. The value
    also becomes the base that :func:`set_batchnorm_momentum_for_accumulation` scales. Call
    it before ``compile`` (the momentum is read when the training step is traced).

    Args:
        model: a Keras model.
        momentum: a number in [0, 1].

    Returns:
        A list of ``(layer_name, old_momentum, new_momentum)``.

    Example:
        >>> inputs = keras.Input((4,))
        >>> model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
        >>> set_batchnorm_momentum(model, 0.9)
        [('bn', 0.99, 0.9)]
    """
    momentum = check_number("set_batchnorm_momentum", "momentum", momentum, minimum=0,
                            maximum=1)
    changes = []
    for layer in batchnorm_layers(model):
        changes.append((layer.name, float(layer.momentum), float(momentum)))
        layer.momentum = float(momentum)
        setattr(layer, _BASE_MOMENTUM, float(momentum))
    return changes


def set_batchnorm_momentum_for_accumulation(model, accumulation_steps):
    """Set every BatchNorm momentum to ``m ** (1 / accumulation_steps)``.

    Gradient accumulation enlarges the batch of the backward pass only: each of the N
    forward passes updates the moving averages with its own micro-batch. With momentum
    ``m ** (1/N)`` the N updates weight the old average by ``(m ** (1/N)) ** N = m``, as one
    update with the large batch would, so the moving statistics span the same number of
    samples. ``m`` is the layer's momentum before the first scaling (remembered on the layer,
    so repeated calls, e.g. one per training stage, never compound; a later
    :func:`set_batchnorm_momentum` sets a new ``m``). ``accumulation_steps=1`` restores ``m``.
    Call it before ``compile``.

    Args:
        model: a Keras model (nested models included).
        accumulation_steps: N >= 1.

    Returns:
        A list of ``(layer_name, original_momentum, new_momentum)``.

    Example:
        >>> inputs = keras.Input((4,))
        >>> layer = keras.layers.BatchNormalization(momentum=0.9, name="bn")
        >>> model = keras.Model(inputs, layer(inputs))
        >>> [(name, round(new, 4)) for name, _, new in
        ...  set_batchnorm_momentum_for_accumulation(model, 4)]
        [('bn', 0.9740)]
    """
    steps = check_number("set_batchnorm_momentum_for_accumulation", "accumulation_steps",
                         accumulation_steps, minimum=1, integer=True)
    changes = []
    for layer in batchnorm_layers(model):
        if not hasattr(layer, _BASE_MOMENTUM):
            setattr(layer, _BASE_MOMENTUM, float(layer.momentum))
        base = getattr(layer, _BASE_MOMENTUM)
        layer.momentum = base ** (1.0 / steps)
        changes.append((layer.name, base, layer.momentum))
    return changes


# ---------------------------------------------------------------------- re-estimation

_OWNER = "recompute_batchnorm_statistics"


def _inputs_of(batch):
    if isinstance(batch, dict):
        return batch
    if isinstance(batch, (tuple, list)):
        return batch[0]
    return batch


def _batches(data, steps):
    if isinstance(data, np.ndarray):
        fail(_OWNER, "data", f"array of shape {data.shape}",
             "must be batched: pass a tf.data.Dataset or a list of batches, not one array")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if isinstance(data, tf.data.Dataset):
            if steps is None and data.cardinality() == tf.data.INFINITE_CARDINALITY:
                fail(_OWNER, "steps", None, "must be given for an infinite dataset")
            data = data.as_numpy_iterator() if steps is None else data.take(
                steps).as_numpy_iterator()
    for i, batch in enumerate(data):
        if steps is not None and i >= steps:
            return
        yield _inputs_of(batch)


def _recording_call(layer, original, totals):
    """``layer.call`` that first adds the batch's moments to ``totals`` (Chan's pairwise update)."""

    def call(inputs, training=None, mask=None):
        x = ops.cast(inputs, "float32")
        axis = layer.axis % len(x.shape)
        axes = [i for i in range(len(x.shape)) if i != axis]
        n_b = float(np.prod([x.shape[i] for i in axes]))
        mean_b = np.asarray(ops.convert_to_numpy(ops.mean(x, axis=axes)), "float64")
        var_b = np.asarray(ops.convert_to_numpy(ops.var(x, axis=axes)), "float64")
        n_a, mean_a, m2_a = totals
        n = n_a + n_b
        delta = mean_b - mean_a
        totals[:] = [n, mean_a + delta * (n_b / n),
                     m2_a + var_b * n_b + delta ** 2 * (n_a * n_b / n)]
        return original(inputs, training=training, mask=mask)

    return call


def recompute_batchnorm_statistics(model, data, steps=None):
    """Set every trainable BatchNorm layer's moving statistics to exact averages over ``data``.

    One pass over the batches with the model in training mode (each BN layer normalises
    with its batch statistics, as during training and as in PyTorch's ``update_bn``). For
    each trainable ``keras.layers.BatchNormalization`` with inputs ``x`` pooled over all
    batches (all axes but the channel axis, all positions)::

        moving_mean = mean(x),   moving_variance = mean((x - mean(x))^2)

    (the biased variance, Keras's convention; batches are combined exactly with Chan's
    pairwise update in float64, so unequal batch sizes are weighted by their sizes). This is
    the re-estimation that Stochastic Weight Averaging needs (Izmailov, Podoprikhin, Garipov,
    Vetrov and Wilson, "Averaging Weights Leads to Wider Optima and Better Generalization",
    UAI 2018, section 3.2): torch's ``update_bn`` with ``momentum=None``, except that torch
    averages the per-batch variances, which omits the spread between batch means; the pooled
    variance is the statistic of the data itself. It equally replaces moving averages that a
    short run never let converge. Frozen BN layers (``trainable=False``) normalise with their
    moving statistics anyway and are left untouched. Dropout is active in the pass
    (training mode), as in torch.

    Args:
        model: a built Keras model (searched as :func:`batchnorm_layers` does).
        data: a ``tf.data.Dataset`` or an iterable of batches; a batch is an input array or
            an ``(x, ...)`` tuple / list.
        steps: optional number of batches to use (required for an infinite dataset).

    Returns:
        A dict ``layer name -> (moving_mean, moving_variance)`` as float32 NumPy arrays.

    Example:
        >>> inputs = keras.Input((2,))
        >>> model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
        >>> batches = [np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[4.0, 5.0]])]
        >>> mean, variance = recompute_batchnorm_statistics(model, batches)["bn"]
        >>> mean.tolist(), variance.round(4).tolist()
        ([2.0, 3.0], [2.6667, 2.6667])
    """
    if steps is not None:
        steps = check_number(_OWNER, "steps", steps, minimum=1, integer=True)
    layers = [layer for layer in batchnorm_layers(model) if layer.trainable]
    if not layers:
        return {}
    totals = {id(layer): [0.0, 0.0, 0.0] for layer in layers}  # count, mean, M2
    for layer in layers:
        layer.__dict__["call"] = _recording_call(layer, layer.call, totals[id(layer)])
    seen = 0
    try:
        for x in _batches(data, steps):
            model(x, training=True)
            seen += 1
    finally:
        for layer in layers:
            layer.__dict__.pop("call", None)
    if seen == 0:
        fail(_OWNER, "data", data, "must yield at least one batch")
    result = {}
    for layer in layers:
        count, mean, m2 = totals[id(layer)]
        if count == 0:
            continue  # the layer is not on the path of these inputs
        variance = m2 / count
        layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
        layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))
        result[layer.name] = (mean.astype("float32"), variance.astype("float32"))
    return result
