"""SavedModel export: served by plain TensorFlow in a fresh process that cannot import
keras_seg_extras, equal to the Keras model on odd-sized uint8 and float images
(padding and cropping)."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_seg_extras as kse
from keras_seg_extras.inference import with_tta
from keras_seg_extras.models import UNetPlusPlus, small_unet
from tests.export.reference import import_blocker, padded_prediction

# Only the package is blocked: `import tensorflow` itself looks keras up (tf.keras), and
# TensorFlow depends on keras, so a TensorFlow server always has it.
SERVE_SCRIPT = import_blocker("keras_seg_extras") + r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf

export_dir, data = sys.argv[1], np.load(sys.argv[2])
served = tf.saved_model.load(export_dir)
outputs = {}
for key, images in (("float", data["float"]), ("uint8", data["uint8"])):
    endpoint = served.serve if images.dtype == np.float32 else served.serve_uint8
    result = endpoint(tf.constant(images))
    outputs[key + "_probabilities"] = result["probabilities"].numpy()
    outputs[key + "_mask"] = result["mask"].numpy()
default = served.signatures["serving_default"](images=tf.constant(data["float"]))
outputs["default_probabilities"] = default["probabilities"].numpy()
np.savez(sys.argv[3], **outputs)
print(json.dumps({"blocked": blocked, "loaded": sorted(
    m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder_filters=(16, 8, 8, 4, 4))


def test_saved_model_serves_in_a_fresh_process_without_the_package(model, rng, tmp_path):
    export_dir = tmp_path / "export"
    # TTA export: the CLI test. The fresh process below checks what verify would (in-process).
    kse.export_saved_model(model, export_dir, threshold=0.5, verify=False)
    images_uint8 = rng.integers(0, 256, size=(2, 50, 70, 3), dtype=np.uint8)
    images_float = rng.uniform(0, 255, size=(1, 45, 33, 3)).astype("float32")
    np.savez(tmp_path / "inputs.npz", float=images_float, uint8=images_uint8)
    script = tmp_path / "serve.py"
    script.write_text(SERVE_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, str(script), str(export_dir), str(tmp_path / "inputs.npz"),
         str(tmp_path / "outputs.npz")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    # The block works (the import failed) and the package was not loaded.
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "blocked": ["keras_seg_extras"], "loaded": []}
    served = np.load(tmp_path / "outputs.npz")

    expected_float = padded_prediction(model, images_float)
    expected_uint8 = padded_prediction(model, images_uint8.astype("float32"))
    assert served["float_probabilities"].shape == (1, 45, 33, 1)
    assert served["uint8_probabilities"].shape == (2, 50, 70, 1)
    np.testing.assert_allclose(served["float_probabilities"], expected_float, atol=1e-5)
    np.testing.assert_allclose(served["uint8_probabilities"], expected_uint8, atol=1e-5)
    np.testing.assert_allclose(served["default_probabilities"], expected_float, atol=1e-5)
    np.testing.assert_array_equal(served["uint8_mask"],
                                  (served["uint8_probabilities"] > 0.5).astype(np.uint8))
    assert served["uint8_mask"].dtype == np.uint8


def test_uint8_scale_and_cli_from_keras_file(rng, tmp_path):
    cli_path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "export.py")
    spec = importlib.util.spec_from_file_location("export_cli", cli_path)
    export_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_cli)  # by path: a module named `export` may be imported already

    keras.utils.set_random_seed(8)
    net = small_unet((None, None, 3), filters=(4, 8, 16))
    path = tmp_path / "small.keras"
    net.save(path)
    out_dir = tmp_path / "cli_export"
    assert export_cli.main([str(path), str(out_dir), "--tta", "flips", "--threshold", "0.4",
                            "--uint8-scale", str(1 / 255)]) == 0
    import tensorflow as tf

    served = tf.saved_model.load(str(out_dir))
    images = rng.integers(0, 256, size=(1, 30, 41, 3), dtype=np.uint8)
    result = served.serve_uint8(tf.constant(images))
    expected = padded_prediction(with_tta(net, "flips"), images.astype("float32") / 255.0)
    np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(result["mask"].numpy(), (expected > 0.4).astype(np.uint8))


def test_export_rejects_unservable_models(model, tmp_path):
    fixed = small_unet((64, 64, 3), filters=(4, 8))
    with pytest.raises(ValueError, match=r"export_saved_model: `model` must accept any image size"):
        kse.export_saved_model(fixed, tmp_path / "a")
    inputs = keras.Input((None, None, 3))
    two = keras.Model(inputs, [keras.layers.Conv2D(1, 1)(inputs), keras.layers.Conv2D(1, 1)(inputs)])
    with pytest.raises(ValueError, match=r"must have one input and one output"):
        kse.export_saved_model(two, tmp_path / "b")
    with pytest.raises(ValueError, match=r"`threshold` must be <= 1.0; received 2"):
        kse.export_saved_model(model, tmp_path / "c", threshold=2)
    with pytest.raises(ValueError, match=r"`tta` must be None"):
        kse.export_saved_model(model, tmp_path / "d", tta=3)
