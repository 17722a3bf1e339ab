"""A tiny end-to-end run of recipes/siim_pneumothorax.py --demo (EfficientNetB0, 64 px).

Every step runs: demo DICOMs and train-rle.csv, conversion, masks, grouped split, one
training stage with SWA, TTA, threshold search, submission, .keras and SavedModel export.
"""

import csv
import importlib.util
import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _recipe():
    sys.path.insert(0, os.path.join(ROOT, "recipes"))  # the recipe imports siim_demo_data
    path = os.path.join(ROOT, "recipes", "siim_pneumothorax.py")
    spec = importlib.util.spec_from_file_location("siim_pneumothorax_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_runs_every_step_and_its_outputs_decode_and_serve(tmp_path):
    import tensorflow as tf

    import keras_seg_extras as kse

    out = str(tmp_path / "run")
    stages = [{"size": 64, "epochs": 2, "batch_size": 8, "accumulation": 2,
               "loss": "bce_dice", "learning_rate": 1e-3, "swa_epochs": 1}]
    results = _recipe().main(["--demo", "--output-dir", out, "--workers", "1",
                              "--steps-per-epoch", "2", "--stages", json.dumps(stages),
                              "--preview-count", "2"])
    for name in ("model.keras", "results.json", "validation_predictions.png",
                 "history.csv", os.path.join("saved_model", "saved_model.pb"),
                 os.path.join("checkpoints", "progress.json"),
                 "train_headers.csv"):
        assert os.path.exists(os.path.join(out, name)), name
    assert 0.0 <= results["dice"] <= 1.0 and 0.0 <= results["iou"] <= 1.0
    # half of the demo patients are healthy: predicting nothing scores their share
    assert 0.0 < results["baseline_dice"] < 1.0

    # The submission covers every test image and decodes to masks of its DICOM size.
    with open(os.path.join(out, "submission.csv"), newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ImageId", "EncodedPixels"]
    assert len(rows) - 1 == 16
    for image_id, rle in rows[1:]:
        mask = kse.data.rle.decode_siim(rle, (128, 128), image_id=image_id)
        assert mask.shape == (128, 128)

    # The SavedModel serves an odd-sized uint8 image and returns a thresholded mask.
    served = tf.saved_model.load(os.path.join(out, "saved_model"))
    outputs = served.serve_uint8(tf.constant(np.zeros((1, 70, 90, 3), np.uint8)))
    probabilities, mask = outputs["probabilities"].numpy(), outputs["mask"].numpy()
    assert probabilities.shape == (1, 70, 90, 1) and mask.shape == (1, 70, 90, 1)
    assert set(np.unique(mask)) <= {0, 1}
