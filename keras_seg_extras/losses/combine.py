"""Weighted sums of losses: any Keras losses (``CombinedLoss``) and the common BCE + Dice.

"SIIM-ACR Pneumothorax Segmentation", work report (2019), section 4.1.6, trains most stages
with binary cross-entropy plus Dice loss.
"""

import keras
from keras import ops

from keras_seg_extras._common import (call_member, check_choice, check_flag, check_number,
                                      check_vector, epsilon, fail, pixel_weights, register,
                                      scale_for_distribution)
from keras_seg_extras.losses._soft_overlap import soft_overlap_loss


def _resolve_member(owner, index, member):
    resolved = keras.losses.get(member) if isinstance(member, (str, dict)) else member
    if isinstance(resolved, type) and issubclass(resolved, keras.losses.Loss):
        resolved = resolved()
    if not isinstance(resolved, keras.losses.Loss):
        fail(owner, f"losses[{index}]", member,
             "must be a keras.losses.Loss instance (or its serialised form), e.g. "
             "keras.losses.BinaryCrossentropy() rather than the function binary_crossentropy")
    return resolved


@register
class CombinedLoss(keras.losses.Loss):
    """Weighted sum of Keras losses: ``L = sum_i w_i * L_i(y_true, y_pred, sample_weight)``.

    Each member applies its own reduction (and receives the sample weights), so members with
    different output shapes (per-pixel cross-entropy, per-image or per-batch Dice) combine
    without reshaping; the sample weights must then suit every member's output (per-image
    weights (B,) for per-image losses, Keras's own rules otherwise). The result is a float32
    scalar. The members are saved inside the
    combined loss's config (``keras.saving.serialize_keras_object``), so a model compiled with
    it round-trips through ``.keras`` as long as every member is a registered Keras loss.

    Args:
        losses: non-empty list of ``keras.losses.Loss`` instances (or their serialised dicts,
            or names of Keras loss classes such as "BinaryCrossentropy").
        weights: list of non-negative weights, one per loss; None gives weight 1 to each.
        name: loss name.
        dtype: dtype of the result (float32 by default).

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.losses import LovaszHingeLoss
        >>> loss = CombinedLoss([keras.losses.BinaryCrossentropy(from_logits=True),
        ...                      LovaszHingeLoss()], weights=[1.0, 0.5])
        >>> masks = np.array([[[1.0, 0.0], [1.0, 1.0]]])
        >>> logits = np.array([[[[2.0], [-2.0]], [[1.0], [-1.0]]]])
        >>> round(float(loss(masks, logits)), 4)
        0.8034
    """

    def __init__(self, losses, weights=None, name="combined_loss", dtype=None,
                 reduction="sum_over_batch_size"):
        owner = type(self).__name__
        check_choice(owner, "reduction", reduction, ("sum_over_batch_size",))
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(losses, (str, dict, keras.losses.Loss)) or not hasattr(losses, "__len__"):
            fail(owner, "losses", losses, "must be a list of losses")
        if len(losses) == 0:
            fail(owner, "losses", losses, "must not be empty")
        self.losses = [_resolve_member(owner, i, member) for i, member in enumerate(losses)]
        if weights is None:
            weights = [1.0] * len(self.losses)
        self.weights = check_vector(owner, "weights", weights, length=len(self.losses),
                                    non_negative=True).tolist()

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            total = 0.0
            for index, (weight, member) in enumerate(zip(self.weights, self.losses)):
                value = call_member(type(self).__name__, f"losses[{index}]", member, y_true,
                                    y_pred, sample_weight=sample_weight)
                total = total + weight * ops.cast(value, "float32")
            return ops.cast(total, self.dtype)

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.update(losses=[keras.saving.serialize_keras_object(member)
                              for member in self.losses], weights=list(self.weights))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["losses"] = [keras.saving.deserialize_keras_object(member)
                            for member in config["losses"]]
        return cls(**config)


def _binary_cross_entropy(targets, y_pred, from_logits):
    """Element-wise BCE in float32: log-sigmoid form on logits, clipped log on probabilities."""
    if from_logits:
        # -[y log s(x) + (1 - y) log(1 - s(x))] = max(x, 0) - x y + log(1 + exp(-|x|))
        return ops.relu(y_pred) - y_pred * targets + ops.log1p(ops.exp(-ops.abs(y_pred)))
    p = ops.clip(y_pred, epsilon(), 1.0 - epsilon())
    return -(targets * ops.log(p) + (1.0 - targets) * ops.log(1.0 - p))


