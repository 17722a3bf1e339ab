"""float16 and bfloat16 inputs against float64 NumPy references of the same (rounded) values.

The losses compute in float32 whatever the input dtype, so with half-precision predictions
the result must equal the float64 formula applied to the half-precision values themselves,
to float32 accuracy, including logits far beyond float32's sigmoid saturation.
"""

import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras import losses as L
from keras_seg_extras import metrics as M
from tests.losses import references as R

IGNORE = 255
DTYPES = ["float16", "bfloat16"]


def _cast(x, dtype):
    """(tensor of ``dtype``, its exact value as float64)."""
    tensor = tf.cast(tf.constant(np.asarray(x, "float32")), dtype)
    return tensor, tf.cast(tensor, "float64").numpy()


def _close(got, expected, rtol=2e-5, atol=2e-6):
    value = tf.cast(got, "float64").numpy()
    assert np.all(np.isfinite(value))
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol)


def _data(seed, classes=3, shape=(2, 4, 5), scale=4.0):
    rng = np.random.default_rng(3000 + seed)
    labels = rng.integers(0, classes, shape)
    labels[rng.random(shape) < 0.15] = IGNORE
    binary = (rng.random(shape) < 0.4).astype("float32")
    return labels, binary, rng.normal(scale=scale, size=shape + (classes,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_overlap_and_lovasz_losses(dtype):
    labels, binary, scores = _data(1)
    logits, exact = _cast(scores, dtype)
    targets, valid = R.one_hot(labels, 3, IGNORE)
    probabilities = R.softmax(exact) * valid
    for kind, cls in (("dice", L.DiceLoss), ("jaccard", L.JaccardLoss)):
        loss = cls("multiclass", from_logits=True, ignore_index=IGNORE)
        _close(loss(labels, logits), R.overlap(kind, targets, probabilities, valid))
    _close(L.LovaszSoftmaxLoss(ignore_index=IGNORE)(labels, logits),
           R.lovasz_softmax(labels, exact, ignore=IGNORE))
    single, single_exact = _cast(scores[..., :1] * 10.0, dtype)  # logits up to ~+-100
    _close(L.SymmetricLovaszLoss()(binary, single), R.lovasz_hinge(binary, single_exact,
                                                                   symmetric=True))
    y = binary[..., None]
    _close(L.BCEDiceLoss(from_logits=True)(y, single), R.bce_dice(y, single_exact))


@pytest.mark.parametrize("dtype", DTYPES)
def test_focal_losses_with_soft_targets_and_extreme_logits(dtype):
    rng = np.random.default_rng(3002)
    y = np.where(rng.random((6, 4)) < 0.3, 0.25, (rng.random((6, 4)) < 0.5).astype("float64"))
    scores = rng.normal(scale=3.0, size=(6, 4))
    scores[0] = [200.0, -200.0, 1000.0, -1000.0]  # sigmoid saturates in float32 and below
    logits, exact = _cast(scores, dtype)
    y = y.astype("float32")
    _close(L.SoftFocalLoss(gamma=2.0, from_logits=True)(y, logits),
           R.keras_mean(R.soft_focal_terms(y, exact, 2.0)))
    counts = [100.0, 20.0, 5.0, 60.0]
    _close(L.ClassBalancedFocalLoss(counts, beta=0.99, from_logits=True)(y, logits),
           R.keras_mean(R.soft_focal_terms(y, exact, 2.0, R.class_balanced(counts, 0.99))))
    _close(L.ReducedFocalLoss(threshold=0.5, from_logits=True)(y, logits),
           R.keras_mean(R.reduced_focal_terms(y, exact, 0.5, 2.0)))
    _close(L.DropWorst(L.SoftFocalLoss(from_logits=True), k=1)(y, logits),
           R.drop_worst(R.soft_focal_terms(y, exact, 2.0), 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tilted_and_locally_adaptive_losses(dtype):
    labels, _, scores = _data(3)
    logits, exact = _cast(scores, dtype)
    for t, level in ((2.0, "image"), (-1.0, "class")):
        _close(L.TiltedCrossEntropy(t=t, level=level, ignore_index=IGNORE)(labels, logits),
               R.tilted_cross_entropy(labels, exact, t, level, IGNORE))
    _close(L.LocallyAdaptiveLoss(kernel_size=3, ignore_index=IGNORE)(labels, logits),
           R.keras_mean(R.locally_adaptive(labels, exact, 3, 3, IGNORE)), rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_overlap_metrics(dtype):
    _, binary, scores = _data(4, classes=1)
    probabilities, exact = _cast(R.sigmoid(scores), dtype)
    masks = binary[..., None]
    predicted = (exact > 0.5).astype("float64")  # strictly above the threshold; bfloat16
    # rounds several probabilities to exactly 0.5, which must count as background
    inter = (predicted * masks).sum(axis=(1, 2, 3))
    total = predicted.sum(axis=(1, 2, 3)) + masks.sum(axis=(1, 2, 3))
    dice = np.where(total > 0, 2 * inter / np.where(total > 0, total, 1), 1.0)
    iou = np.where(total > 0, inter / np.where(total > inter, total - inter, 1), 1.0)
    metric = M.DiceCoefficient()
    metric.update_state(masks, probabilities)
    _close(metric.result(), dice.mean())
    metric = M.IoUScore()
    metric.update_state(masks, probabilities)
    _close(metric.result(), iou.mean())
