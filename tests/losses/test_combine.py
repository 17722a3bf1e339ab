import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras import losses as L


def np_bce(y, p):
    p = np.clip(p.astype("float64"), 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def np_bce_logits(y, x):
    x = x.astype("float64")
    return np.logaddexp(0.0, x) - x * y  # log(1 + e^x) - x y, exact in float64


def np_dice(y, p, smooth):
    per_class = []
    for c in range(y.shape[-1]):
        yc, pc = y[..., c].astype("float64"), p[..., c].astype("float64")
        if yc.sum() + pc.sum() == 0:
            per_class.append(0.0)
        else:
            per_class.append(1 - (2 * (yc * pc).sum() + smooth) / (yc.sum() + pc.sum() + smooth))
    return np.mean(per_class)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_bce_dice_matches_reference(rng, from_logits, channels):
    y = (rng.random((3, 4, 5, channels)) < 0.4).astype("float32")
    x = rng.normal(scale=3.0, size=y.shape).astype("float32")
    p = 1 / (1 + np.exp(-x.astype("float64")))
    pred = x if from_logits else p.astype("float32")
    bce = (np_bce_logits(y, x) if from_logits else np_bce(y, p)).mean(axis=(1, 2, 3))
    expected = 0.7 * bce + 1.5 * np_dice(y, p, 0.5)
    value = L.bce_dice_loss(y, pred, 0.7, 1.5, from_logits, 0.5)
    np.testing.assert_allclose(np.asarray(value), expected, atol=1e-5)
    loss = L.BCEDiceLoss(0.7, 1.5, from_logits=from_logits, smooth=0.5)
    np.testing.assert_allclose(float(loss(y, pred)), expected.mean(), atol=1e-5)


def test_bce_dice_extreme_inputs_are_finite_and_exact():
    y = np.zeros((2, 3, 3, 1), "float32")
    y[0, 0, 0] = 1.0
    logits = np.where(y > 0, 100.0, -100.0).astype("float32")
    loss = L.BCEDiceLoss(from_logits=True)
    assert float(loss(y, logits)) == pytest.approx(0.0, abs=1e-6)
    wrong = -logits
    expected = np_bce_logits(y, wrong).mean() + np_dice(y, 1 / (1 + np.exp(-wrong.astype("float64"))), 1.0)
    assert float(loss(y, wrong)) == pytest.approx(expected, rel=1e-5)  # ~100 per pixel, not clipped
    probabilities = L.BCEDiceLoss()
    assert np.isfinite(float(probabilities(y, 1.0 - y)))  # probabilities exactly 0 and 1
    empty = np.zeros_like(y)
    assert float(probabilities(empty, empty)) == pytest.approx(0.0, abs=1e-6)
    for dtype in ("float16", "bfloat16"):
        variable = tf.Variable(tf.cast(wrong, dtype))
        with tf.GradientTape() as tape:
            value = loss(y, variable)
        assert value.dtype == tf.float32 and np.isfinite(float(value))
        assert np.all(np.isfinite(tf.cast(tape.gradient(value, variable), "float32").numpy()))


def test_combined_loss_is_the_weighted_sum_and_passes_sample_weights(rng):
    y = (rng.random((3, 4, 4, 1)) < 0.5).astype("float32")
    x = rng.normal(size=y.shape).astype("float32")
    bce = L.BCEDiceLoss(from_logits=True, dice_weight=0.5)  # per-image values, like the others
    dice = L.DiceLoss("binary", from_logits=True, per_image=True)
    hinge = L.LovaszHingeLoss()
    combined = L.CombinedLoss([bce, dice, hinge], weights=[0.5, 2.0, 1.0])
    sample_weight = np.array([1.0, 0.0, 3.0], "float32")
    for sw in (None, sample_weight):
        expected = (0.5 * float(bce(y, x, sw)) + 2.0 * float(dice(y, x, sw))
                    + float(hinge(y, x, sw)))
        assert float(combined(y, x, sample_weight=sw)) == pytest.approx(expected, rel=1e-6)
    # BCE + Dice from parts equals the dedicated class (equal image sizes: means agree)
    parts = L.CombinedLoss([keras.losses.BinaryCrossentropy(from_logits=True),
                            L.DiceLoss("binary", from_logits=True)])
    assert float(parts(y, x)) == pytest.approx(float(L.BCEDiceLoss(from_logits=True)(y, x)),
                                               rel=1e-5)


def test_combined_loss_serialises_its_members():
    combined = L.CombinedLoss(["BinaryCrossentropy", L.JaccardLoss("binary", smooth=0.0),
                               L.SymmetricLovaszLoss(per_image=False)], weights=[1, 0.25, 3])
    assert isinstance(combined.losses[0], keras.losses.BinaryCrossentropy)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(combined))
    assert type(again) is L.CombinedLoss and again.weights == [1.0, 0.25, 3.0]
    assert [type(m) for m in again.losses] == [type(m) for m in combined.losses]
    assert again.losses[1].smooth == 0.0 and again.losses[2].per_image is False
    assert again.get_config() == combined.get_config()
    bce_dice = L.BCEDiceLoss(0.3, 0.7, from_logits=True, smooth=0.0)
    assert L.BCEDiceLoss.from_config(bce_dice.get_config()).get_config() == bce_dice.get_config()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"CombinedLoss: `losses` must not be empty"):
        L.CombinedLoss([])
    with pytest.raises(ValueError, match=r"CombinedLoss: `losses` must be a list"):
        L.CombinedLoss(L.DiceLoss("binary"))
    with pytest.raises(ValueError, match=r"CombinedLoss: `losses\[1\]` must be a keras.losses.Loss"):
        L.CombinedLoss([L.DiceLoss("binary"), keras.losses.binary_crossentropy])
    with pytest.raises(ValueError, match=r"CombinedLoss: `weights` must have 2 entries, not 1"):
        L.CombinedLoss([L.DiceLoss("binary"), L.LovaszHingeLoss()], weights=[1.0])
    with pytest.raises(ValueError, match=r"CombinedLoss: `weights` must hold numbers >= 0"):
        L.CombinedLoss([L.DiceLoss("binary")], weights=[-1.0])
    with pytest.raises(ValueError, match=r"BCEDiceLoss: `bce_weight` must be >= 0; received -0.5"):
        L.BCEDiceLoss(bce_weight=-0.5)
    with pytest.raises(ValueError, match=r"BCEDiceLoss: `dice_weight` .*both be 0"):
        L.BCEDiceLoss(bce_weight=0, dice_weight=0)
    with pytest.raises(ValueError, match=r"bce_dice_loss: `smooth` must be >= 0; received -1"):
        L.bce_dice_loss(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1)), smooth=-1)
    with pytest.raises(ValueError, match=r"BCEDiceLoss: `y_pred` must have rank 4"):
        L.BCEDiceLoss()(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"BCEDiceLoss: binary/multi-label targets .*\[3.0\]"):
        L.BCEDiceLoss()(np.full((1, 2, 2, 1), 3.0), np.zeros((1, 2, 2, 1)))
