import keras
import numpy as np
import pytest

import keras_seg_extras as kse

IGNORE = 255


def np_scores(truth, probability, threshold, ignore=None):
    """Per-image TP, FP, FN over the valid pixels of (B, H, W) arrays."""
    rows = []
    for t, p in zip(truth, probability):
        keep = np.ones(t.shape, bool) if ignore is None else t != ignore
        t, pred = t[keep] > 0.5, p[keep] > threshold
        rows.append((np.sum(t & pred), np.sum(~t & pred), np.sum(t & ~pred), keep.any()))
    return rows


def np_dice(tp, fp, fn):
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def np_iou(tp, fp, fn):
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def np_metric(score, rows, per_image, weights=None):
    weights = np.ones(len(rows)) if weights is None else weights
    weights = weights * np.array([r[3] for r in rows], float)
    if per_image:
        return np.sum([w * score(*r[:3]) for w, r in zip(weights, rows)]) / weights.sum()
    tp, fp, fn = (np.sum([w * r[i] for w, r in zip(weights, rows)]) for i in range(3))
    return score(tp, fp, fn)


def batches(rng):
    truth = (rng.random((4, 6, 6)) < 0.3).astype("float32")
    truth[1] = 0.0  # empty truth, and the prediction below is empty too
    truth[2] = 0.0  # empty truth with a non-empty prediction
    logits = rng.normal(scale=2.0, size=truth.shape).astype("float32")
    logits[1] = -5.0
    logits[2, 0, 0] = 5.0
    logits[2, 1:] = -5.0
    return truth, logits


@pytest.mark.parametrize("cls,score", [(kse.metrics.DiceCoefficient, np_dice),
                                       (kse.metrics.IoUScore, np_iou)])
@pytest.mark.parametrize("per_image", [True, False])
def test_streaming_scores_match_reference(rng, cls, score, per_image):
    truth, logits = batches(rng)
    probability = 1 / (1 + np.exp(-logits.astype("float64")))
    truth2 = (rng.random((3, 6, 6)) < 0.5).astype("float32")
    truth2[0] = IGNORE  # ignored-only image: not counted
    truth2[1, :2] = IGNORE
    probability2 = rng.random(truth2.shape)
    metric = cls(threshold=0.4, per_image=per_image, ignore_index=IGNORE)
    metric.update_state(truth[..., None], probability[..., None].astype("float32"))
    metric.update_state(truth2, probability2.astype("float32"))
    rows = np_scores(truth, probability, 0.4, IGNORE) + np_scores(truth2, probability2, 0.4, IGNORE)
    np.testing.assert_allclose(float(metric.result()), np_metric(score, rows, per_image),
                               rtol=1e-6)
    logit_metric = cls(threshold=0.4, per_image=per_image, from_logits=True)
    logit_metric.update_state(truth, logits[..., None])
    np.testing.assert_allclose(float(logit_metric.result()),
                               np_metric(score, np_scores(truth, probability, 0.4), per_image),
                               rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_siim_rule_on_hand_made_images():
    truth = np.zeros((3, 2, 2, 1), "float32")
    pred = np.zeros_like(truth)
    pred[1, 0, 0] = 1.0  # image 1: empty truth, non-empty prediction -> 0
    truth[2, 0, 0] = pred[2, 0, 0] = pred[2, 1, 1] = 1.0  # image 2: Dice 2/3, IoU 1/2
    dice = kse.metrics.DiceCoefficient()
    dice.update_state(truth, pred)  # probabilities exactly 0 and 1
    assert float(dice.result()) == pytest.approx((1 + 0 + 2 / 3) / 3)
    iou = kse.metrics.IoUScore(per_image=False)
    iou.update_state(truth, pred)
    assert float(iou.result()) == pytest.approx(1 / 3)
    both_empty = kse.metrics.IoUScore(per_image=False)
    both_empty.update_state(truth[:1], pred[:1])
    assert float(both_empty.result()) == 1.0


def test_sample_weights_weight_images(rng):
    truth, logits = batches(rng)
    probability = 1 / (1 + np.exp(-logits.astype("float64")))
    weights = np.array([0.5, 1.0, 0.0, 2.0], "float32")
    for per_image in (True, False):
        metric = kse.metrics.DiceCoefficient(per_image=per_image, from_logits=True)
        metric.update_state(truth, logits, sample_weight=weights)
        expected = np_metric(np_dice, np_scores(truth, probability, 0.5), per_image, weights)
        np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


def test_float16_and_extreme_inputs_are_finite():
    truth = np.ones((2, 4, 4, 1), "float32")
    for dtype in ("float16", "bfloat16"):
        metric = kse.metrics.IoUScore(from_logits=True)
        metric.update_state(truth, keras.ops.cast(np.full(truth.shape, 100.0), dtype))
        assert float(metric.result()) == 1.0
        metric.update_state(truth, keras.ops.cast(np.full(truth.shape, -100.0), dtype))
        assert float(metric.result()) == 0.5


def test_config_round_trip():
    metric = kse.metrics.DiceCoefficient(threshold=0.3, per_image=False, from_logits=True,
                                         ignore_index=IGNORE, name="dice")
    clone = kse.metrics.DiceCoefficient.from_config(metric.get_config())
    assert clone.get_config() == metric.get_config()
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(kse.metrics.IoUScore(threshold=0.7)))
    assert type(again) is kse.metrics.IoUScore and again.threshold == 0.7


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"DiceCoefficient: `threshold` must be <= 1; received 1.5"):
        kse.metrics.DiceCoefficient(threshold=1.5)
    with pytest.raises(ValueError, match=r"IoUScore: `per_image` must be True or False"):
        kse.metrics.IoUScore(per_image="yes")
    metric = kse.metrics.IoUScore()
    with pytest.raises(ValueError, match=r"IoUScore: `y_pred` .*must have 1 channel"):
        metric.update_state(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"IoUScore: `y_pred` must have rank 3 or 4"):
        metric.update_state(np.zeros((1, 2, 2, 1)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"IoUScore: binary/multi-label targets .*\[2.0\]"):
        metric.update_state(np.full((1, 2, 2, 1), 2.0), np.zeros((1, 2, 2, 1)))


def test_default_names_are_the_log_keys():
    """`fit` logs a metric under its name (`val_dice_coefficient` for callbacks to monitor)."""
    assert kse.metrics.DiceCoefficient().name == "dice_coefficient"
    assert kse.metrics.IoUScore().name == "iou_score"
