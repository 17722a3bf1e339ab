"""``DiceLoss(soft=True)`` / ``JaccardLoss(soft=True)``: the L1 intersection of Wang et al. 2023.

Reference: per class, I = (sum p + sum y - sum |p - y|) / 2, Dice loss 1 - (2I + s) / (sum p +
sum y + s), Jaccard loss 1 - (I + s) / (sum p + sum y - I + s), 0 for an empty class; mean
over the classes, then over the images (per_image) as Keras reduces.
"""

import numpy as np
import pytest

from keras_seg_extras import losses as L
from tests._gradients import assert_gradient_matches

IGNORE = 255
CLASSES = {"dice": L.DiceLoss, "jaccard": L.JaccardLoss}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference(y, p, kind, smooth=1.0, per_image=False, valid=None, weights=None):
    """y, p (B, H, W, C) float64; valid (B, H, W, 1) or None; weights (B,) or None."""
    y = np.asarray(y, "float64")
    p = np.asarray(p, "float64")
    valid = np.ones(y.shape[:-1] + (1,)) if valid is None else valid
    w = valid if weights is None else valid * np.asarray(weights, "float64")[:, None, None, None]
    axes = (1, 2) if per_image else (0, 1, 2)
    cardinality = (w * p).sum(axes) + (w * y).sum(axes)
    intersection = 0.5 * (cardinality - (w * np.abs(p - y)).sum(axes))
    if kind == "dice":
        loss = 1.0 - (2.0 * intersection + smooth) / (cardinality + smooth)
    else:
        loss = 1.0 - (intersection + smooth) / (cardinality - intersection + smooth)
    loss = np.where(cardinality == 0, 0.0, loss).mean(-1)
    return float(loss.mean())


def _soft(seed, shape=(3, 4, 4, 2)):
    """Soft targets with exact 0s and 1s, an empty class in image 0, and logits."""
    rng = np.random.default_rng(seed)
    y = rng.choice([0.0, 0.1, 0.5, 0.8, 1.0], shape)
    y[0, ..., 1] = 0.0
    return y.astype("float32"), rng.normal(scale=2.0, size=shape).astype("float32")


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("kind", ["dice", "jaccard"])
def test_soft_loss_matches_the_reference(kind, per_image):
    y, logits = _soft(1)
    loss = CLASSES[kind]("multilabel", from_logits=True, per_image=per_image, soft=True)
    np.testing.assert_allclose(float(loss(y, logits)),
                               reference(y, _sigmoid(logits.astype("float64")), kind,
                                         per_image=per_image), rtol=1e-5)


@pytest.mark.parametrize("kind", ["dice", "jaccard"])
def test_perfect_soft_prediction_scores_zero_where_the_product_form_does_not(kind):
    y, _ = _soft(2)
    for smooth in (0.0, 1.0):
        assert float(CLASSES[kind]("multilabel", smooth=smooth, soft=True)(y, y)) == \
            pytest.approx(0.0, abs=1e-7)
    product = float(CLASSES[kind]("multilabel", smooth=0.0)(y, y))
    assert product > 0.1  # the complaint: p = y is not a minimum there


@pytest.mark.parametrize("kind", ["dice", "jaccard"])
@pytest.mark.parametrize("mode", ["binary", "multilabel", "multiclass"])
def test_equal_to_the_product_form_on_hard_targets(kind, mode):
    rng = np.random.default_rng(3)
    channels = 1 if mode == "binary" else 3
    logits = rng.normal(scale=2.0, size=(2, 4, 4, channels)).astype("float32")
    logits[0, 0, 0] = 30.0  # p = 1 exactly in float32
    if mode == "multiclass":
        y = rng.integers(0, 3, (2, 4, 4))
        y[1, :2] = IGNORE
        arguments = dict(ignore_index=IGNORE)
    else:
        y = (rng.random((2, 4, 4, channels)) < 0.4).astype("float32")
        y[..., 0][0] = 0.0
        arguments = {}
    for per_image in (False, True):
        hard = CLASSES[kind](mode, from_logits=True, per_image=per_image, **arguments)
        soft = CLASSES[kind](mode, from_logits=True, per_image=per_image, soft=True, **arguments)
        np.testing.assert_allclose(float(soft(y, logits)), float(hard(y, logits)), rtol=1e-6)


def test_soft_one_hot_targets_ignore_and_sample_weights():
    rng = np.random.default_rng(4)
    raw = rng.random((3, 4, 4, 3))
    y = raw / raw.sum(-1, keepdims=True)  # soft one-hot rows (label smoothing, mixing)
    y[0, 0, 0] = 0.0  # a row of zeros: an ignored pixel
    probabilities = rng.dirichlet(np.ones(3), (3, 4, 4))
    valid = (y.sum(-1, keepdims=True) > 0).astype("float64")
    weights = np.array([1.0, 0.0, 2.5])
    loss = L.DiceLoss("multiclass", soft=True)
    np.testing.assert_allclose(
        float(loss(y.astype("float32"), probabilities.astype("float32"), sample_weight=weights)),
        reference(y, probabilities * valid, "dice", valid=valid, weights=weights), rtol=1e-5)


@pytest.mark.parametrize("kind", ["dice", "jaccard"])
def test_gradient_matches_finite_differences(kind):
    y, logits = _soft(5, shape=(2, 3, 3, 2))
    loss = CLASSES[kind]("multilabel", from_logits=True, per_image=True, soft=True)
    assert_gradient_matches(lambda x: loss(y, x),
                            lambda x: reference(y, _sigmoid(x), kind, per_image=True), logits)


def test_extreme_logits_probability_edges_and_float16():
    y, logits = _soft(6)
    extreme = np.where(logits > 0, 100.0, -100.0).astype("float32")
    loss = L.DiceLoss("multilabel", from_logits=True, soft=True)
    np.testing.assert_allclose(float(loss(y, extreme)),
                               reference(y, _sigmoid(extreme.astype("float64")), "dice"),
                               rtol=1e-5)
    edges = np.where(logits > 0, 1.0, 0.0).astype("float32")  # p exactly 0 or 1
    np.testing.assert_allclose(float(L.DiceLoss("multilabel", soft=True)(y, edges)),
                               reference(y, edges, "dice"), rtol=1e-5)
    half = _sigmoid(logits).astype("float16")
    np.testing.assert_allclose(float(L.DiceLoss("multilabel", soft=True)(y.astype("float16"),
                                                                        half)),
                               reference(y.astype("float16"), half.astype("float64"), "dice"),
                               rtol=1e-5)


def test_soft_flag_is_strict_and_serialised():
    with pytest.raises(ValueError, match=r"DiceLoss: `soft` must be True or False; "
                                         r"received 'yes'"):
        L.DiceLoss("binary", soft="yes")
    loss = L.JaccardLoss("binary", soft=True)
    assert loss.get_config()["soft"] is True
    assert L.JaccardLoss.from_config(loss.get_config()).soft is True
    assert L.DiceLoss.from_config({"mode": "binary", "name": "dice_loss"}).soft is False
