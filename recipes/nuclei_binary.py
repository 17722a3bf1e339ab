"""Binary segmentation of the shipped nuclei sample: BCE + Dice, Dice/IoU, .keras and SavedModel.

The first main job of keras-seg-extras, a few minutes on 2 CPU cores::

    python recipes/nuclei_binary.py --epochs 10 --output-dir runs/nuclei_binary

What it does:

1. loads ``kse.datasets.nuclei`` tiles (the bottom-right quadrant of the image is validation);
   the training tiles are multiplied by the 8 flips/rotations of the square
   (``kse.data.dihedral_copies``), which keeps masks aligned and needs no interpolation;
2. trains ``kse.models.small_unet`` (a ``Rescaling(1/255)`` in front, so the model takes raw
   uint8 images) with ``kse.losses.BCEDiceLoss()`` and Adam, tracking
   ``kse.metrics.DiceCoefficient()`` and ``kse.metrics.IoUScore()`` (per image, SIIM rule);
3. prints the validation Dice and IoU next to the all-empty baseline (predict no nucleus
   anywhere) on the same tiles and the same metrics;
4. saves ``model.keras``, reloads it with plain ``keras.saving.load_model`` and checks that
   the reloaded model predicts the same; exports a SavedModel (``saved_model/``) and checks
   that its serving function gives the same probabilities;
5. writes ``metrics.json`` (the numbers printed) into the output folder.

Flags: ``--epochs``, ``--output-dir``, ``--tile-size`` (64, 128 or 256), ``--batch-size``,
``--filters``, ``--learning-rate``, ``--steps-per-epoch`` (limit for smoke runs), ``--seed``.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_seg_extras as kse  # noqa: E402


def build_model(filters, bn_momentum=0.9):
    """Raw uint8 tiles -> ``Rescaling(1/255)`` -> ``small_unet`` -> nucleus probability."""
    inputs = keras.Input((None, None, 3), name="image")
    scaled = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    unet = kse.models.small_unet((None, None, 3), num_classes=1, activation="sigmoid",
                                 filters=filters)
    model = keras.Model(inputs, unet(scaled), name="nuclei_unet")
    # ~100 training steps in all: BatchNorm's default momentum (0.99) would leave the moving
    # statistics far from the data and validation (inference mode) far below training.
    kse.training.set_batchnorm_momentum(model, bn_momentum)
    return model


def overlap_scores(y_true, y_pred):
    """Validation Dice and IoU of ``y_pred`` with fresh metric objects."""
    dice, iou = kse.metrics.DiceCoefficient(), kse.metrics.IoUScore()
    dice.update_state(y_true, y_pred)
    iou.update_state(y_true, y_pred)
    return float(dice.result()), float(iou.result())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a small U-Net on the nuclei sample.")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--output-dir", default=os.path.join("runs", "nuclei_binary"))
    parser.add_argument("--tile-size", type=int, default=128, help="64, 128 or 256")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--filters", default="8,16,32,64",
                        help="small_unet filters per level, comma-separated")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="limit the steps per epoch (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    keras.utils.set_random_seed(args.seed)
    filters = tuple(int(f) for f in args.filters.split(","))
    os.makedirs(args.output_dir, exist_ok=True)

    (x_train, y_train), (x_val, y_val) = kse.datasets.nuclei.load_data(tile_size=args.tile_size)
    x_train, y_train = kse.data.dihedral_copies(x_train, y_train)
    print(f"training tiles {x_train.shape[0]} (with D4), validation tiles {x_val.shape[0]}, "
          f"{args.tile_size}x{args.tile_size}")

    model = build_model(filters)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=kse.losses.BCEDiceLoss(),
                  metrics=[kse.metrics.DiceCoefficient(), kse.metrics.IoUScore()])
    model.fit(x_train, y_train.astype("float32"), batch_size=args.batch_size, epochs=args.epochs,
              steps_per_epoch=args.steps_per_epoch, shuffle=True,
              validation_data=(x_val, y_val.astype("float32")), verbose=2)
    train_seconds = time.time() - start

    probabilities = model.predict(x_val, batch_size=args.batch_size, verbose=0)
    dice, iou = overlap_scores(y_val, probabilities)
    empty_dice, empty_iou = overlap_scores(y_val, np.zeros_like(probabilities))
    full_dice, full_iou = overlap_scores(y_val, np.ones_like(probabilities))
    print(f"validation Dice {dice:.4f}  IoU {iou:.4f}   "
          f"(all-empty baseline: Dice {empty_dice:.4f}  IoU {empty_iou:.4f}; "
          f"all-nuclei baseline: Dice {full_dice:.4f}  IoU {full_iou:.4f})")

    keras_path = os.path.join(args.output_dir, "model.keras")
    model.save(keras_path)
    reloaded = keras.saving.load_model(keras_path)
    reload_error = float(np.max(np.abs(
        reloaded.predict(x_val, batch_size=args.batch_size, verbose=0) - probabilities)))
    print(f"saved {keras_path}; reloaded, max |difference| {reload_error:.2e}")

    saved_model_path = os.path.join(args.output_dir, "saved_model")
    model.export(saved_model_path, format="tf_saved_model", verbose=False)
    import tensorflow as tf

    exported = tf.saved_model.load(saved_model_path)
    served = exported.serve(tf.constant(x_val, tf.float32)).numpy()
    serve_error = float(np.max(np.abs(served - probabilities)))
    print(f"exported SavedModel {saved_model_path}; serve() max |difference| {serve_error:.2e}")

    results = {
        "validation_dice": dice, "validation_iou": iou,
        "empty_baseline_dice": empty_dice, "empty_baseline_iou": empty_iou,
        "full_baseline_dice": full_dice, "full_baseline_iou": full_iou,
        "reload_max_abs_difference": reload_error, "serve_max_abs_difference": serve_error,
        "epochs": args.epochs, "tile_size": args.tile_size, "seed": args.seed,
        "seconds": time.time() - start, "training_seconds": train_seconds,
    }
    with open(os.path.join(args.output_dir, "metrics.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    print(f"done in {results['seconds']:.0f} s; outputs in {args.output_dir}")
    return results


if __name__ == "__main__":
    main()
