"""Overlap losses: soft Dice, soft Jaccard (IoU) and the Lovász extensions of the Jaccard loss.

Paper 003 (section 4.1.6) trains with BCE + Dice and tries the Lovász loss; the Lovász losses
follow Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable surrogate for
the optimization of the intersection-over-union measure in neural networks", CVPR 2018.

Shared conventions:

- Predictions are channels-last (B, H, W, C). ``mode="binary"``: one sigmoid channel;
  ``"multilabel"``: C independent sigmoid channels with targets of the same shape;
  ``"multiclass"``: C softmax channels with integer labels (B, H, W[, 1]) or one-hot labels.
- Every value is computed in float32 whatever the input dtype.
- Empty classes: where a class has neither predicted nor true mass (|X| + |Y| = 0) its Dice or
  Jaccard loss is 0 (a perfect prediction of an empty mask), never NaN, whatever ``smooth``.
  ``keras.losses.Dice`` gives 1 there.
- ``ignore_index``: pixels with that label count neither in the prediction nor in the truth.
- Sample weights. ``per_image=True``: one value per image, weighted by Keras's reduction like
  any per-sample loss (``sum_b w_b L_b / B``). ``per_image=False`` (one value per batch): the
  weights enter the sums of the loss, per image (B,) or per pixel (B, H, W), so a pixel of
  weight n counts as n copies of it and a weight-0 image takes no part at all (multiplying
  the batch's single value by the weights, as Keras would, leaves a weight-0 image inside the
  sums and only rescales the loss). A scalar weight multiplies the loss, as for every Keras
  loss.
"""

import keras
import numpy as np
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_choice,
    check_flag,
    check_number,
    check_optional_int,
    concrete_numpy,
    fail,
    nan_if_any_nan,
    num_channels,
    register,
    scale_for_distribution,
    segmentation_targets,
    static_rank,
)

MODES = ("binary", "multilabel", "multiclass")


def _prediction(owner, y_pred, mode):
    """Check rank and channel count against ``mode``; return float32 predictions and C."""
    y_pred = ops.convert_to_tensor(y_pred)
    static_rank(owner, "y_pred", y_pred, (4,))
    channels = num_channels(owner, y_pred)
    shape = f"tensor of shape {tuple(y_pred.shape)}"
    if mode == "binary" and channels != 1:
        fail(owner, "y_pred", shape, 'must have 1 channel with mode="binary" '
             '(use "multilabel" for several sigmoid channels)')
    if mode == "multiclass" and channels < 2:
        fail(owner, "y_pred", shape, 'must have at least 2 channels with mode="multiclass"')
    return as_float32(y_pred), channels


def _probabilities_and_targets(owner, y_true, y_pred, mode, from_logits, ignore_index):
    """Probabilities, targets and validity, all (B, H, W, C) float32, ignored pixels zeroed."""
    scores, channels = _prediction(owner, y_pred, mode)
    if mode == "multiclass":
        probabilities = ops.softmax(scores, axis=-1) if from_logits else scores
        targets, valid = segmentation_targets(owner, y_true, channels, ignore_index,
                                              y_pred=scores)
    else:
        probabilities = ops.sigmoid(scores) if from_logits else scores
        targets, valid = segmentation_targets(owner, y_true, channels, ignore_index,
                                              binary=True, y_pred=scores)
    return probabilities * valid, targets, valid


