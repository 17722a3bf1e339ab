"""Soft multi-label classification with focal-loss variants on LADI-style votes.

Okazaki, Kong, Klinkigt and Yoshinaga, "Hitachi at TRECVID DSDI 2020" (2020): a vote CSV
(image, annotator label) -> soft labels -> EfficientNetB0 (or a small conv net), one logit
per class -> the loss by flag (soft focal, class-balanced focal, reduced focal, or model
C12's symmetric Lovász hinge on targets >= 0.5; none-class multiplier, drop-worst) ->
validation LRAP and mAP and a checkpoint each epoch -> each loss against the constant prior.

With no CSV: the shipped brain sample, each MRI slice an image, each of the 116 AAL regions a
class, its soft label the region's area in the slice over its largest area.

Run (minutes on 2 CPU cores)::

    python recipes/ladi_multilabel.py --losses focal,symmetric-lovasz
    python recipes/ladi_multilabel.py --csv ladi_votes.csv --image-column url \\
        --none-classes "damage: none" --none-multiplier 0.1 --image-size 224 \\
        --weights /path/to/efficientnetb0_notop.h5   # local weights only; nothing downloads
"""

import argparse
import os
import sys

import numpy as np

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
from keras import layers  # noqa: E402

import keras_seg_extras as kse  # noqa: E402

LOSSES = ("focal", "class-balanced", "reduced", "symmetric-lovasz")


def load_brain(image_size):
    """The shipped brain sample as a multi-label problem: (x, soft labels) per split."""
    (x_train, y_train), (x_val, y_val) = kse.datasets.brain.load_data(
        image_size=image_size, num_classes=117)
    # The largest area of a region is taken over all slices, so both splits share one scale.
    soft = kse.data.region_soft_labels(np.concatenate([y_train, y_val]), num_regions=116)
    names = kse.datasets.brain.region_names(117)[1:]
    return (x_train, soft[: len(x_train)]), (x_val, soft[len(x_train):]), names


def load_csv(csv_path, image_root, image_size, image_column, label_column, val_fraction, seed):
    """A LADI-style vote CSV: images resized to ``image_size``, soft labels, random split."""
    images, soft, names = kse.data.soft_labels_from_csv(
        csv_path, image_column=image_column, label_column=label_column)
    x = kse.data.read_images(images, image_size,
                             root=image_root or os.path.dirname(os.path.abspath(csv_path)))
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(val_fraction * len(x))))
    if n_val >= len(x):
        raise ValueError(f"ladi_multilabel: {len(x)} images are too few for a validation "
                         f"fraction of {val_fraction}.")
    val, train = order[:n_val], order[n_val:]
    return (x[train], soft[train]), (x[val], soft[val]), names


def build_classifier(num_classes, image_size, channels, backbone="efficientnetb0",
                     weights=None, bn_momentum=0.9):
    """Image -> one logit per class: EfficientNetB0 (no top, average pooling, ``weights`` a
    local file or None) or four small conv blocks; BatchNorm momentum ``bn_momentum`` (Keras's
    0.99 needs hundreds of steps to track the data; the brain sample has 8 per epoch)."""
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Concatenate(name="to_rgb")([inputs] * 3) if channels == 1 else inputs
    if weights is not None and (backbone != "efficientnetb0" or not os.path.isfile(weights)):
        raise ValueError(f"ladi_multilabel: `--weights` must be an existing local file, for "
                         f"--backbone efficientnetb0; received {weights!r} ({backbone}).")
    if backbone == "efficientnetb0":
        x = keras.applications.EfficientNetB0(include_top=False, weights=weights, pooling="avg",
                                              input_shape=(image_size, image_size, 3))(x)
        x = layers.Dropout(0.2)(x)
    elif backbone == "small":
        x = layers.Rescaling(1.0 / 255.0)(x)
        for filters in (16, 32, 64, 128):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization()(x)
            x = layers.Activation("relu")(x)
            x = layers.MaxPooling2D()(x)
        x = layers.GlobalAveragePooling2D()(x)
    else:
        raise ValueError(f"ladi_multilabel: `--backbone` must be 'efficientnetb0' or 'small'; "
                         f"received {backbone!r}.")
    outputs = layers.Dense(num_classes, name="logits")(x)
    model = keras.Model(inputs, outputs, name=f"multilabel_{backbone}")
    kse.training.set_batchnorm_momentum(model, bn_momentum)
    return model


def make_loss(name, train_labels, args, class_weights):
    common = dict(gamma=args.gamma, from_logits=True, class_weights=class_weights)
    if name == "focal":
        loss = kse.losses.SoftFocalLoss(**common)
    elif name == "class-balanced":
        loss = kse.losses.ClassBalancedFocalLoss(kse.data.class_presence_counts(train_labels),
                                                 beta=args.beta, **common)
    elif name == "reduced":
        loss = kse.losses.ReducedFocalLoss(threshold=args.threshold, **common)
    elif name == "symmetric-lovasz":  # the paper's C12; trained on targets >= 0.5 (see fit)
        if class_weights is not None:
            raise ValueError("ladi_multilabel: `--none-classes` weights do not apply to "
                             "symmetric-lovasz (a set function, not per-class terms).")
        loss = kse.losses.SymmetricLovaszLoss(jaccard_set=args.jaccard_set)
    else:  # parse_args checked the names
        raise ValueError(f"ladi_multilabel: unknown loss {name!r}")
    if args.drop_worst:
        loss = kse.losses.DropWorst(loss, k=args.drop_worst)
    return loss


