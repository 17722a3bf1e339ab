"""Every public loss: autodiff gradient == finite differences of a float64 NumPy reference.

Random inputs and the edge cases (empty masks, ignored pixels, extreme logits, soft targets),
compared elementwise by ``tests._gradients.assert_gradient_matches``. A final test fails when
a public loss of ``keras_seg_extras.losses`` has no case here.
"""

import inspect

import keras
import numpy as np
import pytest

from keras_seg_extras import losses as L
from tests._gradients import assert_gradient_matches
from tests.losses import references as R

IGNORE = 255
SHAPE = (3, 4, 5)  # B, H, W: 60 pixels, small enough for finite differences of loops


def _rng(seed):
    return np.random.default_rng(1000 + seed)


def _binary(seed, empty_image=False, ignore=False, scale=2.0):
    """{0, 1} masks (B, H, W) [with an empty image / ignored pixels] and logits (B, H, W, 1)."""
    rng = _rng(seed)
    labels = (rng.random(SHAPE) < 0.4).astype("float32")
    if empty_image:
        labels[0] = 0
    if ignore:
        labels[rng.random(SHAPE) < 0.2] = IGNORE
    return labels, rng.normal(scale=scale, size=SHAPE + (1,)).astype("float32")


def _multiclass(seed, classes=3, ignore=False, absent_class=False):
    rng = _rng(seed)
    labels = rng.integers(0, classes - int(absent_class), SHAPE)
    if ignore:
        labels[rng.random(SHAPE) < 0.2] = IGNORE
    return labels, rng.normal(scale=2.0, size=SHAPE + (classes,)).astype("float32")


def _soft(seed, shape=(6, 4), extreme=False):
    """Soft multi-label targets with exact 0s, 1s and 0.25s; logits, optionally +-30."""
    rng = _rng(seed)
    y = rng.random(shape)
    pick = rng.integers(0, 4, shape)
    y = np.where(pick == 0, 0.0, np.where(pick == 1, 1.0, np.where(pick == 2, 0.25, y)))
    logits = rng.normal(scale=2.0, size=shape)
    if extreme:
        logits[::2] = 30.0 * np.sign(logits[::2])
    return y.astype("float32"), logits.astype("float32")


def _coefficients(n, seed=7):
    """Random positive weights contracting per-sample outputs, so each sample's gradient counts."""
    return _rng(seed).uniform(0.5, 1.5, n)


def _per_sample(function, coefficients):
    return lambda *args: keras.ops.sum(function(*args) * coefficients.astype("float32"))


# ----------------------------------------------------------------------------- cases

# name -> (loss of y_pred, reference of float64 y_pred, y_pred); names are public objects.
CASES = {}


def case(*names):
    def register(build):
        for name in names:
            CASES.setdefault(name, []).append(build)
        return build
    return register


def _overlap_case(kind, cls, mode, seed, from_logits=True, per_image=False, ignore=False,
                  empty=False, smooth=1.0):
    if mode == "multiclass":
        labels, scores = _multiclass(seed, ignore=ignore, absent_class=empty)
        targets, valid = R.one_hot(labels, 3, IGNORE if ignore else None)
        to_probabilities = R.softmax
    else:
        labels, scores = _binary(seed, empty_image=empty, ignore=ignore)
        if mode == "multilabel":  # a second channel, empty everywhere when ``empty``
            extra = np.zeros_like(labels) if empty else (labels == 0).astype("float32")
            labels = np.stack([labels, extra], -1)
            scores = np.concatenate([scores, -scores - 1.0], -1)
        else:
            labels = labels[..., None]
        valid = labels != IGNORE if ignore else np.ones(labels.shape, bool)
        targets = np.where(valid, labels, 0.0)
        to_probabilities = R.sigmoid
    if not from_logits:
        scores = R.sigmoid(scores).astype("float32") if mode != "multiclass" else \
            R.softmax(scores).astype("float32")
        to_probabilities = np.asarray
    loss = cls(mode, from_logits=from_logits, smooth=smooth, per_image=per_image,
               ignore_index=IGNORE if ignore else None)

    def reference(x):
        value = R.overlap(kind, targets, to_probabilities(x) * valid, valid, smooth, per_image)
        return np.mean(value)

    return lambda x: loss(labels, x), reference, scores


