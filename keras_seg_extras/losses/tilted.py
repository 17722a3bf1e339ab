"""Tilted Cross-Entropy (TCE) for fairness in semantic segmentation.

Szabó, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in Semantic
Segmentation", CVPR Workshops (2021), eqs. 2 and 3, built on tilted empirical risk
minimisation (TERM, Li et al. 2020).

Numerics. A tilted mean ``(1/t) log((1/M) sum_m exp(t L_m))`` is computed as

    L_ref + (1/t) * log1p( mean_m expm1( t (L_m - L_ref) ) )

with ``L_ref`` the largest ``L_m`` for ``t > 0`` (the smallest for ``t < 0``), held constant for
the gradient. Every exponent ``t (L_m - L_ref)`` is <= 0, so nothing overflows at any
``t * L`` (tested to 1e4), and ``expm1``/``log1p`` keep full precision as ``t -> 0``, where the
value tends continuously to the plain mean. ``t == 0`` is evaluated exactly as the mean.
"""

import keras
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_choice,
    check_flag,
    check_number,
    epsilon,
    check_optional_int,
    fail,
    nan_if_any_nan,
    num_channels,
    register,
    scale_for_distribution,
    segmentation_targets,
    static_rank,
)

_LEVELS = ("image", "class")


def _weighted_tilted_mean(values, weights, t, axis):
    """Tilted mean of ``values`` along ``axis`` with non-negative ``weights``.

    ``(1/t) log( sum_i w_i exp(t v_i) / sum_i w_i )``; entries with weight 0 take no part.
    Returns ``(value, total_weight)``; where the total weight is 0 the value is 0.
    """
    total = ops.sum(weights, axis=axis)
    has_any = total > 0
    safe_total = ops.where(has_any, total, ops.ones_like(total))
    if t == 0.0:
        value = ops.sum(weights * values, axis=axis) / safe_total
        return ops.where(has_any, value, ops.zeros_like(value)), total
    active = weights > 0
    big = ops.cast(3.0e38, values.dtype)
    if t > 0:
        reference = ops.max(ops.where(active, values, -big), axis=axis, keepdims=True)
    else:
        reference = ops.min(ops.where(active, values, big), axis=axis, keepdims=True)
    reference = ops.stop_gradient(ops.where(ops.abs(reference) < big, reference, 0.0))
    # t * (v - ref) <= 0 on active entries; inactive ones are zeroed before the exponent.
    exponent = ops.where(active, t * (values - reference), ops.zeros_like(values))
    inner = ops.sum(weights * ops.expm1(exponent), axis=axis) / safe_total
    # inner lies in (-1, 0]: the reference entry contributes expm1(0) = 0.
    inner = ops.maximum(inner, -1.0 + epsilon())
    value = ops.squeeze(reference, axis=axis) + ops.log1p(inner) / t
    return ops.where(has_any, value, ops.zeros_like(value)), total


def _pixel_cross_entropy(owner, y_true, y_pred, from_logits, ignore_index):
    """Per-pixel CE (B, H, W), float32 one-hot targets (B, H, W, C) and validity (B, H, W)."""
    y_pred = as_float32(y_pred)
    static_rank(owner, "y_pred", y_pred, (4,))
    classes = num_channels(owner, y_pred)
    if classes < 2:
        fail(owner, "y_pred", f"tensor of shape {tuple(y_pred.shape)}",
             "must have at least 2 class channels (softmax outputs)")
    targets, valid = segmentation_targets(owner, y_true, classes, ignore_index,
                                          y_pred=y_pred)
    if from_logits:
        log_probs = ops.log_softmax(y_pred, axis=-1)
    else:
        epsilon = keras.config.epsilon()
        probs = ops.clip(y_pred, epsilon, 1.0)
        log_probs = ops.log(probs)
    # Per class: -y_c log p_c (B, H, W, C); one-hot targets are zero on ignored pixels.
    per_class = -targets * log_probs
    return per_class, targets, valid[..., 0]


