"""A short end-to-end run of recipes/nuclei_binary.py: it learns, its outputs reload and serve."""

import importlib.util
import json
import os

import keras
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipe():
    path = os.path.join(ROOT, "recipes", "nuclei_binary.py")
    spec = importlib.util.spec_from_file_location("nuclei_binary_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_model_savedmodel_and_metrics(tmp_path):
    import tensorflow as tf

    out = str(tmp_path / "run")
    results = _recipe().main(["--epochs", "3", "--tile-size", "64", "--filters", "8,16",
                              "--batch-size", "8", "--steps-per-epoch", "4",
                              "--learning-rate", "5e-3", "--output-dir", out, "--seed", "1"])
    for name in ("model.keras", "metrics.json", os.path.join("saved_model", "saved_model.pb")):
        assert os.path.exists(os.path.join(out, name)), name
    with open(os.path.join(out, "metrics.json")) as handle:
        recorded = json.load(handle)
    assert recorded["validation_dice"] == results["validation_dice"]
    # Every validation tile holds nuclei: predicting nothing scores 0 under the per-image rule;
    # predicting nuclei everywhere scores 2f / (1 + f), f the nucleus fraction (about 0.30).
    assert recorded["empty_baseline_dice"] == 0.0
    assert 0.25 < recorded["full_baseline_dice"] < 0.35
    # The model learnt something neither constant prediction gets: 12 updates reach ~0.47.
    assert recorded["validation_dice"] > recorded["full_baseline_dice"] + 0.1
    assert recorded["validation_iou"] > recorded["full_baseline_iou"] + 0.05
    assert recorded["reload_max_abs_difference"] < 1e-5
    assert recorded["serve_max_abs_difference"] < 1e-5

    model = keras.saving.load_model(os.path.join(out, "model.keras"))  # no custom_objects
    x = np.zeros((2, 64, 64, 3), np.uint8)
    assert model.predict(x, verbose=0).shape == (2, 64, 64, 1)
    served = tf.saved_model.load(os.path.join(out, "saved_model"))
    probabilities = served.serve(tf.zeros((1, 96, 64, 3))).numpy()
    assert probabilities.shape == (1, 96, 64, 1)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
