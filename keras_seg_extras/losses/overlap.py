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
"""

import keras
from keras import ops

from keras_seg_extras._common import (
    as_float32,
    check_choice,
    check_number,
    check_optional_int,
    fail,
    nan_if_any_nan,
    num_channels,
    register,
    segmentation_targets,
    static_rank,
)
from keras_seg_extras.losses.tilted import _scale_for_distribution

MODES = ("binary", "multilabel", "multiclass")


def check_flag(owner, argument, value):
    """A boolean argument must be a real bool (not 0/1, not a string)."""
    if not isinstance(value, bool):
        fail(owner, argument, value, "must be True or False")
    return value


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


def _overlap_loss(owner, kind, y_true, y_pred, mode, from_logits, smooth, per_image,
                  ignore_index):
    check_choice(owner, "mode", mode, MODES)
    check_flag(owner, "from_logits", from_logits)
    check_flag(owner, "per_image", per_image)
    smooth = check_number(owner, "smooth", smooth, minimum=0)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    probabilities, targets, _ = _probabilities_and_targets(
        owner, y_true, y_pred, mode, from_logits, ignore_index)
    axes = (1, 2) if per_image else (0, 1, 2)
    intersection = ops.sum(probabilities * targets, axis=axes)
    cardinality = ops.sum(probabilities, axis=axes) + ops.sum(targets, axis=axes)
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
              ignore_index=None):
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

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> loss = dice_loss(masks, logits, mode="binary", from_logits=True)
    """
    return _overlap_loss("dice_loss", "dice", y_true, y_pred, mode, from_logits, smooth,
                         per_image, ignore_index)


def jaccard_loss(y_true, y_pred, mode, from_logits=False, smooth=1.0, per_image=False,
                 ignore_index=None):
    """Soft Jaccard (IoU) loss, per class then averaged over classes.

    For each class c::

        L_c = 1 - (sum(p * y) + smooth) / (sum(p) + sum(y) - sum(p * y) + smooth)
        L_c = 0 where sum(p) + sum(y) = 0

    IoU = TP / (TP + FP + FN), paper 003 section 4.1.5. Arguments, class averaging and
    ``per_image`` exactly as :func:`dice_loss`.

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> loss = jaccard_loss(labels, logits, mode="multiclass", from_logits=True)
    """
    return _overlap_loss("jaccard_loss", "jaccard", y_true, y_pred, mode, from_logits,
                         smooth, per_image, ignore_index)


# ----------------------------------------------------------------------------- Lovász


def _lovasz_sorted_loss(errors, targets):
    """Lovász extension of the Jaccard loss along the last axis.

    ``errors`` (..., N) are non-negative; ``targets`` (..., N) in {0, 1}. Entries that must
    not count (ignored pixels) carry error 0 and target 0: they sort after every positive
    error, so they change no term of the sum (Berman et al. 2018, Algorithm 1 and eq. 9)::

        sort errors descending, y* = targets in that order, g = sum(y*)
        J_i = 1 - (g - cumsum(y*)_i) / (g + cumsum(1 - y*)_i)
        loss = sum_i errors*_i * (J_i - J_{i-1}),  J_0 = 0
    """
    order = ops.argsort(-ops.stop_gradient(errors), axis=-1)
    errors_sorted = ops.take_along_axis(errors, order, axis=-1)
    targets_sorted = ops.stop_gradient(ops.take_along_axis(targets, order, axis=-1))
    total = ops.sum(targets_sorted, axis=-1, keepdims=True)
    intersection = total - ops.cumsum(targets_sorted, axis=-1)
    union = total + ops.cumsum(1.0 - targets_sorted, axis=-1)  # >= 1 everywhere
    jaccard = 1.0 - intersection / union
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


def _hinge(logits, targets, valid, per_image):
    signs = 2.0 * targets - 1.0
    errors = ops.relu(1.0 - logits * signs) * valid
    losses = _lovasz_sorted_loss(_flatten(errors, per_image), _flatten(targets * valid, per_image))
    return losses if per_image else losses[0]


def _lovasz_binary(owner, symmetric, y_true, y_pred, per_image, ignore_index):
    logits, targets, valid = _binary_inputs(owner, y_true, y_pred, per_image, ignore_index)
    loss = _hinge(logits, targets, valid, per_image)
    if symmetric:
        loss = 0.5 * (loss + _hinge(-logits, (1.0 - targets) * valid, valid, per_image))
    return nan_if_any_nan(loss, logits, targets)  # sorting may move a NaN out of the sum


