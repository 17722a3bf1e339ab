"""recipes/cityscapes_tce.py: tiny runs on a Cityscapes-shaped folder and on the brain sample."""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipe():
    spec = importlib.util.spec_from_file_location(
        "cityscapes_tce", os.path.join(ROOT, "recipes", "cityscapes_tce.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_cityscapes(root, rng):
    for split, count in (("train", 4), ("val", 2)):
        for n in range(count):
            city = "aachen" if n % 2 else "bremen"
            stem = f"{city}_{n:06d}_000019"
            image = rng.integers(0, 255, size=(16, 32, 3)).astype(np.uint8)
            label = rng.integers(0, 19, size=(16, 32, 1)).astype(np.uint8)
            label[:2] = 255
            for folder, name, array in (("leftImg8bit", f"{stem}_leftImg8bit.png", image),
                                        ("gtFine", f"{stem}_gtFine_labelTrainIds.png", label)):
                path = os.path.join(root, folder, split, city)
                os.makedirs(path, exist_ok=True)
                tf.io.write_file(os.path.join(path, name), tf.io.encode_png(array))


def test_cityscapes_layout_three_runs(tmp_path, rng, capsys):
    _write_cityscapes(str(tmp_path / "cs"), rng)
    reports = _recipe().main([
        "--data-root", str(tmp_path / "cs"), "--runs", "ce,focal,tce", "--image-size", "16x32",
        "--filters", "4,8", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2",
        "--run-eagerly", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert list(reports) == ["CE", "Focal", "TCE t=1 (sampler)"]
    assert "sorted bottom 25%" in printed and "Focal" in printed and "traffic sign"[:12] in printed
    for report in reports.values():
        assert report["class_iou"].shape == (19,) and np.isfinite(report["miou"])
    assert (tmp_path / "out" / "class_presence.npz").exists()


def _class_iou(matrix):
    """Independent IoU per class from a confusion matrix (rows truth); NaN where never seen."""
    matrix = np.asarray(matrix, "float64")
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def test_brain_sample_ce_vs_tce(tmp_path, capsys):
    reports = _recipe().main([
        "--runs", "ce,tce", "--image-size", "32x32", "--filters", "4,8", "--num-classes", "5",
        "--epochs", "2", "--steps-per-epoch", "6", "--batch-size", "4",
        "--run-eagerly", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "brain sample (5 classes)" in printed
    assert list(reports) == ["CE", "TCE t=1 (sampler)"]
    assert "final sampling weights" in printed
    with open(tmp_path / "out" / "results.json") as handle:
        results = json.load(handle)
    assert list(results) == ["CE", "TCE t=1 (sampler)", "majority class baseline"]
    table = printed.split("Fairness criteria")[1]
    for label, record in results.items():
        iou = _class_iou(record["confusion_matrix"])
        np.testing.assert_allclose(record["class_iou"], iou, rtol=1e-9)
        seen = np.sort(iou[~np.isnan(iou)])
        assert record["miou"] == pytest.approx(seen.mean())
        assert record["worst_iou"] == pytest.approx(seen[0])
        assert record["std_iou"] == pytest.approx(seen.std())
        if label in reports:  # the printed row holds the recorded numbers
            row = next(line for line in table.splitlines() if line.startswith(label))
            assert f"{record['miou'] * 100:.2f}" in row
            assert f"{record['worst_iou'] * 100:.2f}" in row
    # The baseline predicts one class everywhere: one column of its matrix holds every pixel.
    baseline = np.asarray(results["majority class baseline"]["confusion_matrix"])
    assert np.count_nonzero(baseline.sum(0)) == 1
    # Both trainings learnt something the constant model cannot (~0.20 against ~0.16 mIoU).
    for label in reports:
        assert results[label]["miou"] > results["majority class baseline"]["miou"] + 0.025
