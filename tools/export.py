"""Export a trained ``.keras`` segmentation model as a SavedModel for serving.

Usage::

    python tools/export.py model.keras export/siim --tta hflip --threshold 0.5

The SavedModel serves images of any height and width, uint8 or float (endpoints ``serve`` /
``serving_default`` and ``serve_uint8``), padding to a multiple of 32 and cropping back; it
returns ``probabilities`` and, with ``--threshold``, ``mask``. See
``keras_seg_extras.export`` for the input scaling. Loading the ``.keras`` file needs
``keras_seg_extras`` (for its registered layers); serving the SavedModel needs TensorFlow only.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="path of the .keras model file")
    parser.add_argument("output", help="directory of the SavedModel to write")
    parser.add_argument("--tta", default=None,
                        help="test-time augmentation preset inside the export: hflip, flips, d4")
    parser.add_argument("--scales", type=float, nargs="+", default=None,
                        help="TTA scales (e.g. 1.0 1.5); needs --tta")
    parser.add_argument("--threshold", type=float, default=None,
                        help="also return mask = probabilities > threshold")
    parser.add_argument("--uint8-scale", type=float, default=1.0,
                        help="factor applied to uint8 inputs (1.0 keeps [0, 255]; 0.00392156862745098 for [0, 1] models)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import keras

    import keras_seg_extras  # noqa: F401  (registers the package's layers for loading)
    from keras_seg_extras.export import export_saved_model

    if args.scales is not None and args.tta is None:
        raise SystemExit("tools/export.py: --scales needs --tta")
    model = keras.saving.load_model(args.model)
    tta = args.tta
    if tta is not None and args.scales is not None:
        tta = {"transforms": tta, "scales": tuple(args.scales)}
    export_saved_model(model, args.output, tta=tta, threshold=args.threshold,
                       uint8_scale=args.uint8_scale)
    print(f"SavedModel written to {args.output} (endpoints: serve, serve_uint8, serving_default)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
