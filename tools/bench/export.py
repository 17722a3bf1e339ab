"""Benchmark: inference time per image of one segmentation model under Keras and under the
runtimes of its three exports (TensorFlow SavedModel, ONNX Runtime, the LiteRT interpreter),
on the same images, in one run.

Run (the converters and runtimes are the ``export`` extra)::

    python tools/bench/export.py --encoder efficientnet_b0 --size 256 --images 8 --rounds 5

The model is ``UNetPlusPlus(encoder)`` with random weights (nothing is downloaded) and its
default decoder, exported by ``kse.export_model`` with ``--tta`` and a 0.5 threshold inside
(each export verified against Keras as usual; its time is reported). Each runtime predicts
the same uint8 images one at a time (batch 1) through its uint8 entry point; Keras predicts
the same images cast to float32 with ``predict_on_batch`` on the TTA-wrapped model (no
padding needed: ``--size`` is a multiple of 32). Timing is interleaved: in each round every
runtime processes every image once, after one warm-up pass; the table gives the median over
rounds of the time per image, and its ratio to Keras. ONNX Runtime and LiteRT get
``--threads`` threads (default: all cores); TensorFlow uses its defaults.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_seg_extras as kse  # noqa: E402
from keras_seg_extras.inference import with_tta  # noqa: E402
from keras_seg_extras.models import UNetPlusPlus  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=256, help="image side (multiple of 32)")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tta", default="hflip", help="TTA preset inside the exports, or none")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    return parser.parse_args(argv)


def runners(model, folder, tta, threads):
    """name -> (export seconds, predict(image uint8 (1, H, W, C)) -> probabilities)."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    keras_model = model if tta is None else with_tta(model, tta)
    result = {"Keras (predict_on_batch)":
              (0.0, lambda x: keras_model.predict_on_batch(x.astype(np.float32)))}
    paths = {"tf_saved_model": os.path.join(folder, "saved_model"),
             "onnx": os.path.join(folder, "model.onnx"),
             "litert": os.path.join(folder, "model.tflite")}
    seconds = {}
    for fmt, path in paths.items():
        started = time.perf_counter()
        kse.export_model(model, path, format=fmt, tta=tta, threshold=0.5)
        seconds[fmt] = time.perf_counter() - started

    loaded = tf.saved_model.load(paths["tf_saved_model"])  # kept: it owns the variables
    result["SavedModel (TensorFlow)"] = (
        seconds["tf_saved_model"],
        lambda x: loaded.serve_uint8(tf.constant(x))["probabilities"].numpy())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(paths["onnx"], options,
                                           providers=["CPUExecutionProvider"])
    result["ONNX Runtime"] = (
        seconds["onnx"], lambda x: session.run(["probabilities"], {"images": x})[0])
    interpreter = Interpreter(model_path=paths["litert"], num_threads=threads)
    signature = interpreter.get_signature_runner("serve_uint8")
    result["LiteRT interpreter"] = (
        seconds["litert"], lambda x: signature(images=x)["probabilities"])
    return result


def main(argv=None):
    args = parse_args(argv)
    tta = None if args.tta == "none" else args.tta
    keras.utils.set_random_seed(0)
    model = UNetPlusPlus(args.encoder, (None, None, 3))
    images = np.random.default_rng(0).integers(
        0, 256, (args.images, 1, args.size, args.size, 3), np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        timed = runners(model, folder, tta, args.threads)
        reference = timed["Keras (predict_on_batch)"][1](images[0])
        times = {name: [] for name in timed}
        for name, (_, predict) in timed.items():  # warm-up, and agreement with Keras
            difference = float(np.max(np.abs(predict(images[0]) - reference)))
            print(f"{name}: max |probability difference| from Keras {difference:.2g}")
        for _ in range(args.rounds):
            for name, (_, predict) in timed.items():
                started = time.perf_counter()
                for image in images:
                    predict(image)
                times[name].append((time.perf_counter() - started) / len(images))
    baseline = float(np.median(times["Keras (predict_on_batch)"]))
    print(f"\nUNetPlusPlus({args.encoder}), {args.size}x{args.size} uint8, batch 1, "
          f"TTA {args.tta}, {args.images} images x {args.rounds} rounds, "
          f"{args.threads} threads (ONNX Runtime, LiteRT)\n")
    print("| runtime | export + verification (s) | ms / image (median) | vs Keras |")
    print("|---|---|---|---|")
    for name, (seconds, _) in timed.items():
        median = float(np.median(times[name]))
        export = "-" if name.startswith("Keras") else f"{seconds:.1f}"
        print(f"| {name} | {export} | {1000 * median:.1f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
