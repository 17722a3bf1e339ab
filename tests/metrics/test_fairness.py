"""Fairness figures (paper 002, section 3, table 3) against an independent NumPy computation."""

import math

import keras
import numpy as np
import pytest

import keras_seg_extras  # noqa: F401  (registers the classes for load_model)
from keras_seg_extras.metrics import (
    FairnessIoU,
    fairness_from_class_iou,
    fairness_metrics,
    fairness_report,
    format_fairness_table,
)

# Paper 002, table 1: Cityscapes class IoUs of DeepLabv3+ with multi-class CE (all 19) and
# with TCE t=1 (the first ten columns; the other nine are not printed, we fill them in).
CLASSES = ["wall", "train", "rider", "fence", "terrain", "truck", "m.cycle", "pole", "bus",
           "t.light", "bicycle", "t.sign", "person", "sidewalk", "vegetation", "building",
           "sky", "car", "road"]
MCCE = [48.46, 53.66, 61.12, 62.23, 62.98, 66.21, 67.72, 69.19, 71.53, 74.33, 79.23, 81.22,
        83.19, 84.95, 92.52, 93.04, 95.00, 95.45, 98.06]
TCE1 = [53.47, 79.32, 65.67, 59.25, 63.74, 64.32, 69.45, 69.54, 66.05, 74.51,
        80.0, 82.0, 85.0, 86.66, 92.0, 93.3, 95.0, 96.0, 97.0]