def tilted_cross_entropy(y_true, y_pred, t=1.0, level="image", from_logits=True,
                         ignore_index=None, sample_weight=None):
    """Tilted cross-entropy of a batch of segmentation maps (one scalar per batch).

    ``level="image"`` (Szabó et al. 2021, eq. 2)::

        TCE = (1/t) log( (1/M) sum_m exp(t L_m) ),   L_m = mean over the valid pixels of
                                                       image m of -sum_c y log p

    ``level="class"`` (eq. 3)::

        TCE = (1/M) sum_m (1/t) log( (1/|K_m|) sum_{c in K_m} exp(t L_{m,c}) ),
        L_{m,c} = mean over the pixels of class c in image m of -log p_c

    where ``K_m`` is the set of classes present in image m (among its valid pixels). The
    paper's eq. 3 averages over all K classes; a class absent from an image has no pixels,
    so its ``L_{m,c}`` is undefined (0/0) and it does not enter that image's mean.

    Deviations and conventions: ``L_m`` divides by the number of *valid* pixels (the paper
    divides by all N pixels; they agree without ``ignore_index``). Images without any valid
    pixel are left out of the mean over images (M counts images with at least one valid
    pixel); a batch without any valid pixel gives 0. ``sample_weight`` (B,) weights the images
    inside the mean over m (in both levels), i.e. ``(1/t) log(sum w_m e^{t L_m} / sum w_m)``.

    ``t > 0`` emphasises the worst images/classes (fairness; ``t -> inf`` tends to the
    maximum), ``t = 0`` is exactly the plain mean cross-entropy (the limit ``t -> 0`` is
    continuous), ``t < 0`` de-emphasises the worst ones (TERM's robust regime against
    outliers; ``t -> -inf`` tends to the minimum).

    The loss couples the images of the batch: it is not a mean of per-image values, so its
    value depends on which images share a batch. See ``TiltedCrossEntropy`` for how this
    interacts with Keras reductions and ``tf.distribute``.

    Args:
        y_true: integer labels (B, H, W) or (B, H, W, 1), or one-hot/soft (B, H, W, C).
        y_pred: logits (``from_logits=True``) or probabilities (B, H, W, C).
        t: tilt, any finite real.
        level: "image" (eq. 2) or "class" (eq. 3).
        from_logits: whether ``y_pred`` holds logits (log-softmax is used) or probabilities.
        ignore_index: label value of pixels that take no part, or None.
        sample_weight: optional (B,) or (B, 1) non-negative per-image weights; per-pixel
            weights are rejected with a ValueError.

    Returns:
        A float32 scalar tensor.

    Example:
        >>> import numpy as np
        >>> labels = np.array([[[0, 1], [1, 1]], [[2, 2], [0, 2]]])          # (2, 2, 2)
        >>> logits = np.eye(3)[labels] * 2.0
        >>> logits[1, 0, 0] = [2.0, 0.0, 0.0]                 # image 1 has one wrong pixel
        >>> round(float(tilted_cross_entropy(labels, logits, t=0.0)), 4)  # the plain mean CE
        0.4895
        >>> round(float(tilted_cross_entropy(labels, logits, t=5.0)), 4)  # leans to image 1
        0.6167
    """
    owner = "tilted_cross_entropy"
    t = check_number(owner, "t", t)
    check_choice(owner, "level", level, _LEVELS)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    return _tilted(owner, y_true, y_pred, t, level, check_flag(owner, "from_logits", from_logits),
                   ignore_index, sample_weight)


def _tilted(owner, y_true, y_pred, t, level, from_logits, ignore_index, sample_weight):
    per_class, targets, valid = _pixel_cross_entropy(owner, y_true, y_pred, from_logits,
                                                     ignore_index)
    value = _tilted_value(owner, per_class, targets, valid, t, level, sample_weight)
    # The tilted mean's max/min reference and clipping can drop a NaN under XLA: keep it.
    return nan_if_any_nan(value, per_class, valid)