for _kind, _cls, _name in (("dice", L.DiceLoss, "DiceLoss"), ("jaccard", L.JaccardLoss,
                                                               "JaccardLoss")):
    case(_name)(lambda k=_kind, c=_cls: _overlap_case(k, c, "binary", 1))
    case(_name)(lambda k=_kind, c=_cls: _overlap_case(k, c, "binary", 2, per_image=True,
                                                      empty=True, smooth=0.0))
    case(_name)(lambda k=_kind, c=_cls: _overlap_case(k, c, "multilabel", 3, ignore=True,
                                                      empty=True))
    case(_name)(lambda k=_kind, c=_cls: _overlap_case(k, c, "multiclass", 4, ignore=True,
                                                      per_image=True, empty=True))
    case(_name)(lambda k=_kind, c=_cls: _overlap_case(k, c, "multiclass", 5, from_logits=False))


@case("dice_loss", "jaccard_loss")
def _overlap_functions():
    labels, scores = _multiclass(6, ignore=True)
    targets, valid = R.one_hot(labels, 3, IGNORE)
    c = _coefficients(SHAPE[0])

    def loss(x):
        dice = L.dice_loss(labels, x, "multiclass", from_logits=True, per_image=True,
                           ignore_index=IGNORE)
        jaccard = L.jaccard_loss(labels, x, "multiclass", from_logits=True, per_image=True,
                                 ignore_index=IGNORE, smooth=0.5)
        return keras.ops.sum((dice + 2.0 * jaccard) * c.astype("float32"))

    def reference(x):
        p = R.softmax(x) * valid
        return np.sum((R.overlap("dice", targets, p, valid, 1.0, True)
                       + 2.0 * R.overlap("jaccard", targets, p, valid, 0.5, True)) * c)

    return loss, reference, scores


def _lovasz_hinge_case(symmetric, per_image, seed, ignore=False, empty=False):
    labels, logits = _binary(seed, empty_image=empty, ignore=ignore)
    cls = L.SymmetricLovaszLoss if symmetric else L.LovaszHingeLoss
    loss = cls(per_image=per_image, ignore_index=IGNORE if ignore else None)
    return (lambda x: loss(labels, x),
            lambda x: R.lovasz_hinge(labels, x, per_image, IGNORE if ignore else None,
                                     symmetric=symmetric), logits)


case("LovaszHingeLoss")(lambda: _lovasz_hinge_case(False, True, 11, ignore=True, empty=True))
case("LovaszHingeLoss")(lambda: _lovasz_hinge_case(False, False, 12))
case("SymmetricLovaszLoss")(lambda: _lovasz_hinge_case(True, True, 13, empty=True))
case("SymmetricLovaszLoss")(lambda: _lovasz_hinge_case(True, False, 14, ignore=True))


@case("lovasz_hinge", "symmetric_lovasz")
def _lovasz_hinge_functions():
    labels, logits = _binary(15, empty_image=True, ignore=True)
    c = _coefficients(SHAPE[0])

    def loss(x):
        return keras.ops.sum((L.lovasz_hinge(labels, x, ignore_index=IGNORE)
                              + L.symmetric_lovasz(labels, x, ignore_index=IGNORE))
                             * c.astype("float32"))

    def reference(x):
        return sum(c[b] * (R.lovasz_hinge(labels[b:b + 1], x[b:b + 1], True, IGNORE)
                           + R.lovasz_hinge(labels[b:b + 1], x[b:b + 1], True, IGNORE,
                                            symmetric=True)) for b in range(SHAPE[0]))

    return loss, reference, logits


def _lovasz_softmax_case(seed, classes, per_image, ignore=False, absent=False):
    labels, logits = _multiclass(seed, ignore=ignore, absent_class=absent)
    loss = L.LovaszSoftmaxLoss(average_over=classes, per_image=per_image,
                               ignore_index=IGNORE if ignore else None)
    return (lambda x: loss(labels, x),
            lambda x: R.lovasz_softmax(labels, x, classes, per_image, IGNORE if ignore else None),
            logits)


case("LovaszSoftmaxLoss")(lambda: _lovasz_softmax_case(21, "present", False, ignore=True,
                                                       absent=True))
case("LovaszSoftmaxLoss")(lambda: _lovasz_softmax_case(22, "present", True, absent=True))
case("LovaszSoftmaxLoss")(lambda: _lovasz_softmax_case(23, "all", False, absent=True))


@case("lovasz_softmax")
def _lovasz_softmax_function():
    labels, logits = _multiclass(24, ignore=True)
    c = _coefficients(SHAPE[0])
    return (lambda x: keras.ops.sum(L.lovasz_softmax(labels, x, average_over=[0, 2], per_image=True,
                                                     ignore_index=IGNORE) * c.astype("float32")),
            lambda x: sum(c[b] * R.lovasz_softmax(labels[b:b + 1], x[b:b + 1], [0, 2], True,
                                                  IGNORE) for b in range(SHAPE[0])),
            logits)


