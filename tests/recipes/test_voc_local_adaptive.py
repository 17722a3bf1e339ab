"""recipes/voc_local_adaptive.py: the VOC reader on a tiny fake VOC folder and a tiny run."""

import importlib.util
import json
import os

import numpy as np
import pytest
from PIL import Image

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "recipes", "voc_local_adaptive.py")


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("voc_local_adaptive", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fake_voc(root, rng, ids_per_split=3, size=20):
    os.makedirs(root / "JPEGImages")
    os.makedirs(root / "SegmentationClass")
    os.makedirs(root / "ImageSets" / "Segmentation")
    palette = rng.integers(0, 256, 768).tolist()
    labels = {}
    for split in ("train", "val"):
        ids = [f"2007_{split}_{n}" for n in range(ids_per_split)]
        with open(root / "ImageSets" / "Segmentation" / f"{split}.txt", "w") as handle:
            handle.write("\n".join(ids) + "\n")
        for image_id in ids:
            image = rng.integers(0, 256, (size, size, 3)).astype("uint8")
            Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg")
            label = np.zeros((size, size), "uint8")
            label[:, size // 2:] = rng.integers(1, 21)
            label[size // 2, :] = 255  # object border: ignored
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(root / "SegmentationClass" / f"{image_id}.png")
            labels[image_id] = label
    return labels


def test_reads_palette_indices_from_fake_voc(recipe, tmp_path, rng):
    labels = write_fake_voc(tmp_path, rng)
    images, read = recipe.load_voc_split(str(tmp_path), "train", image_size=20)
    assert images.shape == (3, 20, 20, 3) and images.dtype == np.uint8
    assert read.shape == (3, 20, 20, 1)
    np.testing.assert_array_equal(read[0, ..., 0], labels["2007_train_0"])
    (x_train, y_train), (x_val, y_val), description = recipe.load_data(str(tmp_path), 16)
    assert x_train.shape == (3, 16, 16, 3) and y_val.shape == (3, 16, 16, 1)
    assert set(np.unique(y_train)) <= set(range(21)) | {255} and 255 in y_train
    assert "Pascal VOC" in description


def test_brain_sample_default_path_prints_side_by_side(recipe, capsys, tmp_path):
    results = recipe.main(["--image-size", "16", "--epochs", "1", "--filters", "4", "8",
                           "--kernels", "5", "--limit", "8", "--batch-size", "4",
                           "--output-dir", str(tmp_path)])
    assert set(results) == {"cross-entropy", "local k=5"}
    out = capsys.readouterr().out
    assert "brain MRI sample" in out and "| local k=5 |" in out and "76.1" in out
    with open(tmp_path / "results.json") as handle:
        recorded = json.load(handle)
    assert recorded["miou"] == results
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    for name, value in results.items():  # the table holds the recorded numbers
        assert rows[name] == f"{100 * value:.1f}"
    # The constant baseline, recomputed: the most frequent training class everywhere.
    (_, y_train), (_, y_val), _ = recipe.load_data(None, 16, 8)
    counts = np.bincount(y_train[y_train != 255].ravel(), minlength=21)
    majority = int(np.argmax(counts))
    truth = y_val[y_val != 255].ravel()
    present = np.unique(truth)
    iou = [np.mean(truth == majority) if c == majority else 0.0 for c in present]
    assert recorded["majority_class"] == majority
    assert recorded["majority_class_miou"] == pytest.approx(np.mean(iou))
    assert rows["majority class (constant)"] == f"{100 * recorded['majority_class_miou']:.1f}"


def test_scoring_is_the_mean_iou_over_classes_seen_without_ignored_pixels():
    """The recipe scores with kse.metrics.ConfusionMatrixIoU(21, ignore_index=255): VOC's mIoU."""
    import keras_seg_extras as kse

    truth = np.array([[0, 0, 1, 255], [2, 2, 1, 1]])
    prediction = np.array([[0, 1, 1, 2], [2, 0, 1, 1]])
    metric = kse.metrics.ConfusionMatrixIoU(21, ignore_index=255)
    metric.update_state(truth[None], np.eye(21, dtype="float32")[prediction][None])
    assert float(np.sum(metric.confusion_matrix())) == 7  # the ignored pixel is not counted
    # IoU: class 0 = 1/3, class 1 = 3/4, class 2 = 1/2; classes never seen are left out.
    assert float(metric.result()) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_missing_voc_layout_is_a_clear_error(recipe, tmp_path):
    with pytest.raises(ValueError, match="ImageSets/Segmentation/train.txt"):
        recipe.load_voc_split(str(tmp_path), "train", image_size=16)
