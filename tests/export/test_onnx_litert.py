"""ONNX and LiteRT exports: a fresh process that cannot import keras_seg_extras, keras or
TensorFlow runs each artifact with its runtime only (ONNX Runtime, the LiteRT interpreter) and
reproduces the Keras probabilities (1e-4) and masks on odd-sized images, with and without TTA,
for a U-Net++ (EfficientNet-B0) and an ensemble."""

import importlib.util
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_seg_extras as kse
from keras_seg_extras.export import ExportVerificationError, exporter
from keras_seg_extras.inference import ensemble, with_tta
from keras_seg_extras.models import UNetPlusPlus, small_unet
from tests.export.reference import import_blocker, padded_prediction

THRESHOLD = 0.5

RUNTIME_SCRIPT = import_blocker("keras_seg_extras", "keras", "tensorflow") + r"""
import json
import numpy as np

fmt, manifest, inputs, outputs_path = sys.argv[1:5]
images = np.load(inputs)
results = {}
for artifact in json.loads(open(manifest).read()):
    for key in images.files:
        x = images[key].astype(artifact["dtype"])
        if artifact["dtype"] == "float32":  # float input arrives on the model's scale
            x = x * np.float32(artifact["scale"])
        if fmt == "onnx":
            import onnxruntime
            session = onnxruntime.InferenceSession(artifact["path"],
                                                   providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            out = dict(zip(names, session.run(names, {"images": x})))
        else:
            from ai_edge_litert.interpreter import Interpreter
            runner = Interpreter(model_path=artifact["path"]).get_signature_runner(
                artifact["signature"])
            out = runner(images=x)
        for name, value in out.items():
            results[f"{artifact['name']}/{key}/{name}"] = value
np.savez(outputs_path, **results)
print(json.dumps({"blocked": blocked,
                  "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)}))
"""

# Sizes the export-time probe (37 x 53) does not use; none a multiple of 32.
IMAGE_SHAPES = {"a": (2, 45, 70, 3), "b": (1, 61, 29, 3)}


@pytest.fixture(scope="module")
def unetpp():
    keras.utils.set_random_seed(11)
    return UNetPlusPlus("efficientnet_b0", (None, None, 3), decoder_filters=(16, 8, 8, 4, 4))


@pytest.fixture(scope="module")
def members():
    keras.utils.set_random_seed(12)
    return [small_unet((None, None, 3), filters=(4, 8, 16), name=f"member{i}") for i in range(2)]


@pytest.fixture(scope="module")
def cases(unetpp, members):
    """name -> (model, TTA preset inside the export, uint8 scale).

    The U-Net++ with and without horizontal-flip TTA (the SIIM recipe's setting), and the
    ensemble (two small U-Nets, one at scale 1.5) with and without the four-flip TTA.
    """
    both = ensemble(members, weights=[2.0, 1.0], resolutions=[None, 1.5])
    return {"unetpp": (unetpp, None, 1.0), "unetpp_hflip": (unetpp, "hflip", 1.0),
            "ensemble": (both, None, 1 / 255), "ensemble_flips": (both, "flips", 1 / 255)}


def _run_without_package(fmt, artifacts, images, tmp_path):
    manifest, inputs, outputs = (tmp_path / f"{fmt}.json", tmp_path / f"{fmt}_in.npz",
                                 tmp_path / f"{fmt}_out.npz")
    manifest.write_text(json.dumps(artifacts))
    np.savez(inputs, **images)
    script = tmp_path / "run_artifacts.py"
    script.write_text(RUNTIME_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(script), fmt, str(manifest), str(inputs),
                             str(outputs)], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The block works (each import failed) and nothing of the three was loaded.
    assert report == {"blocked": ["keras_seg_extras", "keras", "tensorflow"], "loaded": []}
    return np.load(outputs)