COUNTS = [500.0, 40.0, 3.0, 120.0]


@case("SoftFocalLoss")
def _soft_focal_extreme():
    y, logits = _soft(31, extreme=True)
    loss = L.SoftFocalLoss(gamma=2.0, from_logits=True)
    return (lambda x: loss(y, x), lambda x: R.keras_mean(R.soft_focal_terms(y, x, 2.0)), logits)


@case("SoftFocalLoss")
def _soft_focal_fractional_gamma():
    y, logits = _soft(32)
    weights = [1.0, 0.1, 2.0, 0.5]
    loss = L.SoftFocalLoss(gamma=0.5, from_logits=True, class_weights=weights)
    return (lambda x: loss(y, x),
            lambda x: R.keras_mean(R.soft_focal_terms(y, x, 0.5, weights)), logits)


@case("soft_focal_loss")
def _soft_focal_function():
    y, logits = _soft(33, shape=(2, 3, 2, 4))  # per-pixel multi-label maps
    c = _coefficients(12).reshape(2, 3, 2)
    return (_per_sample(lambda x: L.soft_focal_loss(y, x, gamma=3.0, from_logits=True), c),
            lambda x: np.sum(R.soft_focal_terms(y, x, 3.0) * c), logits)


@case("ClassBalancedFocalLoss")
def _class_balanced_focal():
    y, logits = _soft(34, extreme=True)
    loss = L.ClassBalancedFocalLoss(COUNTS, beta=0.99, gamma=2.0, from_logits=True)
    weights = R.class_balanced(COUNTS, 0.99)
    return (lambda x: loss(y, x),
            lambda x: R.keras_mean(R.soft_focal_terms(y, x, 2.0, weights)), logits)


@case("class_balanced_focal_loss")
def _class_balanced_function():
    y, logits = _soft(35)
    c = _coefficients(6)
    extra = [1.0, 1.0, 0.1, 1.0]
    weights = R.class_balanced(COUNTS, 0.999, normalize=False) * extra
    return (_per_sample(lambda x: L.class_balanced_focal_loss(
                y, x, COUNTS, beta=0.999, gamma=1.0, from_logits=True, class_weights=extra,
                normalize=False), c),
            lambda x: np.sum(R.soft_focal_terms(y, x, 1.0, weights) * c), logits)


@case("ReducedFocalLoss")
def _reduced_focal():
    y, logits = _soft(36, extreme=True)
    loss = L.ReducedFocalLoss(threshold=0.5, gamma=2.0, from_logits=True)
    return (lambda x: loss(y, x),
            lambda x: R.keras_mean(R.reduced_focal_terms(y, x, 0.5, 2.0)), logits)


@case("reduced_focal_loss")
def _reduced_focal_function():
    y, logits = _soft(37)
    c = _coefficients(6)
    weights = [2.0, 1.0, 0.5, 1.0]
    return (_per_sample(lambda x: L.reduced_focal_loss(y, x, threshold=0.3, gamma=2.0,
                                                       from_logits=True, class_weights=weights),
                        c),
            lambda x: np.sum(R.reduced_focal_terms(y, x, 0.3, 2.0, weights) * c), logits)


@case("TiltedCrossEntropy")
def _tilted_image():
    labels, logits = _multiclass(41, ignore=True)
    labels[1] = IGNORE  # an image without any valid pixel
    loss = L.TiltedCrossEntropy(t=1.5, ignore_index=IGNORE)
    return (lambda x: loss(labels, x),
            lambda x: R.tilted_cross_entropy(labels, x, 1.5, "image", IGNORE), logits)


@case("TiltedCrossEntropy")
def _tilted_class_negative():
    labels, logits = _multiclass(42, absent_class=True)
    loss = L.TiltedCrossEntropy(t=-2.0, level="class")
    return (lambda x: loss(labels, x),
            lambda x: R.tilted_cross_entropy(labels, x, -2.0, "class"), logits)


@case("tilted_cross_entropy")
def _tilted_function():
    labels, logits = _multiclass(43)
    weights = np.array([1.0, 0.0, 2.5])
    return (lambda x: L.tilted_cross_entropy(labels, x, t=3.0, level="class",
                                             sample_weight=weights),
            lambda x: R.tilted_cross_entropy(labels, x, 3.0, "class", weights=weights), logits)


@case("BCEDiceLoss")
def _bce_dice():
    labels, logits = _binary(51, empty_image=True)
    y = labels[..., None]
    loss = L.BCEDiceLoss(bce_weight=0.7, dice_weight=1.3, from_logits=True)
    return lambda x: loss(y, x), lambda x: R.bce_dice(y, x, 0.7, 1.3), logits


