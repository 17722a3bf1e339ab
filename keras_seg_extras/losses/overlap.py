"""Overlap losses: soft Dice, soft Jaccard (IoU) and the Lovász extensions of the Jaccard loss.

"SIIM-ACR Pneumothorax Segmentation", work report (2019), section 4.1.6, trains with BCE +
Dice and tries the Lovász loss; the Lovász losses follow Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable surrogate for
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

from keras_seg_extras.losses._soft_overlap import (
    MODES as _MODES,
    prediction,
    probabilities_and_targets,
    soft_overlap_loss,
)
from keras_seg_extras._common import (
    as_float32,
    check_binary_values,
    check_choice,
    check_flag,
    check_number,
    check_optional_int,
    check_same_shape,
    concrete_numpy,
    fail,
    nan_if_any_nan,
    num_channels,
    pixel_weights,
    register,
    renamed_argument,
    scale_for_distribution,
    segmentation_targets,
    static_rank,
)

def dice_loss(y_true, y_pred, mode, from_logits=False, smooth=1.0, per_image=False,
              ignore_index=None, sample_weight=None, soft=False):
    """Soft Dice loss, per class then averaged over classes.

    For each class (channel) c, with p the predicted probabilities and y the targets summed
    over the valid pixels::

        L_c = 1 - (2 I + smooth) / (sum(p) + sum(y) + smooth),   L_c = 0 where sum(p) + sum(y) = 0
        I = sum(p * y)                                   (soft=False)
        I = (sum(p) + sum(y) - sum(|p - y|)) / 2         (soft=True)

    and the loss is the mean of L_c over **all** C classes (an empty class predicted empty
    contributes 0, as a perfect class). Dice = 2TP / (2TP + FP + FN) ("SIIM-ACR Pneumothorax
    Segmentation", work report (2019), section 4.1.5).

    ``soft=True`` is the Dice semimetric loss of Wang, Popordanoska, Bertels, Lemmens and
    Blaschko, "Dice Semimetric Losses: Optimizing the Dice Score with Soft Labels", MICCAI
    2023 (eq. 8, the L1 form): for targets in {0, 1} and p in [0, 1], |p - y| = p + y - 2py,
    so both forms give the same value and gradient; for soft targets (label smoothing,
    annotator agreement, resized masks) only the L1 form is 0 at p = y (the product form
    scores p = y = 0.5 as 1 - 0.5 = 0.5 away from perfect).

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
            per-pixel (B, H, W) weights multiplying each pixel's terms inside the sums
            (``sum(w p y)``, ``sum(w p) + sum(w y)``); a weight-0 image takes no part.
        soft: use the L1 intersection, exact for soft targets (see above).

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> y = np.array([[[[0.25], [1.0]], [[0.0], [0.75]]]])   # soft targets (1, 2, 2, 1)
        >>> round(float(dice_loss(y, y, mode="binary", smooth=0.0)), 4)
        0.2
        >>> round(float(dice_loss(y, y, mode="binary", smooth=0.0, soft=True)), 4)
        0.0
        >>> hard = np.array([[[[0.0], [1.0]], [[0.0], [1.0]]]])
        >>> p = np.array([[[[0.2], [0.9]], [[0.1], [0.6]]]])
        >>> [round(float(dice_loss(hard, p, "binary", soft=s)), 4) for s in (False, True)]
        [0.1667, 0.1667]
    """
    return soft_overlap_loss("dice_loss", "dice", y_true, y_pred, mode, from_logits, smooth,
                             per_image, ignore_index, sample_weight, soft)


def jaccard_loss(y_true, y_pred, mode, from_logits=False, smooth=1.0, per_image=False,
                 ignore_index=None, sample_weight=None, soft=False):
    """Soft Jaccard (IoU) loss, per class then averaged over classes.

    For each class c, with the intersection I of :func:`dice_loss` (product form, or the L1
    form with ``soft=True``: the Jaccard metric loss of Wang, Popordanoska, Bertels, Lemmens
    and Blaschko, "Jaccard Metric Losses: Optimizing the Jaccard Index with Soft Labels",
    NeurIPS 2023)::

        L_c = 1 - (I + smooth) / (sum(p) + sum(y) - I + smooth),   L_c = 0 where sum(p) + sum(y) = 0

    IoU = TP / (TP + FP + FN) ("SIIM-ACR Pneumothorax Segmentation", work report (2019),
    section 4.1.5). Arguments, class averaging, ``per_image``, ``sample_weight`` and ``soft``
    exactly as :func:`dice_loss`.

    Returns:
        float32 scalar (``per_image=False``) or (B,) tensor (``per_image=True``).

    Example:
        >>> labels = np.array([[[0, 1], [2, 2]]])                  # (1, 2, 2) class ids
        >>> logits = np.array([[[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]],
        ...                     [[0.0, 0.0, 3.0], [0.0, 1.0, 1.0]]]])
        >>> round(float(jaccard_loss(labels, logits, "multiclass", from_logits=True)), 4)
        0.2118
    """
    return soft_overlap_loss("jaccard_loss", "jaccard", y_true, y_pred, mode, from_logits,
                             smooth, per_image, ignore_index, sample_weight, soft)


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


#: The sets a (B, C) multi-label Lovász hinge can run its Jaccard surrogate over.
_JACCARD_SETS = ("sample", "class", "batch")


def _binary_inputs(owner, y_true, y_pred, per_image, ignore_index):
    check_flag(owner, "per_image", per_image)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    logits, _ = prediction(owner, y_pred, "binary")
    targets, valid = segmentation_targets(owner, y_true, 1, ignore_index, binary=True,
                                          y_pred=logits, hard=True)
    return logits[..., 0], targets[..., 0], valid[..., 0]


def _multilabel_inputs(owner, y_true, y_pred, ignore_index, jaccard_set, sample_weight):
    """(B, C) logits, {0, 1} targets, validity and label weights, each (B, C) float32."""
    check_choice(owner, "jaccard_set", jaccard_set, _JACCARD_SETS)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    logits = as_float32(y_pred)
    targets = ops.convert_to_tensor(y_true)
    static_rank(owner, "y_true", targets, (2,))
    check_same_shape(owner, targets, logits)
    targets = check_binary_values(owner, as_float32(targets), ignore_index, hard=True)
    if ignore_index is None:
        valid = ops.ones_like(targets)
    else:
        valid = ops.cast(ops.not_equal(targets, float(ignore_index)), "float32")
    weights = None
    if sample_weight is not None:
        if jaccard_set == "sample":
            fail(owner, "sample_weight", "a weight tensor", 'must be None with jaccard_set='
                 '"sample" (the Keras loss class weights the per-sample values)')
        weights = as_float32(sample_weight)
        if len(weights.shape) == 1:
            weights = ops.expand_dims(weights, -1)
        if len(weights.shape) != 2 or weights.shape[-1] not in (1, logits.shape[-1]):
            fail(owner, "sample_weight", f"tensor of shape {tuple(weights.shape)}",
                 "must hold per-sample (B,) or per-label (B, C) weights")
        values = concrete_numpy(weights)
        if values is not None and np.any(values < 0):
            fail(owner, "sample_weight", f"minimum {values.min()}", "must hold weights >= 0")
        weights = ops.broadcast_to(weights, ops.shape(logits))
    return logits, targets * valid, valid, weights


def _label_sets(x, jaccard_set):
    """(B, C) -> one row per Jaccard set: (B, C) per sample, (C, B) per class, (1, B*C)."""
    if jaccard_set == "sample":
        return x
    if jaccard_set == "class":
        return ops.transpose(x)
    return ops.reshape(x, (1, -1))


def _multilabel_hinge(logits, targets, valid, jaccard_set, weights):
    errors = ops.relu(1.0 - logits * (2.0 * targets - 1.0)) * valid
    rows = _lovasz_sorted_loss(_label_sets(errors, jaccard_set),
                               _label_sets(targets * valid, jaccard_set),
                               None if weights is None else _label_sets(weights, jaccard_set))
    return rows if jaccard_set == "sample" else ops.mean(rows)


def _lovasz_multilabel(owner, symmetric, y_true, y_pred, ignore_index, jaccard_set,
                       sample_weight):
    logits, targets, valid, weights = _multilabel_inputs(owner, y_true, y_pred, ignore_index,
                                                         jaccard_set, sample_weight)
    loss = _multilabel_hinge(logits, targets, valid, jaccard_set, weights)
    if symmetric:
        loss = 0.5 * (loss + _multilabel_hinge(-logits, (1.0 - targets) * valid, valid,
                                               jaccard_set, weights))
    return nan_if_any_nan(loss, logits, targets)


def _hinge(logits, targets, valid, per_image, weights):
    signs = 2.0 * targets - 1.0
    errors = ops.relu(1.0 - logits * signs) * valid
    if weights is not None:
        weights = _flatten(ops.broadcast_to(weights[..., 0], ops.shape(errors)), per_image)
    losses = _lovasz_sorted_loss(_flatten(errors, per_image), _flatten(targets * valid, per_image),
                                 weights)
    return losses if per_image else losses[0]


def _lovasz_binary(owner, symmetric, y_true, y_pred, per_image, ignore_index,
                   sample_weight=None, jaccard_set="sample"):
    """Lovász hinge (or its symmetric mean) on binary maps (B, H, W, 1) or (B, C) labels."""
    if len(ops.convert_to_tensor(y_pred).shape) == 2:
        return _lovasz_multilabel(owner, symmetric, y_true, y_pred, ignore_index, jaccard_set,
                                  sample_weight)
    check_choice(owner, "jaccard_set", jaccard_set, _JACCARD_SETS)
    logits, targets, valid = _binary_inputs(owner, y_true, y_pred, per_image, ignore_index)
    weights = pixel_weights(owner, sample_weight, per_image)
    loss = _hinge(logits, targets, valid, per_image, weights)
    if symmetric:
        loss = 0.5 * (loss + _hinge(-logits, (1.0 - targets) * valid, valid, per_image, weights))
    return nan_if_any_nan(loss, logits, targets)  # sorting may move a NaN out of the sum


def lovasz_hinge(y_true, y_pred, per_image=True, ignore_index=None, sample_weight=None,
                 jaccard_set="sample"):
    r"""Lovász hinge loss on logits (Yu and Blaschko 2018; Berman et al. 2018, section 3.1).

    Per element the hinge error is ``e_i = max(0, 1 - x_i s_i)`` with x the logit and
    s = 2y - 1. Within one set the errors are sorted decreasingly, e_(1) >= ... >= e_(n), and
    weighted by the increments of the Jaccard loss of the growing set of the first i elements
    (the Lovász extension, Berman et al. eq. 8-9)::

        loss = sum_i e_(i) * (Δ_J({1..i}) - Δ_J({1..i-1})),
        Δ_J(M) = 1 - |P \ M| / |P ∪ M|        (P: the positives, M: the mispredicted)

    a tight convex surrogate of 1 - IoU of the positives (Yu and Blaschko, "The Lovász Hinge:
    A Novel Convex Surrogate for Submodular Losses", TPAMI 2018; Berman, Rannen Triki and
    Blaschko, "The Lovász-Softmax Loss: A Tractable Surrogate for the Optimization of the
    Intersection-Over-Union Measure in Neural Networks", CVPR 2018).

    Inputs. Segmentation maps: ``y_pred`` (B, H, W, 1) logits, ``y_true`` {0, 1} masks
    (B, H, W) or (B, H, W, 1); ``per_image`` picks the Jaccard set (each image, or the whole
    batch). Multi-label classification: ``y_pred`` (B, C) logits, ``y_true`` (B, C) in {0, 1};
    ``jaccard_set`` picks the set (``per_image`` does not apply):

    - ``"sample"`` (default): each sample's C labels form one set, one value per sample, as in
      Yu and Blaschko's multi-label Lovász hinge (the Jaccard between an image's predicted and
      true label sets). Per-sample values are what Keras's reduction, per-sample weights and
      ``DropWorst`` (the outlier removal trained with it) work on, and a sample's value does
      not depend on the rest of its batch or on how the batch is split over replicas.
    - ``"class"``: each class's B samples form one set (the batch-level IoU of each class,
      like a segmentation per-class Jaccard); the mean over classes, one scalar per batch.
    - ``"batch"``: all B * C labels form one set; one scalar per batch.

    Targets must be exactly 0 or 1 (or ``ignore_index``): the Lovász extension interpolates a
    set function, which has no value at a soft target, so soft targets raise ``ValueError``
    (eagerly; in compiled steps as the package's other target checks, see docs/backends.md).
    Args:
        y_true: {0, 1} targets, see above; ``ignore_index`` marks entries to skip.
        y_pred: logits (not probabilities), (B, H, W, 1) or (B, C).
        per_image: maps only. True: one loss per image over its valid pixels, result (B,)
            (an image with no valid pixel scores 0 and still counts in the mean). False: one
            loss over all valid pixels of the batch, a scalar.
        ignore_index: target value of entries to leave out, or None.
        sample_weight: only where the loss is one value per batch (``per_image=False``, or
            ``jaccard_set`` "class"/"batch"): non-negative per-image (B,) or per-pixel
            (B, H, W) (maps) / per-label (B, C) weights of the elements inside the Jaccard
            set function (an element of weight n counts as n copies, weight 0 not at all).
        jaccard_set: (B, C) inputs only: "sample", "class" or "batch", see above.

    Returns:
        float32 (B,) tensor (one value per image or sample) or scalar.

    Example:
        >>> y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> x = np.array([[2.0, -1.0, 0.5], [-2.0, 0.5, -1.0]])
        >>> np.round(np.asarray(lovasz_hinge(y, x)), 4)
        array([0.25, 1.5 ], dtype=float32)
        >>> round(float(lovasz_hinge(y, x, jaccard_set="batch")), 4)
        0.6667
    """
    return _lovasz_binary("lovasz_hinge", False, y_true, y_pred, per_image, ignore_index,
                          sample_weight, jaccard_set)


def symmetric_lovasz(y_true, y_pred, per_image=True, ignore_index=None, sample_weight=None,
                     jaccard_set="sample"):
    """Symmetric Lovász hinge: the mean of the Lovász hinge on (x, y) and on (-x, 1 - y).

    ``L = (lovasz_hinge(y, x) + lovasz_hinge(1 - y, -x)) / 2`` over the same sets. The second
    term treats the negatives as the positives, so a set with no positive (an empty mask, an
    image with no label) still gets an IoU-shaped signal. Okazaki, Kong, Klinkigt and
    Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020), section 2.4 and table 2 (model C12),
    train their multi-label classifier with it, citing Berman et al. (2018) and Yu and
    Blaschko. Their table names a "square root scaling" that the text never defines (of the
    loss? of the errors? of each set's size?); it is left out rather than guessed.

    Inputs (maps or (B, C) multi-label logits, ``jaccard_set``, hard targets only), arguments
    and result as :func:`lovasz_hinge`.

    Example:
        >>> y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> x = np.array([[2.0, -1.0, 0.5], [-2.0, 0.5, -1.0]])
        >>> np.round(np.asarray(symmetric_lovasz(y, x)), 4)
        array([0.25, 1.  ], dtype=float32)
        >>> round(float(symmetric_lovasz(y, x, jaccard_set="class")), 4)
        0.5
    """
    return _lovasz_binary("symmetric_lovasz", True, y_true, y_pred, per_image, ignore_index,
                          sample_weight, jaccard_set)


def _check_average_over(owner, average_over):
    if isinstance(average_over, str):
        return check_choice(owner, "average_over", average_over, ("all", "present"))
    try:
        ids = list(average_over)
    except TypeError:
        fail(owner, "average_over", average_over,
             'must be "all", "present" or a list of class ids')
    if not ids:
        fail(owner, "average_over", average_over, "must not be empty")
    ids = [check_number(owner, "average_over", c, minimum=0, integer=True) for c in ids]
    if len(set(ids)) != len(ids):
        fail(owner, "average_over", average_over, "must not repeat a class id")
    return ids


def _lovasz_softmax(owner, y_true, y_pred, average_over, per_image, ignore_index, from_logits,
                    sample_weight=None):
    classes = _check_average_over(owner, average_over)
    check_flag(owner, "per_image", per_image)
    check_flag(owner, "from_logits", from_logits)
    ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
    probabilities, targets, valid = probabilities_and_targets(
        owner, y_true, y_pred, "multiclass", from_logits, ignore_index)
    num_classes = probabilities.shape[-1]
    errors = ops.abs(targets - probabilities) * valid
    weights = pixel_weights(owner, sample_weight, per_image)

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
            fail(owner, "average_over", classes,
                 f"must hold class ids below the {num_classes} channels of y_pred")
        weights = ops.sum(ops.one_hot(ops.convert_to_tensor(classes), num_classes,
                                      dtype="float32"), axis=0)[None, :] * ops.ones_like(losses)
    count = ops.sum(weights, axis=-1)
    mean = ops.sum(losses * weights, axis=-1) / ops.maximum(count, 1.0)
    mean = nan_if_any_nan(mean, probabilities, targets)  # sorting may move a NaN out of the sum
    return mean if per_image else mean[0]


def lovasz_softmax(y_true, y_pred, average_over="present", per_image=False, ignore_index=None,
                   from_logits=True, sample_weight=None, *, classes=None):
    """Lovász-Softmax loss for multi-class segmentation (Berman et al. 2018, section 3.2).

    For each class c the pixel errors are ``m_i(c) = |1[y_i = c] - p_i(c)|`` over the valid
    pixels; the Lovász extension of the Jaccard loss of class c is their dot product, sorted
    decreasingly, with the gradient of the Jaccard loss w.r.t. the sorted foreground
    indicator (Berman, Rannen Triki and Blaschko, "The Lovász-Softmax Loss: A Tractable
    Surrogate for the Optimization of the Intersection-Over-Union Measure in Neural
    Networks", CVPR 2018, eq. 12)::

        loss = mean over the selected classes c of  sum_i m_(i)(c) * g_i(c)

    with g(c) the increments of the Jaccard loss of class c along the sorted errors.

    Args:
        y_true: integer labels (B, H, W) or (B, H, W, 1), or one-hot (B, H, W, C).
        y_pred: (B, H, W, C) logits (``from_logits=True``) or softmax probabilities.
        average_over: which classes the mean runs over: "all" (every class, also absent
            ones), "present" (the classes with at least one valid pixel in the truth: in the
            whole batch when ``per_image=False``, in each image separately when
            ``per_image=True``) or a list of class ids (always included, present or not).
        per_image: True: one loss per image (its own present classes), result (B,), which a
            Keras loss averages over images. False: one loss over all valid pixels of the
            batch, a scalar.
        ignore_index: label value whose pixels are left out, or None.
        from_logits: apply softmax to ``y_pred`` first.
        sample_weight: with ``per_image=False`` only, as in :func:`lovasz_hinge`; a class
            counts as present when it has a pixel of weight > 0.
        classes: the former name of ``average_over`` (deprecated, warns).

    Returns:
        float32 (B,) tensor or scalar. 0 (never NaN) where no class is selected, e.g. an image
        whose pixels are all ignored with ``average_over="present"``.

    Example:
        >>> labels = np.array([[[0, 1], [2, 255]]])                # 255: ignored
        >>> logits = np.array([[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        ...                     [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]]])
        >>> round(float(lovasz_softmax(labels, logits, ignore_index=255)), 4)
        0.4052
    """
    average_over = renamed_argument("lovasz_softmax", "average_over", average_over, "classes",
                                    classes, "present")
    return _lovasz_softmax("lovasz_softmax", y_true, y_pred, average_over, per_image,
                           ignore_index, from_logits, sample_weight)


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

    def _per_batch(self, y_pred):
        """Whether ``_loss`` gives one value for the whole batch (else one per image)."""
        return not self.per_image

    def __call__(self, y_true, y_pred, sample_weight=None):
        scalar_weight = sample_weight is None or len(ops.shape(sample_weight)) == 0
        masked = getattr(y_pred, "_keras_mask", None) is not None  # Keras 3 keeps masks there
        per_batch = self._per_batch(y_pred)
        if not per_batch or scalar_weight or masked:
            value = super().__call__(y_true, y_pred, sample_weight=sample_weight)
        else:
            with keras.name_scope(self.name):
                value = ops.cast(self._loss(y_true, y_pred, sample_weight), self.dtype)
        if (per_batch and not masked
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
    _arguments = ("mode", "from_logits", "smooth", "per_image", "ignore_index", "soft")

    def __init__(self, mode, from_logits, smooth, per_image, ignore_index, soft, reduction,
                 name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.mode = check_choice(owner, "mode", mode, _MODES)
        self.from_logits = check_flag(owner, "from_logits", from_logits)
        self.smooth = check_number(owner, "smooth", smooth, minimum=0)
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        self.soft = check_flag(owner, "soft", soft)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return soft_overlap_loss(type(self).__name__, self._kind, y_true, y_pred, self.mode,
                                 self.from_logits, self.smooth, self.per_image,
                                 self.ignore_index, sample_weight, self.soft)


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
        >>> loss = DiceLoss("binary", from_logits=True)
        >>> masks = np.array([[[1.0, 0.0], [1.0, 1.0]]])                  # (1, 2, 2)
        >>> logits = np.array([[[[3.0], [-3.0]], [[1.0], [-1.0]]]])       # (1, 2, 2, 1)
        >>> round(float(loss(masks, logits)), 4)
        0.1825
        >>> soft = np.array([[[[0.3], [0.0]], [[0.8], [1.0]]]])
        >>> round(float(DiceLoss("binary", smooth=0.0, soft=True)(soft, soft)), 4)
        0.0
    """

    _kind = "dice"

    def __init__(self, mode, from_logits=False, smooth=1.0, per_image=False, ignore_index=None,
                 soft=False, reduction="sum_over_batch_size", name="dice_loss", dtype=None):
        super().__init__(mode, from_logits, smooth, per_image, ignore_index, soft, reduction,
                         name, dtype)


@register
class JaccardLoss(_SoftOverlapLoss):
    """Soft Jaccard (IoU) loss as a Keras loss; see :func:`jaccard_loss` and :class:`DiceLoss`.

    Example:
        >>> loss = JaccardLoss("multiclass", from_logits=True, ignore_index=255)
        >>> labels = np.array([[[0, 1], [2, 255]]])
        >>> logits = np.array([[[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]],
        ...                     [[0.0, 0.0, 3.0], [9.0, 0.0, 0.0]]]])
        >>> round(float(loss(labels, logits)), 4)
        0.0866
    """

    _kind = "jaccard"

    def __init__(self, mode, from_logits=False, smooth=1.0, per_image=False, ignore_index=None,
                 soft=False, reduction="sum_over_batch_size", name="jaccard_loss", dtype=None):
        super().__init__(mode, from_logits, smooth, per_image, ignore_index, soft, reduction,
                         name, dtype)


class _BinaryLovaszBase(_OverlapLossBase):
    _arguments = ("per_image", "ignore_index", "jaccard_set")
    _symmetric = None

    def __init__(self, per_image, ignore_index, jaccard_set, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        self.jaccard_set = check_choice(owner, "jaccard_set", jaccard_set, _JACCARD_SETS)

    def _per_batch(self, y_pred):
        if len(ops.convert_to_tensor(y_pred).shape) == 2:
            return self.jaccard_set != "sample"
        return not self.per_image

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _lovasz_binary(type(self).__name__, self._symmetric, y_true, y_pred,
                              self.per_image, self.ignore_index, sample_weight,
                              self.jaccard_set)


@register
class LovaszHingeLoss(_BinaryLovaszBase):
    """Lovász hinge loss on logits, as a Keras loss; see :func:`lovasz_hinge`.

    Binary segmentation maps (B, H, W, 1) or (B, C) multi-label logits with {0, 1} targets.
    Where the loss has one value per image or sample (``per_image=True``, the default, or
    ``jaccard_set="sample"``) Keras's reduction averages them and sample weights weight
    them; where it has one value per batch, (B,) weights enter the Jaccard set function.

    Example:
        >>> loss = LovaszHingeLoss()
        >>> y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> round(float(loss(y, np.array([[2.0, -1.0, 0.5], [-2.0, 0.5, -1.0]]))), 4)
        0.875
    """

    _symmetric = False

    def __init__(self, per_image=True, ignore_index=None, jaccard_set="sample",
                 reduction="sum_over_batch_size", name="lovasz_hinge_loss", dtype=None):
        super().__init__(per_image, ignore_index, jaccard_set, reduction, name, dtype)


@register
class SymmetricLovaszLoss(_BinaryLovaszBase):
    """Symmetric Lovász hinge as a Keras loss; see :func:`symmetric_lovasz`.

    Okazaki et al., "Hitachi at TRECVID DSDI 2020" (2020), table 2 model C12: multi-label
    (B, C) logits with {0, 1} targets, one Jaccard set per sample by default
    (``jaccard_set="sample"``, Yu and Blaschko's multi-label Lovász hinge; "class" and
    "batch" are the other readings). Binary segmentation maps (B, H, W, 1) as before, with
    ``per_image``.

    Example:
        >>> loss = SymmetricLovaszLoss()
        >>> y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
        >>> round(float(loss(y, np.array([[2.0, -1.0, 0.5], [-2.0, 0.5, -1.0]]))), 4)
        0.625
    """

    _symmetric = True

    def __init__(self, per_image=True, ignore_index=None, jaccard_set="sample",
                 reduction="sum_over_batch_size", name="symmetric_lovasz_loss", dtype=None):
        super().__init__(per_image, ignore_index, jaccard_set, reduction, name, dtype)


@register
class LovaszSoftmaxLoss(_OverlapLossBase):
    """Lovász-Softmax loss for multi-class segmentation; see :func:`lovasz_softmax`.

    ``average_over`` was called ``classes`` before: the old keyword (and a saved config that
    holds it) still works, with a ``DeprecationWarning``.

    Example:
        >>> loss = LovaszSoftmaxLoss(average_over="present", ignore_index=255)
        >>> labels = np.array([[[0, 1], [2, 255]]])
        >>> logits = np.array([[[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        ...                     [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0]]]])
        >>> round(float(loss(labels, logits)), 4)
        0.4052
    """

    _arguments = ("average_over", "per_image", "ignore_index", "from_logits")

    def __init__(self, average_over="present", per_image=False, ignore_index=None,
                 from_logits=True, reduction="sum_over_batch_size", name="lovasz_softmax_loss",
                 dtype=None, *, classes=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        owner = type(self).__name__
        self.average_over = _check_average_over(owner, renamed_argument(
            owner, "average_over", average_over, "classes", classes, "present"))
        self.per_image = check_flag(owner, "per_image", per_image)
        self.ignore_index = check_optional_int(owner, "ignore_index", ignore_index)
        self.from_logits = check_flag(owner, "from_logits", from_logits)

    def _loss(self, y_true, y_pred, sample_weight=None):
        return _lovasz_softmax(type(self).__name__, y_true, y_pred, self.average_over,
                               self.per_image, self.ignore_index, self.from_logits,
                               sample_weight)