@pytest.mark.parametrize("fmt", ["onnx", "litert"])
def test_artifacts_reproduce_keras_in_a_process_without_the_package(fmt, cases, rng,
                                                                    tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(fmt)
    suffix = {"onnx": ".onnx", "litert": ".tflite"}[fmt]
    images = {key: rng.integers(0, 256, size=shape, dtype=np.uint8)
              for key, shape in IMAGE_SHAPES.items()}
    artifacts = []
    for name, (model, tta, scale) in cases.items():
        # ONNX takes one dtype per graph: the TTA ensemble is exported for float32 input.
        dtype = "float32" if fmt == "onnx" and name == "ensemble_flips" else "uint8"
        extra = {"input_dtypes": (dtype,)} if fmt == "onnx" else {}
        path = kse.export_model(model, tmp_path / f"{name}{suffix}", format=fmt, tta=tta,
                                threshold=THRESHOLD, uint8_scale=scale, **extra)
        artifacts.append({"name": name, "path": str(path), "dtype": dtype, "scale": scale,
                          "signature": "serve" if dtype == "float32" else "serve_uint8"})
        if fmt == "litert":  # the float32 signature of the same file
            artifacts.append({"name": name + "_float", "path": str(path), "dtype": "float32",
                              "scale": scale, "signature": "serve"})
    served = _run_without_package(fmt, artifacts, images, tmp_path)

    for artifact in artifacts:
        model, tta, scale = cases[artifact["name"].removesuffix("_float")]
        keras_model = model if tta is None else with_tta(model, tta)
        for key, uint8_images in images.items():
            # uint8 input is scaled inside the graph; float input arrives on the model's scale.
            x = uint8_images.astype(np.float32) * np.float32(scale)
            expected = padded_prediction(keras_model, x)
            probabilities = served[f"{artifact['name']}/{key}/probabilities"]
            mask = served[f"{artifact['name']}/{key}/mask"]
            assert probabilities.shape == uint8_images.shape[:3] + (1,)
            np.testing.assert_allclose(probabilities, expected, atol=1e-4,
                                       err_msg=f"{fmt} {artifact['name']} {key}")
            assert mask.dtype == np.uint8
            decided = np.abs(expected - THRESHOLD) > 1e-4
            np.testing.assert_array_equal(mask[decided], (expected > THRESHOLD)[decided])


def test_litert_fixed_image_size(members, rng, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    net = members[0]
    path = kse.export_model(net, tmp_path / "fixed.tflite", format="litert",
                            image_size=(45, 70), input_dtypes="uint8")
    interpreter = Interpreter(model_path=str(path))
    assert list(interpreter.get_signature_list()) == ["serve_uint8"]
    (detail,) = interpreter.get_input_details()
    assert list(detail["shape_signature"]) == [-1, 45, 70, 3]
    images = rng.integers(0, 256, size=(1, 45, 70, 3), dtype=np.uint8)
    out = interpreter.get_signature_runner("serve_uint8")(images=images)
    assert set(out) == {"probabilities"}  # no threshold, no mask
    np.testing.assert_allclose(out["probabilities"],
                               padded_prediction(net, images.astype("float32")), atol=1e-4)


def test_cli_exports_a_keras_file_to_onnx(members, rng, tmp_path, capsys):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import export as export_cli

    path = tmp_path / "member.keras"
    members[0].save(path)
    out = tmp_path / "member.onnx"
    assert export_cli.main([str(path), str(out), "--format", "onnx", "--tta", "hflip",
                            "--threshold", "0.4"]) == 0
    assert "verified with its runtime" in capsys.readouterr().out
    images = rng.integers(0, 256, size=(1, 33, 47, 3), dtype=np.uint8)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities, mask = session.run(["probabilities", "mask"], {"images": images})
    expected = padded_prediction(with_tta(members[0], "hflip"), images.astype(np.float32))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    decided = np.abs(expected - 0.4) > 1e-4
    np.testing.assert_array_equal(mask[decided], (expected > 0.4)[decided])


def test_siim_recipe_writes_each_requested_format(members, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "siim_recipe_export", os.path.join(root, "recipes", "siim_pneumothorax.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    args = recipe.parse_args(["--demo", "--export-formats", "onnx", "tf_saved_model"])
    assert args.export_formats == ["onnx", "tf_saved_model"]
    paths = recipe.export_artifacts(members[1], str(tmp_path), ["litert"], 0.3, multiple=32)
    assert paths == {"litert": str(tmp_path / "model.tflite")}
    assert os.path.isfile(paths["litert"])
    with pytest.raises(SystemExit):
        recipe.parse_args(["--demo", "--export-formats", "coreml"])


def test_verification_raises_with_the_figure(members, tmp_path, monkeypatch):
    net = members[1]
    path = kse.export_model(net, tmp_path / "net.onnx", format="onnx", threshold=THRESHOLD)
    onnx_format = exporter.FORMATS["onnx"]
    run = onnx_format.run
    arguments = dict(input_dtypes=("uint8",), image_size=None, threshold=THRESHOLD, multiple=32,
                     uint8_scale=1.0, tolerance=1e-4)

    def shifted(owner, path, dtype, images):
        out = run(owner, path, dtype, images)
        return {**out, "probabilities": out["probabilities"] + 3e-3}

    monkeypatch.setattr(onnx_format, "run", shifted)
    with pytest.raises(ExportVerificationError,
                       match=r"export_model: the onnx artifact .* differs from the Keras model by "
                             r"up to 0\.003 in probability, more than the tolerance 0\.0001"):
        exporter._verify_artifact("export_model", "onnx", str(path), net, **arguments)

    def inverted(owner, path, dtype, images):
        out = run(owner, path, dtype, images)
        return {**out, "mask": 1 - out["mask"]}

    monkeypatch.setattr(onnx_format, "run", inverted)
    with pytest.raises(ExportVerificationError, match=r"uint8 mask with \d+ pixel\(s\) unlike"):
        exporter._verify_artifact("export_model", "onnx", str(path), net, **arguments)
    monkeypatch.setattr(onnx_format, "run", run)
    assert exporter._verify_artifact("export_model", "onnx", str(path), net, **arguments) < 1e-4

    import onnx  # the graph's interface: stable names, uint8 input, named dynamic axes

    graph = onnx.load(str(path)).graph
    (images_input,) = graph.input
    assert images_input.name == "images"
    assert images_input.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = images_input.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]
    assert sorted(o.name for o in graph.output) == ["mask", "probabilities"]


def test_missing_runtime_names_the_extra(members, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx raises ImportError
    with pytest.raises(ImportError, match=r"export_model: format='onnx' needs the package of "
                                          r"module 'tf2onnx'.*keras-seg-extras\[export\]"):
        kse.export_model(members[0], tmp_path / "m.onnx", format="onnx")


@pytest.mark.parametrize("kwargs, match", [
    ({"format": "tflite"}, r"export_model: `format` must be one of 'tf_saved_model', 'onnx', "
                           r"'litert'; received 'tflite'"),
    ({"format": "onnx", "path_name": "m.tflite"}, r"`path` must end with '.onnx'"),
    ({"format": "litert", "path_name": "m"}, r"`path` must end with '.tflite'"),
    ({"format": "onnx", "input_dtypes": ("float32", "uint8")},
     r"`input_dtypes` must hold one dtype for format='onnx'"),
    ({"format": "litert", "input_dtypes": ("int8",)}, r"`input_dtypes` must be a non-empty"),
    ({"format": "litert", "image_size": (64, 0)}, r"`image_size` must hold two positive"),
    ({"format": "litert", "image_size": 64}, r"`image_size` must be None \(any size\)"),
    ({"format": "onnx", "tolerance": 0}, r"`tolerance` must be > 0.0"),
])
def test_bad_arguments(members, tmp_path, kwargs, match):
    kwargs = dict(kwargs)
    path = tmp_path / kwargs.pop("path_name", {"onnx": "m.onnx"}.get(kwargs["format"], "m.tflite"))
    with pytest.raises(ValueError, match=match):
        kse.export_model(members[0], path, **kwargs)