def _percentile(sorted_values, q):
    """Linear interpolation between order statistics, written out."""
    position = q * (len(sorted_values) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    return sorted_values[lo] + (position - lo) * (sorted_values[hi] - sorted_values[lo])


def reference(matrix, order=None):
    c = matrix.shape[0]
    ious = {}
    for i in range(c):
        tp = matrix[i, i]
        union = matrix[i, :].sum() + matrix[:, i].sum() - tp
        if union > 0:
            ious[i] = tp / union
    values = sorted(ious.values())
    n = len(values)
    k = -(-n // 4)
    mean = sum(values) / n
    if order is None:
        ranked = sorted(ious, key=lambda i: ious[i])
    else:
        ranked = [i for i in order if i in ious]
    low, high = _percentile(values, 0.25), _percentile(values, 0.75)
    lows = [v for v in values if v <= low]
    highs = [v for v in values if v >= high]
    return {
        "miou": mean, "worst_iou": values[0],
        "std_iou": math.sqrt(sum((v - mean) ** 2 for v in values) / n),
        "sorted_bottom_25": sum(ious[i] for i in ranked[:k]) / k,
        "sorted_top_25": sum(ious[i] for i in ranked[-k:]) / k,
        "bottom_25th_percentile": (low, sum(lows) / len(lows)),
        "top_25th_percentile": (high, sum(highs) / len(highs)),
    }


def _matrix(rng, c=7, unseen=(5,)):
    matrix = rng.integers(0, 50, size=(c, c)).astype(np.float64)
    matrix[np.arange(c), np.arange(c)] += rng.integers(0, 200, size=c)
    for u in unseen:
        matrix[u, :] = 0
        matrix[:, u] = 0
    return matrix


def _compare(got, expected):
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-10, err_msg=key)


def test_paper_table_3_numbers():
    mcce = fairness_from_class_iou(np.array(MCCE))
    assert mcce["bottom_25th_percentile"] == pytest.approx((64.595, 57.69))
    assert mcce["worst_iou"] == pytest.approx(48.46)
    assert mcce["sorted_bottom_25"] == pytest.approx(57.69)
    tce = fairness_from_class_iou(np.array(TCE1), reference_order=np.argsort(MCCE))
    # Table 3, TCE t=1: sorted bottom 64.29, top 94.66, (65.86, 61.29), (89.33, 94.66), 53.47.
    assert tce["sorted_bottom_25"] == pytest.approx(64.29)
    assert tce["sorted_top_25"] == pytest.approx(94.66)
    assert tce["bottom_25th_percentile"] == pytest.approx((65.86, 61.29))
    assert tce["top_25th_percentile"] == pytest.approx((89.33, 94.66))
    assert tce["worst_iou"] == pytest.approx(53.47)
    table = format_fairness_table({"MCCE": mcce, "TCE t=1": tce}, scale=1.0)
    assert "TCE t=1" in table and "64.29" in table and "(65.86, 61.29)" in table


@pytest.mark.parametrize("unseen", [(), (5,), (0, 3)])
def test_report_matches_reference(rng, unseen):
    matrix = _matrix(rng, unseen=unseen)
    _compare(fairness_report(matrix), reference(matrix))
    order = rng.permutation(7)
    report = fairness_report(matrix, reference_order=order)
    _compare(report, reference(matrix, order.tolist()))
    assert np.isnan(report["class_iou"][list(unseen)]).all()
    assert report["num_classes"] == 7 - len(unseen)


def test_edge_cases():
    empty = fairness_report(np.zeros((3, 3)))
    assert empty["num_classes"] == 0 and np.isnan(empty["miou"])
    perfect = fairness_report(np.diag([5.0, 1.0, 0.0, 2.0]))
    assert perfect["miou"] == 1 and perfect["worst_iou"] == 1 and perfect["std_iou"] == 0
    # A class only predicted (never true) has IoU 0 and counts.
    only_predicted = np.array([[4.0, 1.0], [0.0, 0.0]])
    report = fairness_report(only_predicted)
    assert report["worst_iou"] == 0 and report["num_classes"] == 2


@pytest.mark.parametrize("with_order", [False, True])
def test_streaming_metrics_match_report(rng, with_order):
    c = 6
    order = rng.permutation(c) if with_order else None
    metrics = fairness_metrics(c, ignore_index=255, reference_order=order)
    matrix = np.zeros((c, c))
    for _ in range(3):
        labels = rng.integers(0, c - 1, size=(2, 5, 5))  # class 5 never true ...
        labels[0, 0] = 255
        logits = rng.normal(size=(2, 5, 5, c)).astype("float32")
        logits[..., 5] -= 100.0  # ... and never predicted: unseen
        predicted = logits.argmax(-1)
        valid = labels != 255
        np.add.at(matrix, (labels[valid], predicted[valid]), 1)
        for metric in metrics:
            metric.update_state(labels, logits)
    expected = reference(matrix, None if order is None else order.tolist())
    values = {m.name: float(m.result()) for m in metrics}
    np.testing.assert_allclose(values["miou"], expected["miou"], rtol=1e-6)
    np.testing.assert_allclose(values["worst_iou"], expected["worst_iou"], rtol=1e-6)
    np.testing.assert_allclose(values["std_iou"], expected["std_iou"], rtol=1e-5)
    np.testing.assert_allclose(values["sorted_bottom_25_iou"], expected["sorted_bottom_25"],
                               rtol=1e-6)
    np.testing.assert_allclose(values["sorted_top_25_iou"], expected["sorted_top_25"], rtol=1e-6)
    np.testing.assert_allclose(values["bottom_25th_percentile_iou"],
                               expected["bottom_25th_percentile"][1], rtol=1e-6)
    np.testing.assert_allclose(values["top_25th_percentile_iou"],
                               expected["top_25th_percentile"][1], rtol=1e-6)
    metrics[1].reset_state()
    assert float(metrics[1].result()) == 0.0  # nothing seen yet


def test_fit_logs_every_epoch_and_keras_round_trip(tmp_path, rng):
    c = 3
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(c, 1)(inputs))
    model.compile(optimizer="sgd",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=fairness_metrics(c, reference_order=[2, 0, 1]), run_eagerly=True)
    x = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    y = rng.integers(0, c, size=(4, 8, 8, 1))
    history = model.fit(x, y, epochs=2, batch_size=2, verbose=0)
    for name in ("miou", "worst_iou", "std_iou", "sorted_bottom_25_iou", "sorted_top_25_iou",
                 "bottom_25th_percentile_iou", "top_25th_percentile_iou"):
        assert len(history.history[name]) == 2 and np.isfinite(history.history[name]).all()
    path = str(tmp_path / "fair.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    original = model.evaluate(x, y, verbose=0, return_dict=True)
    loaded.run_eagerly = True  # tiny data: tracing would cost more than running
    reloaded = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert set(reloaded) == set(original)
    for name, value in original.items():
        np.testing.assert_allclose(reloaded[name], value, rtol=1e-5, err_msg=name)
    metric = FairnessIoU(4, "std", reference_order=[3, 2, 1, 0], ignore_index=255)
    clone = FairnessIoU.from_config(metric.get_config())
    assert (clone.statistic, clone.reference_order, clone.ignore_index) == (
        "std", [3, 2, 1, 0], 255)


def test_errors():
    with pytest.raises(ValueError, match=r"FairnessIoU: `statistic`.*'median'"):
        FairnessIoU(3, "median")
    with pytest.raises(ValueError, match=r"FairnessIoU: `reference_order`.*permutation"):
        FairnessIoU(3, "sorted_bottom_25", reference_order=[0, 1, 1])
    with pytest.raises(ValueError, match=r"fairness_report: `reference_order`"):
        fairness_report(np.eye(3), reference_order=[0, 1])
    with pytest.raises(ValueError, match=r"`confusion_matrix`.*\(2, 3\)"):
        fairness_report(np.ones((2, 3)))



def test_a_single_seen_class_gives_its_own_iou():
    """Only class 1 in truth and prediction (IoU 1): every statistic of that one IoU is 1,
    its spread 0; classes never seen take no part."""
    labels = np.full((1, 3, 4), 1)
    logits = np.full((1, 3, 4, 3), [0.0, 5.0, 0.0], "float32")
    for statistic in ("worst", "sorted_bottom_25", "sorted_top_25", "bottom_25th_percentile",
                      "top_25th_percentile", "std"):
        metric = FairnessIoU(3, statistic)
        metric.update_state(labels, logits)
        expected = 0.0 if statistic == "std" else 1.0
        assert float(metric.result()) == pytest.approx(expected), statistic