def bce_dice_loss(y_true, y_pred, bce_weight=1.0, dice_weight=1.0, from_logits=False,
                  smooth=1.0, sample_weight=None):
    """Binary cross-entropy plus soft Dice loss for sigmoid outputs (SIIM-ACR report 2019, 4.1.6).

    ``L_b = bce_weight * mean_{h,w,c} BCE(y, p)_b + dice_weight * Dice``, where ``Dice`` is
    :func:`~keras_seg_extras.losses.dice_loss` in ``"multilabel"`` mode over the whole batch
    (``per_image=False``, classes averaged, 0 for an empty class predicted empty).

    Args:
        y_true: {0, 1} (or soft) targets with the shape of ``y_pred``, or (B, H, W) for one
            channel.
        y_pred: (B, H, W, C) sigmoid probabilities or logits (``from_logits=True``; the BCE then
            uses the log-sigmoid form, exact at logits of +-100).
        bce_weight: weight of the cross-entropy term (>= 0).
        dice_weight: weight of the Dice term (>= 0).
        from_logits: whether ``y_pred`` holds logits.
        smooth: Dice smoothing (>= 0).
        sample_weight: optional non-negative per-image (B,) or per-pixel (B, H, W) weights,
            applied inside both terms: each pixel's cross-entropy is multiplied by its weight
            (so a per-image weight multiplies that image's cross-entropy) and the Dice sums
            weight its p and y (a weight-0 image takes no part in the batch Dice).

    Returns:
        float32 (B,) tensor: each image's mean cross-entropy plus the batch Dice term.

    Example:
        >>> import numpy as np
        >>> masks = np.array([[[1.0, 0.0], [1.0, 1.0]]])                  # (1, 2, 2)
        >>> logits = np.array([[[[2.0], [-2.0]], [[1.0], [-1.0]]]])       # (1, 2, 2, 1)
        >>> np.round(np.asarray(bce_dice_loss(masks, logits, from_logits=True)), 4)
        array([0.6765], dtype=float32)
    """
    return _bce_dice("bce_dice_loss", y_true, y_pred, bce_weight, dice_weight, from_logits,
                     smooth, sample_weight)


def _check_bce_dice_arguments(owner, bce_weight, dice_weight, from_logits, smooth):
    bce_weight = check_number(owner, "bce_weight", bce_weight, minimum=0)
    dice_weight = check_number(owner, "dice_weight", dice_weight, minimum=0)
    if bce_weight == 0 and dice_weight == 0:
        fail(owner, "dice_weight", dice_weight, "and `bce_weight` must not both be 0")
    return (bce_weight, dice_weight, check_flag(owner, "from_logits", from_logits),
            check_number(owner, "smooth", smooth, minimum=0))


def _bce_dice(owner, y_true, y_pred, bce_weight, dice_weight, from_logits, smooth,
              sample_weight=None):
    bce_weight, dice_weight, from_logits, smooth = _check_bce_dice_arguments(
        owner, bce_weight, dice_weight, from_logits, smooth)
    dice = soft_overlap_loss(owner, "dice", y_true, y_pred, "multilabel", from_logits, smooth,
                         False, None, sample_weight)
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    targets = ops.cast(ops.convert_to_tensor(y_true), "float32")
    if len(targets.shape) == 3:
        targets = ops.expand_dims(targets, -1)
    pixel_bce = _binary_cross_entropy(targets, y_pred, from_logits)
    weights = pixel_weights(owner, sample_weight, False)
    if weights is not None:
        pixel_bce = pixel_bce * weights
    bce = ops.mean(pixel_bce, axis=(1, 2, 3))
    return bce_weight * bce + dice_weight * dice


@register
class BCEDiceLoss(keras.losses.Loss):
    """Binary cross-entropy plus soft Dice; see :func:`bce_dice_loss`.

    Keras's reduction averages the per-image values, so the result is the batch mean of the
    cross-entropy plus the batch Dice term. Per-image (B,) or per-pixel (B, H, W) sample
    weights go inside both terms (see :func:`bce_dice_loss`): with weights w_b the loss is
    ``bce_weight * sum_b w_b BCE_b / B + dice_weight * Dice_w``, Dice_w the batch Dice with
    every image's pixels weighted by w_b, so a weight-0 image counts in neither term.
    ("mean_with_sample_weight" reduces like "sum_over_batch_size": the weights are already
    inside.) A scalar weight multiplies the loss, as for every Keras loss.

    Example:
        >>> import numpy as np
        >>> loss = BCEDiceLoss(from_logits=True)
        >>> masks = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
        >>> logits = np.array([[[[2.0], [-2.0]], [[1.0], [-1.0]]],
        ...                    [[[-3.0], [-3.0]], [[-3.0], [-3.0]]]])
        >>> round(float(loss(masks, logits)), 4)
        0.4901
    """

    def __init__(self, bce_weight=1.0, dice_weight=1.0, from_logits=False, smooth=1.0,
                 reduction="sum_over_batch_size", name="bce_dice_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.bce_weight, self.dice_weight, self.from_logits, self.smooth = (
            _check_bce_dice_arguments(type(self).__name__, bce_weight, dice_weight, from_logits,
                                      smooth))

    def call(self, y_true, y_pred):
        return _bce_dice(type(self).__name__, y_true, y_pred, self.bce_weight,
                         self.dice_weight, self.from_logits, self.smooth)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is None or len(ops.shape(sample_weight)) == 0:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        with keras.name_scope(self.name):
            values = _bce_dice(type(self).__name__, y_true, y_pred, self.bce_weight,
                               self.dice_weight, self.from_logits, self.smooth, sample_weight)
            if self.reduction in (None, "none"):
                return ops.cast(values, self.dtype)
            total = ops.sum(values)
            if self.reduction != "sum":
                total = scale_for_distribution(total / ops.cast(ops.shape(values)[0], "float32"))
            return ops.cast(total, self.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(bce_weight=self.bce_weight, dice_weight=self.dice_weight,
                      from_logits=self.from_logits, smooth=self.smooth)
        return config