def lovasz_hinge(y_true, y_pred, per_image=True, ignore_index=None):
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

    Returns:
        float32 (B,) tensor (``per_image=True``) or scalar.

    Example:
        >>> loss = lovasz_hinge(masks, logits)
    """
    return _lovasz_binary("lovasz_hinge", False, y_true, y_pred, per_image, ignore_index)


def symmetric_lovasz(y_true, y_pred, per_image=True, ignore_index=None):
    """Mean of the Lovász hinge on (logits, y) and on (-logits, 1 - y).

    The second term treats the background as the foreground, so empty masks (no foreground)
    still give an IoU-shaped signal. Arguments and result as :func:`lovasz_hinge`.

    Example:
        >>> loss = symmetric_lovasz(masks, logits)
    """
    return _lovasz_binary("symmetric_lovasz", True, y_true, y_pred, per_image, ignore_index)


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


def _lovasz_softmax(owner, y_true, y_pred, classes, per_image, ignore_index, from_logits):
    classes = _check_classes(owner, classes)
    check_flag(owner, "per_image", per_image)
    check_flag(owner, "from_logits", from_logits)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    probabilities, targets, valid = _probabilities_and_targets(
        owner, y_true, y_pred, "multiclass", from_logits, ignore_index)
    num_classes = probabilities.shape[-1]
    errors = ops.abs(targets - probabilities) * valid

    def per_class_rows(x):  # (B, H, W, C) -> (B or 1, C, N)
        rows = ops.reshape(x, (ops.shape(x)[0], -1, num_classes) if per_image
                           else (1, -1, num_classes))
        return ops.transpose(rows, (0, 2, 1))

    class_targets = per_class_rows(targets)
    losses = _lovasz_sorted_loss(per_class_rows(errors), class_targets)  # (B or 1, C)
    if classes == "present":
        weights = ops.cast(ops.sum(class_targets, axis=-1) > 0, "float32")
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
                   from_logits=True):
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

    Returns:
        float32 (B,) tensor or scalar. 0 (never NaN) where no class is selected, e.g. an image
        whose pixels are all ignored with ``classes="present"``.

    Example:
        >>> loss = lovasz_softmax(labels, logits, classes="present", ignore_index=255)
    """
    return _lovasz_softmax("lovasz_softmax", y_true, y_pred, classes, per_image, ignore_index,
                           from_logits)


# ----------------------------------------------------------------------------- classes


class _OverlapLossBase(keras.losses.Loss):
    """Stores the arguments, forwards the Keras ones and writes ``get_config``.

    ``per_image=False`` makes ``call`` return one scalar for the batch. Keras's reduction
    divides a loss by the number of ``tf.distribute`` replicas only when the weighted values
    are not a scalar, so without sample weights such a scalar would reach the summed
    (all-reduced) gradients unscaled: R times the mean of the replicas' losses. ``__call__``
    applies the 1/R scaling in exactly that case, so under R replicas the step's loss is the
    mean over replicas of each replica's batch-global loss (as for ``TiltedCrossEntropy``).
    """

    _arguments = ()

    def __call__(self, y_true, y_pred, sample_weight=None):
        value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        unscaled_by_keras = (
            sample_weight is None or len(ops.shape(sample_weight)) == 0
        ) and getattr(y_pred, "_keras_mask", None) is None  # Keras 3 keeps masks there
        if (not self.per_image and unscaled_by_keras
                and self.reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight")):
            value = _scale_for_distribution(value)
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

    def call(self, y_true, y_pred):
        return _overlap_loss(type(self).__name__, self._kind, y_true, y_pred, self.mode,
                             self.from_logits, self.smooth, self.per_image, self.ignore_index)


@register
class DiceLoss(_SoftOverlapLoss):
    """Soft Dice loss as a Keras loss; see :func:`dice_loss` for the formula and arguments.

    With ``per_image=False`` (default) the loss is computed over the whole batch and Keras's
    reduction leaves that scalar unchanged (sample weights then only scale it by their
    mean). With ``per_image=True`` each image has its own value and the reduction averages
    them (sample weights weight images). Under ``tf.distribute`` (MirroredStrategy) with
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

    def call(self, y_true, y_pred):
        return _lovasz_binary(type(self).__name__, False, y_true, y_pred, self.per_image,
                              self.ignore_index)


@register
class SymmetricLovaszLoss(_BinaryLovaszBase):
    """Mean of the Lovász hinge on (logits, y) and (-logits, 1 - y); see :func:`symmetric_lovasz`.

    Example:
        >>> model.compile(loss=SymmetricLovaszLoss())
    """

    def __init__(self, per_image=True, ignore_index=None, reduction="sum_over_batch_size",
                 name="symmetric_lovasz_loss", dtype=None):
        super().__init__(per_image, ignore_index, reduction, name, dtype)

    def call(self, y_true, y_pred):
        return _lovasz_binary(type(self).__name__, True, y_true, y_pred, self.per_image,
                              self.ignore_index)


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

    def call(self, y_true, y_pred):
        return _lovasz_softmax(type(self).__name__, y_true, y_pred, self.classes,
                               self.per_image, self.ignore_index, self.from_logits)