def train_one(loss_name, train, val, names, args):
    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = train, val
    weights = kse.data.none_class_weights(names, args.none_classes, args.none_multiplier)
    model = build_classifier(len(names), x_train.shape[1], x_train.shape[-1], args.backbone,
                             args.weights, args.bn_momentum)
    # Lin et al. (2017)'s prior bias: the untrained model ranks like the constant prior.
    prior = np.clip(kse.data.constant_prior_scores(y_train, 1)[0], 1e-3, 1 - 1e-3)
    model.get_layer("logits").bias.assign(np.log(prior / (1 - prior)).astype("float32"))
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss=make_loss(loss_name, y_train, args, weights),
                  metrics=[kse.metrics.LabelRankingAveragePrecision(name="lrap")])
    folder = os.path.join(args.output_dir, loss_name)
    os.makedirs(folder, exist_ok=True)
    callbacks = [
        kse.callbacks.ValidationRankingScores(x_val, y_val, args.batch_size, label=loss_name),
        keras.callbacks.ModelCheckpoint(os.path.join(folder, "epoch_{epoch:03d}.keras"))]
    # The Lovász extension needs {0, 1} targets: >= 0.5, the rule LRAP and mAP score with.
    lovasz = loss_name == "symmetric-lovasz"
    fit_labels = (y_train >= 0.5).astype("float32") if lovasz else y_train
    history = model.fit(x_train, fit_labels, epochs=args.epochs, batch_size=args.batch_size,
                        shuffle=True, callbacks=callbacks, verbose=2 if args.verbose else 0)
    return {"lrap": float(history.history["val_lrap"][-1]),
            "map": float(history.history["val_map"][-1]),
            "checkpoints": sorted(os.listdir(folder))}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", help="vote CSV (image, label rows); default: brain sample")
    parser.add_argument("--image-root", help="folder of relative image paths (default: CSV's)")
    for flag, default in (("--image-column", "image"), ("--label-column", "label"),
                          ("--output-dir", "runs/ladi_multilabel")):
        parser.add_argument(flag, default=default)
    for flag, kind, default in (("--val-fraction", float, 0.2), ("--image-size", int, 64),
                                ("--bn-momentum", float, 0.9), ("--gamma", float, 2.0),
                                ("--epochs", int, 15), ("--batch-size", int, 16),
                                ("--learning-rate", float, 3e-3), ("--seed", int, 0)):
        parser.add_argument(flag, type=kind, default=default)
    parser.add_argument("--backbone", choices=("auto", "efficientnetb0", "small"),
                        default="auto", help="auto: efficientnetb0 with --csv, else small")
    parser.add_argument("--weights", help="local file of EfficientNetB0 no-top weights")
    parser.add_argument("--jaccard-set", choices=("sample", "class", "batch"), default="sample",
                        help="symmetric-lovasz: the set each Jaccard surrogate runs over")
    parser.add_argument("--losses", default="focal,class-balanced,reduced",
                        help=f"comma-separated losses to train, among {LOSSES}")
    parser.add_argument("--beta", type=float, default=0.999, help="class-balanced β")
    parser.add_argument("--threshold", type=float, default=0.5, help="reduced focal th")
    parser.add_argument("--none-classes", type=lambda s: [e.strip() for e in s.split(",") if e],
                        default=[], help="comma-separated names or indices of none-classes")
    parser.add_argument("--none-multiplier", type=float, default=1.0, help="paper: 0.1, 0.01")
    parser.add_argument("--drop-worst", type=int, default=0, help="largest losses dropped")
    parser.add_argument("--verbose", action="store_true", help="Keras's per-epoch log lines")
    args = parser.parse_args(argv)
    if args.backbone == "auto":
        args.backbone = "efficientnetb0" if args.csv else "small"
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    if not set(args.losses) <= set(LOSSES):
        parser.error(f"--losses: {args.losses} must be among {LOSSES}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.csv:
        source, (train, val, names) = args.csv, load_csv(
            args.csv, args.image_root, args.image_size, args.image_column, args.label_column,
            args.val_fraction, args.seed)
    else:
        source = "kse.datasets.brain (116 AAL regions, soft label = area / largest area)"
        train, val, names = load_brain(args.image_size)
    print(f"data: {source}; {len(train[0])} training and {len(val[0])} validation images, "
          f"{len(names)} classes, {args.image_size} px, backbone {args.backbone}", flush=True)
    prior_lrap, prior_map = kse.callbacks.ranking_scores(
        val[1], kse.data.constant_prior_scores(train[1], len(val[1])))
    results = {name: {**train_one(name, train, val, names, args), "prior_lrap": prior_lrap,
                      "prior_map": prior_map} for name in args.losses}
    print("\nloss            val LRAP   val mAP")
    for name, result in results.items():
        print(f"{name:<15} {result['lrap']:8.4f}  {result['map']:8.4f}")
    print(f"{'constant prior':<15} {prior_lrap:8.4f}  {prior_map:8.4f}   (every image scored "
          "with the training labels' mean: what a model that ignores its input gets)")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