@case("bce_dice_loss")
def _bce_dice_function():
    labels, logits = _binary(52)
    y = labels[..., None]
    c = _coefficients(SHAPE[0])

    def reference(x):
        bce = (np.logaddexp(0.0, x) - x * y).mean(axis=(1, 2, 3))
        dice = R.overlap("dice", y, R.sigmoid(x), np.ones_like(y), 0.0)
        return np.sum((bce + dice) * c)

    return (_per_sample(lambda x: L.bce_dice_loss(y, x, from_logits=True, smooth=0.0), c),
            reference, logits)


@case("CombinedLoss")
def _combined():
    labels, logits = _binary(53, empty_image=True)
    y = labels[..., None]
    loss = L.CombinedLoss([keras.losses.BinaryCrossentropy(from_logits=True),
                           L.DiceLoss("binary", from_logits=True)], weights=[1.0, 0.5])

    def reference(x):
        bce = (np.logaddexp(0.0, x) - x * y).mean()
        return bce + 0.5 * R.overlap("dice", y, R.sigmoid(x), np.ones_like(y))

    return lambda x: loss(y, x), reference, logits


@case("DropWorst")
def _drop_worst():
    y, logits = _soft(54)
    loss = L.DropWorst(L.SoftFocalLoss(gamma=2.0, from_logits=True), k=2)
    return (lambda x: loss(y, x), lambda x: R.drop_worst(R.soft_focal_terms(y, x, 2.0), 2),
            logits)


@case("AuxiliaryClassLoss")
def _auxiliary():
    rng = _rng(55)
    # Foreign samples (labels 7, 9) predicted as auxiliary classes 3 and 4 (margin 6, so the
    # finite-difference steps never change an argmax): deterministic relabelling.
    labels = np.array([0, 7, 2, 9, 1, 7])
    predicted = np.array([1, 3, 2, 4, 0, 4])
    logits = rng.normal(scale=0.5, size=(6, 5))
    np.put_along_axis(logits, predicted[:, None], 6.0, axis=-1)
    relabelled = np.where(labels < 3, labels, predicted)
    loss = L.AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                target_classes=3, auxiliary_classes=2, seed=0)
    return (lambda x: loss(labels, x),
            lambda x: R.keras_mean(R.sparse_cross_entropy(relabelled, x)),
            logits.astype("float32"))


def _locally_adaptive_inputs(seed):
    rng = _rng(seed)
    labels = np.zeros((2, 4, 5), "int64")
    labels[:, :, 3:] = 1
    labels[0, 2:, :2] = 2
    labels[rng.random(labels.shape) < 0.15] = IGNORE
    return labels, rng.normal(scale=2.0, size=(2, 4, 5, 3)).astype("float32")


@case("LocallyAdaptiveLoss")
def _locally_adaptive():
    labels, logits = _locally_adaptive_inputs(61)
    loss = L.LocallyAdaptiveLoss(kernel_size=3, minkowski_k=3, ignore_index=IGNORE)
    return (lambda x: loss(labels, x),
            lambda x: R.keras_mean(R.locally_adaptive(labels, x, 3, 3, IGNORE)), logits)


@case("locally_adaptive_loss")
def _locally_adaptive_function():
    labels, logits = _locally_adaptive_inputs(62)
    c = _coefficients(2)
    return (_per_sample(lambda x: L.locally_adaptive_loss(labels, x, kernel_size=3,
                                                          minkowski_k=1, ignore_index=IGNORE), c),
            lambda x: np.sum(R.locally_adaptive(labels, x, 3, 1, IGNORE) * c), logits)


# ----------------------------------------------------------------------------- tests

PARAMETERS = [pytest.param(build, id=f"{name}-{i}")
              for name, builds in CASES.items() for i, build in enumerate(builds)]


@pytest.mark.parametrize("build", PARAMETERS)
def test_gradient_matches_finite_differences_of_reference(build):
    loss, reference, y_pred = build()
    assert_gradient_matches(loss, reference, y_pred)


#: Public callables of keras_seg_extras.losses that are not losses (no gradient to check).
NOT_LOSSES = {"auxiliary_class_labels", "chessboard_weights", "class_balanced_weights"}


def test_every_public_loss_has_a_gradient_case():
    public = {name for name, value in vars(L).items()
              if not name.startswith("_") and not inspect.ismodule(value) and callable(value)}
    assert NOT_LOSSES <= public
    missing = public - NOT_LOSSES - set(CASES)
    assert not missing, f"public losses without a gradient case: {sorted(missing)}"