def _pixel_weights(owner, sample_weight, per_image):
    """Sample weights of a batch-global loss as float32 (B, H, W, 1) (or (B, 1, 1, 1)), or None.

    Per-image (B,) / (B, 1) and per-pixel (B, H, W) / (B, H, W, 1) weights are accepted; they
    must be >= 0 (checked on concrete values). With ``per_image=True`` Keras's reduction weights
    the per-image values instead, so weights are not accepted here.
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


def _overlap_loss(owner, kind, y_true, y_pred, mode, from_logits, smooth, per_image,
                  ignore_index, sample_weight=None):
    check_choice(owner, "mode", mode, MODES)
    check_flag(owner, "from_logits", from_logits)
    check_flag(owner, "per_image", per_image)
    smooth = check_number(owner, "smooth", smooth, minimum=0)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    weights = _pixel_weights(owner, sample_weight, per_image)
    probabilities, targets, _ = _probabilities_and_targets(
        owner, y_true, y_pred, mode, from_logits, ignore_index)
    weighted = probabilities if weights is None else probabilities * weights
    axes = (1, 2) if per_image else (0, 1, 2)
    intersection = ops.sum(weighted * targets, axis=axes)
    cardinality = ops.sum(weighted, axis=axes) + ops.sum(
        targets if weights is None else targets * weights, axis=axes)
    occupied = ops.not_equal(cardinality, 0.0)  # NaN predictions stay NaN
    if kind == "dice":
        numerator, denominator = 2.0 * intersection + smooth, cardinality + smooth
    else:
        numerator, denominator = intersection + smooth, cardinality - intersection + smooth
    # A safe denominator keeps the unused branch (and its gradient) finite when smooth = 0.
    denominator = ops.where(occupied, denominator, ops.ones_like(denominator))
    per_class = ops.where(occupied, 1.0 - numerator / denominator, ops.zeros_like(numerator))
    return ops.mean(per_class, axis=-1)


def dice_loss(y_true, y_pred, mode, from_logits=False, smooth=1.0, per_image=False,
              ignore_index=None, sample_weight=None):
    """Soft Dice loss, per class then averaged over classes.

    For each class (channel) c, with p the predicted probabilities and y the targets summed
    over the valid pixels::

        L_c = 1 - (2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth)
        L_c = 0 where sum(p) + sum(y) = 0

    and the loss is the mean of L_c over **all** C classes (an empty class predicted empty
    contributes 0, as a perfect class). Dice = 2TP / (2TP + FP + FN), paper 003 section 4.1.5.

    Args:
        y_true: targets; see the module docstring for the forms each ``mode`` takes.
        y_pred: (B, H, W, C) logits or probabilities.
        mode: "binary", "multilabel" or "multiclass".
        from_logits: apply sigmoid (binary, multilabel) or softmax (multiclass) first.
        smooth: additive smoothing s >= 0 in numerator and denominator.
        per_image: False: the sums run over the whole batch (B, H, W) and the result is one
            scalar. True: the sums run over each image (H, W), each image gets the mean over
            classes of its L_c, and the result has shape (B,) (a Keras loss then averages it).
        ignore_index: label value whose pixels are left out of every sum, or None.
        sample_weight: with ``per_image=False`` only: non-negative per-image (B,) or
            per-pixel (B, H, W) weights multiplying each pixel's p and y inside the sums
            (``sum(w p y)``, ``sum(w p) + sum(w y)``); a weight-0 image takes no part.

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> loss = dice_loss(masks, logits, mode="binary", from_logits=True)
    """
    return _overlap_loss("dice_loss", "dice", y_true, y_pred, mode, from_logits, smooth,
                         per_image, ignore_index, sample_weight)


def jaccard_loss(y_true, y_pred, mode, from_logits=False, smooth=1.0, per_image=False,
                 ignore_index=None, sample_weight=None):
    """Soft Jaccard (IoU) loss, per class then averaged over classes.

    For each class c::

        L_c = 1 - (sum(p * y) + smooth) / (sum(p) + sum(y) - sum(p * y) + smooth)
        L_c = 0 where sum(p) + sum(y) = 0

    IoU = TP / (TP + FP + FN), paper 003 section 4.1.5. Arguments, class averaging and
    ``per_image`` and ``sample_weight`` exactly as :func:`dice_loss`.

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> loss = jaccard_loss(labels, logits, mode="multiclass", from_logits=True)
    """
    return _overlap_loss("jaccard_loss", "jaccard", y_true, y_pred, mode, from_logits,
                         smooth, per_image, ignore_index, sample_weight)


# ----------------------------------------------------------------------------- Lovász


def _lovasz_sorted_loss(errors, targets, weights=None):
    """Lovász extension of the (pixel-weighted) Jaccard loss along the last axis.

    ``errors`` (..., N) are non-negative; ``targets`` (..., N) in {0, 1}. Entries that must
    not count (ignored pixels) carry error 0 and target 0: they sort after every positive
    error, so they change no term of the sum (Berman et al. 2018, Algorithm 1 and eq. 9)::

        sort errors descending, y* = targets in that order, g = sum(y*)
        J_i = 1 - (g - cumsum(y*)_i) / (g + cumsum(1 - y*)_i)
        loss = sum_i errors*_i * (J_i - J_{i-1}),  J_0 = 0

    ``weights`` (..., N) >= 0 weight the pixels inside the Jaccard set function (cumsum(w y*),
    cumsum(w (1 - y*)), g = sum(w y*)): a pixel of weight n counts as n copies of it, one of
    weight 0 not at all.
    """
    order = ops.argsort(-ops.stop_gradient(errors), axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    targets_sorted = ops.stop_gradient(ops.take_along_axis(targets, order, axis=-1))
    if weights is None:
        positives, negatives = targets_sorted, 1.0 - targets_sorted
    else:
        weights_sorted = ops.stop_gradient(ops.take_along_axis(weights, order, axis=-1))
        positives = weights_sorted * targets_sorted
        negatives = weights_sorted * (1.0 - targets_sorted)
    total = ops.sum(positives, axis=-1, keepdims=True)
    intersection = total - ops.cumsum(positives, axis=-1)
    union = total + ops.cumsum(negatives, axis=-1)  # >= 1 everywhere without weights
    occupied = union > 0  # leading weight-0 pixels of an empty group: no step
    jaccard = ops.where(occupied, 1.0 - intersection / ops.where(occupied, union, 1.0), 0.0)
    gradient = ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
    return ops.sum(errors_sorted * ops.stop_gradient(gradient), axis=-1)


def _flatten(x, per_image):
    """(B, H, W) -> (B, H*W) per image, or (1, B*H*W) for the whole batch."""
    if per_image:
        return ops.reshape(x, (ops.shape(x)[0], -1))
    return ops.reshape(x, (1, -1))


def _binary_inputs(owner, y_true, y_pred, per_image, ignore_index):
    check_flag(owner, "per_image", per_image)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    logits, _ = _prediction(owner, y_pred, "binary")
    targets, valid = segmentation_targets(owner, y_true, 1, ignore_index, binary=True,
                                          y_pred=logits)
    return logits[..., 0], targets[..., 0], valid[..., 0]


def _hinge(logits, targets, valid, per_image, weights):
    signs = 2.0 * targets - 1.0
    errors = ops.relu(1.0 - logits * signs) * valid
    if weights is not None:
        weights = _flatten(ops.broadcast_to(weights[..., 0], ops.shape(errors)), per_image)
    losses = _lovasz_sorted_loss(_flatten(errors, per_image), _flatten(targets * valid, per_image),
                                 weights)
    return losses if per_image else losses[0]


def _lovasz_binary(owner, symmetric, y_true, y_pred, per_image, ignore_index,
                   sample_weight=None):
    logits, targets, valid = _binary_inputs(owner, y_true, y_pred, per_image, ignore_index)
    weights = _pixel_weights(owner, sample_weight, per_image)
    loss = _hinge(logits, targets, valid, per_image, weights)
    if symmetric:
        loss = 0.5 * (loss + _hinge(-logits, (1.0 - targets) * valid, valid, per_image, weights))
    return nan_if_any_nan(loss, logits, targets)  # sorting may move a NaN out of the sum


def lovasz_hinge(y_true, y_pred, per_image=True, ignore_index=None, sample_weight=None):
    """Lovász hinge loss for binary segmentation on logits (Berman et al. 2018, section 3.1).

    Per pixel the hinge error is ``max(0, 1 - x * s)`` with x the logit and s = 2y - 1; the
    errors are sorted in decreasing order and weighted by the gradient of the Jaccard loss
    with respect to the sorted ground truth (the Lovász extension), which makes the loss a
    tight convex surrogate of 1 - IoU of the foreground.

    Args:
        y_true: {0, 1} masks (B, H, W) or (B, H, W, 1); ``ignore_index`` marks pixels to skip.
        y_pred: (B, H, W, 1) logits (not probabilities).
        per_image: True: one loss per image over its valid pixels, result (B,) (the Keras
            reduction averages it; an image with no valid pixel scores 0 and still counts in
            the mean, as in the reference implementation). False: one loss over all valid
            pixels of the batch, a scalar.
        ignore_index: label value of pixels to leave out, or None.
        sample_weight: with ``per_image=False`` only: non-negative per-image (B,) or
            per-pixel (B, H, W) weights of the pixels inside the Jaccard set function (a
            pixel of weight n counts as n copies, a weight-0 image not at all).

    Returns:
        float32 (B,) tensor (``per_image=True``) or scalar.

    Example:
        >>> loss = lovasz_hinge(masks, logits)
    """
    return _lovasz_binary("lovasz_hinge", False, y_true, y_pred, per_image, ignore_index,
                          sample_weight)


def symmetric_lovasz(y_true, y_pred, per_image=True, ignore_index=None, sample_weight=None):
    """Mean of the Lovász hinge on (logits, y) and on (-logits, 1 - y).

    The second term treats the background as the foreground, so empty masks (no foreground)
    still give an IoU-shaped signal. Arguments and result as :func:`lovasz_hinge`.

    Example:
        >>> loss = symmetric_lovasz(masks, logits)
    """
    return _lovasz_binary("symmetric_lovasz", True, y_true, y_pred, per_image, ignore_index,
                          sample_weight)


def _check_classes(owner, classes):
    if isinstance(classes, str):
        return check_choice(owner, "classes", classes, ("all", "present"))
    try:
        ids = list(classes)
    except TypeError:
        fail(owner, "classes", classes, 'must be "all", "present" or a list of class ids')
    if not ids:
        fail(owner, "classes", classes, "must not be empty")
    ids = [check_number(owner, "classes", c, minimum=0, integer=True) for c in ids]
    if len(set(ids)) != len(ids):
        fail(owner, "classes", classes, "must not repeat a class id")
    return ids


def _lovasz_softmax(owner, y_true, y_pred, classes, per_image, ignore_index, from_logits,
                    sample_weight=None):
    classes = _check_classes(owner, classes)
    check_flag(owner, "per_image", per_image)
    check_flag(owner, "from_logits", from_logits)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    probabilities, targets, valid = _probabilities_and_targets(
        owner, y_true, y_pred, "multiclass", from_logits, ignore_index)
    num_classes = probabilities.shape[-1]
    errors = ops.abs(targets - probabilities) * valid
    weights = _pixel_weights(owner, sample_weight, per_image)

    def per_class_rows(x):  # (B, H, W, C) -> (B or 1, C, N)
        rows = ops.reshape(x, (ops.shape(x)[0], -1, num_classes) if per_image
                           else (1, -1, num_classes))
        return ops.transpose(rows, (0, 2, 1))

    class_targets = per_class_rows(targets)
    if weights is not None:
        weights = per_class_rows(ops.broadcast_to(weights, ops.shape(errors)))
        class_targets_weighted = class_targets * weights
    else:
        class_targets_weighted = class_targets
    losses = _lovasz_sorted_loss(per_class_rows(errors), class_targets, weights)  # (B or 1, C)
    if classes == "present":  # present with a weight > 0
        weights = ops.cast(ops.sum(class_targets_weighted, axis=-1) > 0, "float32")
    elif classes == "all":
        weights = ops.ones_like(losses)
    else:
        if max(classes) >= num_classes:
            fail(owner, "classes", classes,
                 f"must hold class ids below the {num_classes} channels of y_pred")
        weights = ops.sum(ops.one_hot(ops.convert_to_tensor(classes), num_classes,
                                      dtype="float32"), axis=0)[None, :] * ops.ones_like(losses)
    count = ops.sum(weights, axis=-1)
    mean = ops.sum(losses * weights, axis=-1) / ops.maximum(count, 1.0)
    mean = nan_if_any_nan(mean, probabilities, targets)  # sorting may move a NaN out of the sum
    return mean if per_image else mean[0]


def lovasz_softmax(y_true, y_pred, classes="present", per_image=False, ignore_index=None,
                   from_logits=True, sample_weight=None):
    """Lovász-Softmax loss for multi-class segmentation (Berman et al. 2018, section 3.2).

    For each class c the pixel errors are ``|1[y = c] - p_c|`` over the valid pixels; the
    Lovász extension of the Jaccard loss of class c is their dot product, sorted decreasingly,
    with the gradient of the Jaccard loss w.r.t. the sorted foreground indicator. The loss is
    the mean of these per-class values over the selected classes.

    Args:
        y_true: integer labels (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, C).
        y_pred: (B, H, W, C) logits (``from_logits=True``) or softmax probabilities.
        classes: which classes the mean runs over: "all" (every class, also absent ones),
            "present" (the classes with at least one valid pixel in the truth: in the whole
            batch when ``per_image=False``, in each image separately when ``per_image=True``)
            or a list of class ids (always included, present or not).
        per_image: True: one loss per image (its own present classes), result (B,), which a
            Keras loss averages over images. False: one loss over all valid pixels of the
            batch, a scalar.
        ignore_index: label value whose pixels are left out, or None.
        from_logits: apply softmax to ``y_pred`` first.
        sample_weight: with ``per_image=False`` only, as in :func:`lovasz_hinge`; a class
            counts as present when it has a pixel of weight > 0.

    Returns:
        float32 (B,) tensor or scalar. 0 (never NaN) where no class is selected, e.g. an image
        whose pixels are all ignored with ``classes="present"``.

    Example:
        >>> loss = lovasz_softmax(labels, logits, classes="present", ignore_index=255)
    """
    return _lovasz_softmax("lovasz_softmax", y_true, y_pred, classes, per_image, ignore_index,
                           from_logits, sample_weight)


# ----------------------------------------------------------------------------- classes


class _OverlapLossBase(keras.losses.Loss):
    """Stores the arguments, forwards the Keras ones and writes ``get_config``.

    ``per_image=False`` makes ``call`` return one scalar for the batch. Keras's reduction
    divides a loss by the number of ``tf.distribute`` replicas only when the weighted values
    are not a scalar, so without sample weights such a scalar would reach the summed
    (all-reduced) gradients unscaled: R times the mean of the replicas' losses. ``__call__``
    applies the 1/R scaling in exactly that case, so under R replicas the step's loss is the
    mean over replicas of each replica's batch-global loss (as for ``TiltedCrossEntropy``).

    Sample weights with ``per_image=False``: per-image (B,) or per-pixel (B, H, W) weights go
    into the sums of the loss (``_loss(..., sample_weight)``), never onto the batch's single
    value; see the module docstring. Scalar weights and Keras masks take Keras's own path.

    Each concrete class defines ``_loss(y_true, y_pred, sample_weight=None)``, a call of its
    pure function with the stored arguments.
    """

    _arguments = ()

    def call(self, y_true, y_pred):
        return self._loss(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        scalar_weight = sample_weight is None or len(ops.shape(sample_weight)) == 0
        masked = getattr(y_pred, "_keras_mask", None) is not None  # Keras 3 keeps masks there
        if self.per_image or scalar_weight or masked:
            value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        else:
            with keras.name_scope(self.name):
                value = ops.cast(self._loss(y_true, y_pred, sample_weight), self.dtype)
        if (not self.per_image and not masked
                and self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight")):
            value = scale_for_distribution(value)
        return value

    def get_config(self):
        config = super().get_config()
        config.update({name: getattr(self, name) for name in self._arguments})
        return config


class _SoftOverlapLoss(_OverlapLossBase):
    """Dice and Jaccard classes: same arguments, ``_kind`` picks the formula."""

    _kind = None
    _arguments = ("mode", "from_logits", "smooth", "per_image", "ignore_index")

    def __init__(self, mode, from_logits, smooth, per_image, ignore_index, reduction, name,
                 dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.mode = check_choice(owner, "mode", mode, MODES)
        self.from_logits = check_flag(owner, "from_logits", from_logits)
        self.smooth = check_number(owner, "smooth", smooth, minimum=0)
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _overlap_loss(type(self).__name__, self._kind, y_true, y_pred, self.mode,
                             self.from_logits, self.smooth, self.per_image, self.ignore_index,
                             sample_weight)


@register
class DiceLoss(_SoftOverlapLoss):
    """Soft Dice loss as a Keras loss; see :func:`dice_loss` for the formula and arguments.

    With ``per_image=False`` (default) the loss is computed over the whole batch; per-image
    (B,) or per-pixel (B, H, W) sample weights then weight the pixels inside its sums (a
    weight-0 image takes no part). With ``per_image=True`` each image has its own value and
    the reduction averages them (sample weights weight images). Under ``tf.distribute`` (MirroredStrategy) with
    ``per_image=False`` each replica computes the Dice of its own share of the batch and the
    step's loss is the mean of those replica values (not the Dice of the global batch).

    Example:
        >>> model.compile(loss=DiceLoss("binary", from_logits=True))
    """

    _kind = "dice"

    def __init__(self, mode, from_logits=False, smooth=1.0, per_image=False, ignore_index=None,
                 reduction="sum_over_batch_size", name="dice_loss", dtype=None):
        super().__init__(mode, from_logits, smooth, per_image, ignore_index, reduction, name,
                         dtype)


@register
class JaccardLoss(_SoftOverlapLoss):
    """Soft Jaccard (IoU) loss as a Keras loss; see :func:`jaccard_loss` and :class:`DiceLoss`.

    Example:
        >>> model.compile(loss=JaccardLoss("multiclass", from_logits=True, ignore_index=255))
    """

    _kind = "jaccard"

    def __init__(self, mode, from_logits=False, smooth=1.0, per_image=False, ignore_index=None,
                 reduction="sum_over_batch_size", name="jaccard_loss", dtype=None):
        super().__init__(mode, from_logits, smooth, per_image, ignore_index, reduction, name,
                         dtype)


class _BinaryLovaszBase(_OverlapLossBase):
    _arguments = ("per_image", "ignore_index")

    def __init__(self, per_image, ignore_index, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)


@register
class LovaszHingeLoss(_BinaryLovaszBase):
    """Lovász hinge loss on binary logits; see :func:`lovasz_hinge`.

    With ``per_image=True`` (default) Keras averages the per-image values over the batch.

    Example:
        >>> model.compile(loss=LovaszHingeLoss(per_image=True))   # model outputs logits
    """

    def __init__(self, per_image=True, ignore_index=None, reduction="sum_over_batch_size",
                 name="lovasz_hinge_loss", dtype=None):
        super().__init__(per_image, ignore_index, reduction, name, dtype)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _lovasz_binary(type(self).__name__, False, y_true, y_pred, self.per_image,
                              self.ignore_index, sample_weight)


@register
class SymmetricLovaszLoss(_BinaryLovaszBase):
    """Mean of the Lovász hinge on (logits, y) and (-logits, 1 - y); see :func:`symmetric_lovasz`.

    Example:
        >>> model.compile(loss=SymmetricLovaszLoss())
    """

    def __init__(self, per_image=True, ignore_index=None, reduction="sum_over_batch_size",
                 name="symmetric_lovasz_loss", dtype=None):
        super().__init__(per_image, ignore_index, reduction, name, dtype)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _lovasz_binary(type(self).__name__, True, y_true, y_pred, self.per_image,
                              self.ignore_index, sample_weight)


@register
class LovaszSoftmaxLoss(_OverlapLossBase):
    """Lovász-Softmax loss for multi-class segmentation; see :func:`lovasz_softmax`.

    Example:
        >>> model.compile(loss=LovaszSoftmaxLoss(classes="present", ignore_index=255))
    """

    _arguments = ("classes", "per_image", "ignore_index", "from_logits")

    def __init__(self, classes="present", per_image=False, ignore_index=None, from_logits=True,
                 reduction="sum_over_batch_size", name="lovasz_softmax_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.classes = _check_classes(owner, classes)
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        self.from_logits = check_flag(owner, "from_logits", from_logits)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _lovasz_softmax(type(self).__name__, y_true, y_pred, self.classes,
                               self.per_image, self.ignore_index, self.from_logits,
                               sample_weight)
