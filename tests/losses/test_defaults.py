"""The documented defaults: each public loss function and its class, called with nothing but
the required arguments, give the float64 reference evaluated at the documented defaults."""

import numpy as np
import pytest

from keras_seg_extras import losses as L
from tests.losses import references as R

RNG = np.random.default_rng(4000)
LABELS = RNG.integers(0, 3, (2, 4, 5))
SCORES = RNG.normal(scale=2.0, size=(2, 4, 5, 3)).astype("float32")
MASKS = (RNG.random((2, 4, 5)) < 0.4).astype("float32")
LOGIT = SCORES[..., :1]
PROBABILITY = R.sigmoid(LOGIT).astype("float32")
SOFT = np.where(RNG.random((4, 3)) < 0.3, 0.25, (RNG.random((4, 3)) < 0.5) * 1.0).astype("float32")
SOFT_PROBABILITY = RNG.uniform(0.05, 0.95, (4, 3)).astype("float32")
COUNTS = [30.0, 4.0, 900.0]


def _dice(kind):
    y = MASKS[..., None]
    return R.overlap(kind, y, PROBABILITY.astype("float64"), np.ones_like(y), smooth=1.0)


def _focal_from_probabilities(factor):
    """Soft focal terms on probabilities (from_logits=False is the default)."""
    p = np.clip(SOFT_PROBABILITY.astype("float64"), 1e-7, 1 - 1e-7)
    p_hat = 1.0 - np.abs(SOFT - p)
    return (-factor(p_hat) * np.log(p_hat)).sum(-1)


CASES = {  # name: (function call, class call, reference at the documented defaults)
    "dice (binary, probabilities, smooth 1, batch-global)": (
        lambda: L.dice_loss(MASKS, PROBABILITY, "binary"),
        lambda: L.DiceLoss("binary")(MASKS, PROBABILITY), lambda: _dice("dice")),
    "jaccard (binary, probabilities, smooth 1, batch-global)": (
        lambda: L.jaccard_loss(MASKS, PROBABILITY, "binary"),
        lambda: L.JaccardLoss("binary")(MASKS, PROBABILITY), lambda: _dice("jaccard")),
    "lovasz hinge (per image)": (
        lambda: np.mean(L.lovasz_hinge(MASKS, LOGIT)),
        lambda: L.LovaszHingeLoss()(MASKS, LOGIT), lambda: R.lovasz_hinge(MASKS, LOGIT)),
    "symmetric lovasz (per image)": (
        lambda: np.mean(L.symmetric_lovasz(MASKS, LOGIT)),
        lambda: L.SymmetricLovaszLoss()(MASKS, LOGIT),
        lambda: R.lovasz_hinge(MASKS, LOGIT, symmetric=True)),
    "lovasz softmax (logits, present classes, batch-global)": (
        lambda: L.lovasz_softmax(LABELS, SCORES),
        lambda: L.LovaszSoftmaxLoss()(LABELS, SCORES), lambda: R.lovasz_softmax(LABELS, SCORES)),
    "soft focal (gamma 2, probabilities)": (
        lambda: np.mean(L.soft_focal_loss(SOFT, SOFT_PROBABILITY)),
        lambda: L.SoftFocalLoss()(SOFT, SOFT_PROBABILITY),
        lambda: np.mean(_focal_from_probabilities(lambda p_hat: (1 - p_hat) ** 2))),
    "reduced focal (threshold 0.5, gamma 2)": (
        lambda: np.mean(L.reduced_focal_loss(SOFT, SOFT_PROBABILITY)),
        lambda: L.ReducedFocalLoss()(SOFT, SOFT_PROBABILITY),
        lambda: np.mean(_focal_from_probabilities(
            lambda p_hat: np.where(p_hat < 0.5, 1.0, ((1 - p_hat) / 0.5) ** 2)))),
    "class-balanced focal (beta 0.999, normalised, gamma 2)": (
        lambda: np.mean(L.class_balanced_focal_loss(SOFT, SOFT_PROBABILITY, COUNTS)),
        lambda: L.ClassBalancedFocalLoss(COUNTS)(SOFT, SOFT_PROBABILITY),
        lambda: np.mean(_focal_from_probabilities(
            lambda p_hat: (1 - p_hat) ** 2 * R.class_balanced(COUNTS, 0.999)))),
    "bce + dice (weights 1, probabilities, smooth 1)": (
        lambda: np.mean(L.bce_dice_loss(MASKS, PROBABILITY)),
        lambda: L.BCEDiceLoss()(MASKS, PROBABILITY),
        lambda: np.mean(-(MASKS[..., None] * np.log(np.clip(PROBABILITY, 1e-7, 1))
                          + (1 - MASKS[..., None]) * np.log(np.clip(1 - PROBABILITY, 1e-7, 1))))
        + _dice("dice")),
    "tilted cross-entropy (t 1, image level, logits)": (
        lambda: L.tilted_cross_entropy(LABELS, SCORES),
        lambda: L.TiltedCrossEntropy()(LABELS, SCORES),
        lambda: R.tilted_cross_entropy(LABELS, SCORES, 1.0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_function_and_class_defaults_match_the_documented_ones(name):
    function, cls, reference = CASES[name]
    expected = float(reference())
    np.testing.assert_allclose(float(function()), expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(float(cls()), expected, rtol=2e-5, atol=1e-6)