def _tilted_value(owner, per_class, targets, valid, t, level, sample_weight):
    batch = ops.shape(valid)[0]
    if sample_weight is None:
        image_weight = ops.ones((batch,), dtype="float32")
    else:
        image_weight = as_float32(sample_weight)
        shape = tuple(image_weight.shape)
        if len(shape) > 1 and any(size != 1 for size in shape[1:]):
            fail(owner, "sample_weight", f"tensor of shape {shape}",
                 "must hold one weight per image, (B,) or (B, 1) (the tilt runs over images, "
                 "not pixels)")
        if len(shape) > 1:
            image_weight = ops.reshape(image_weight, (batch,))
        image_weight = ops.broadcast_to(image_weight, (batch,))
    if level == "image":
        pixel_loss = ops.sum(per_class, axis=-1)  # (B, H, W); 0 on ignored pixels
        count = ops.sum(valid, axis=(1, 2))
        loss_m = ops.sum(pixel_loss, axis=(1, 2)) / ops.maximum(count, 1.0)
        weights = image_weight * ops.cast(count > 0, "float32")
        value, _ = _weighted_tilted_mean(loss_m, weights, t, axis=0)
        return value
    # level == "class": (B, C) per-class mean CE over the pixels of that class.
    class_count = ops.sum(targets, axis=(1, 2))
    class_loss = ops.sum(per_class, axis=(1, 2)) / ops.maximum(class_count, epsilon())
    present = ops.cast(class_count > 0, "float32")
    per_image, present_total = _weighted_tilted_mean(class_loss, present, t, axis=1)
    weights = image_weight * ops.cast(present_total > 0, "float32")
    total = ops.sum(weights)
    value = ops.sum(weights * per_image) / ops.maximum(total, epsilon())
    return ops.where(total > 0, value, ops.zeros_like(value))


@register
class TiltedCrossEntropy(keras.losses.Loss):
    """Tilted cross-entropy (TCE) loss for semantic segmentation (Szabó, Jamali-Rad and
    Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in Semantic Segmentation", CVPR
    Workshops 2021, eqs. 2-3).

    ``(1/t) log( (1/M) sum_m exp(t L_m) )`` over the images of a batch (``level="image"``),
    or per image over its present classes and then averaged (``level="class"``); see
    ``tilted_cross_entropy`` for the formulas, conventions and numerics.

    Batch coupling and Keras reductions: the loss is one scalar per batch, not a mean of
    per-image values, so ``reduction`` has no role and is not an argument; a
    ``sample_weight`` passed by ``fit`` is used as per-image weights *inside* the tilted mean
    (not multiplied onto the scalar). The value (and the gradient) depends on the batch
    composition: the same images in batches of 4 and of 8 give different losses for t != 0.

    ``tf.distribute`` (e.g. MirroredStrategy): each replica computes the tilted loss of its
    own sub-batch (per-replica tilt) and divides it by the number of replicas, so the
    summed gradients are those of the *mean over replicas of the per-replica TCE*. This
    equals the TCE of the global batch only at t = 0; a global tilt would need a
    cross-replica log-sum-exp, which this loss does not do.

    For the paper's recommended optimisation (Algorithm 1: plain CE for the gradient, the
    tilt only in the class sampling) use ``kse.callbacks.StochasticTCESampler`` with
    ``kse.data.class_sampled_dataset`` instead of this loss.

    Args:
        t: tilt (finite real; 0 gives plain cross-entropy, < 0 the robust regime).
        level: "image" (eq. 2) or "class" (eq. 3).
        from_logits: whether predictions are logits (default) or probabilities.
        ignore_index: label value to ignore (e.g. 255), or None.
        name: loss name.
        dtype: loss dtype policy (the computation is float32 regardless).

    Example:
        >>> import numpy as np
        >>> loss = TiltedCrossEntropy(t=1.0, level="class", ignore_index=255)
        >>> labels = np.array([[[0, 1], [1, 255]]])
        >>> logits = np.eye(3)[np.minimum(labels, 2)] * 3.0
        >>> round(float(loss(labels, logits)), 4)
        0.0949
    """

    def __init__(self, t=1.0, level="image", from_logits=True, ignore_index=None,
                 name="tilted_cross_entropy", dtype=None, reduction="sum_over_batch_size"):
        owner = type(self).__name__
        check_choice(owner, "reduction", reduction, ("sum_over_batch_size",))
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.t = check_number(owner, "t", t)
        self.level = check_choice(owner, "level", level, _LEVELS)
        self.from_logits = check_flag(owner, "from_logits", from_logits)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            value = _tilted(type(self).__name__, y_true, y_pred, self.t, self.level,
                            self.from_logits, self.ignore_index, sample_weight)
            return scale_for_distribution(value)

    def call(self, y_true, y_pred):
        return _tilted(type(self).__name__, y_true, y_pred, self.t, self.level,
                       self.from_logits, self.ignore_index, None)

    def get_config(self):
        config = super().get_config()
        config.update(t=self.t, level=self.level, from_logits=self.from_logits,
                      ignore_index=self.ignore_index)
        return config
