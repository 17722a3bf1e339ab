"""Export a trained ``.keras`` segmentation model for serving: SavedModel, ONNX or LiteRT.

Usage::

    python tools/export.py model.keras export/siim --tta hflip --threshold 0.5
    python tools/export.py model.keras export/siim.onnx --format onnx --threshold 0.5
    python tools/export.py model.keras export/siim.tflite --format litert --threshold 0.5

Every format serves the same graph (``keras_seg_extras.export``): images of any height and
width, padded to a multiple of 32 and cropped back, TTA inside, ``probabilities`` and, with
``--threshold``, ``mask``. The SavedModel has endpoints ``serve`` (float32, also
``serving_default``) and ``serve_uint8``; the ``.tflite`` file has signatures of the same
names; the ``.onnx`` graph takes one dtype (``--input-dtype``, uint8 by default). The artifact
is run by its own runtime on a probe image and compared with the Keras model before the command
succeeds. Loading the ``.keras`` file needs ``keras_seg_extras`` (for its registered layers);
serving the artifact needs its runtime only.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

FORMATS = ("tf_saved_model", "onnx", "litert")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="path of the .keras model file")
    parser.add_argument("output", help="SavedModel directory, or .onnx / .tflite file to write")
    parser.add_argument("--format", choices=FORMATS, default="tf_saved_model",
                        help="artifact format (default tf_saved_model)")
    parser.add_argument("--tta", default=None,
                        help="test-time augmentation preset inside the export: hflip, flips, d4")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="TTA scales (e.g. 1.0 1.5); needs --tta")
    parser.add_argument("--threshold", type=float, default=None,
                        help="also return mask = probabilities > threshold")
    parser.add_argument("--uint8-scale", type=float, default=1.0,
                        help="factor applied to uint8 inputs (1.0 keeps [0, 255]; 0.00392156862745098 for [0, 1] models)")
    parser.add_argument("--input-dtype", choices=("float32", "uint8"), nargs="+", default=None,
                        help="input dtypes to serve (default: both; uint8 for onnx, one only)")
    parser.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="fixed input height and width (default: any size)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest probability difference from Keras accepted at export time")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras

    import keras_seg_extras  # noqa: F401  (registers the package's layers for loading)
    from keras_seg_extras.export import export_model

    if args.scales is not None and args.tta is None:
        raise SystemExit("tools/export.py: --scales needs --tta")
    model = keras.saving.load_model(args.model)
    tta = args.tta
    if tta is not None and args.scales is not None:
        tta = {"transforms": tta, "scales": tuple(args.scales)}
    export_model(model, args.output, format=args.format, tta=tta, threshold=args.threshold,
                 uint8_scale=args.uint8_scale, input_dtypes=args.input_dtype,
                 image_size=args.image_size, tolerance=args.tolerance, verbose=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
