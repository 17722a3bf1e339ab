"""Soft multi-label classification with focal-loss variants (paper 000, LADI / TRECVID DSDI).

Pipeline: a LADI-style CSV of (image path, annotator label) rows -> soft labels (votes per
class / the largest count of the image) -> a keras.applications EfficientNet (or a small
convolutional net) with one logit per class -> the loss chosen by flag (soft focal,
class-balanced focal, reduced focal; optional none-class multiplier and drop-worst outlier
removal) -> LRAP and mAP on the validation set after every epoch, one checkpoint per epoch
(snapshots) -> a table of the final validation LRAP and mAP of each loss tried.

With no CSV it runs on the brain sample shipped with the package (``kse.datasets.brain``):
each axial MRI slice is an image, each of the 116 AAL regions a class, and the soft label
of a region in a slice is the region's visible area in that slice divided by its largest
area over all slices (1 on the slice where it is largest, 0 where it is absent) -- the same
kind of graded target as LADI's annotator agreement.

Run (a few minutes on 2 CPU cores, the three losses one after the other)::

    python recipes/ladi_multilabel.py
    python recipes/ladi_multilabel.py --csv ladi_votes.csv --image-root images/ \\
        --image-column url --label-column label --none-classes "damage: none" \\
        --none-multiplier 0.1 --losses focal --drop-worst 1 --image-size 224 \\
        --weights /path/to/efficientnetb0_notop.h5

Pretrained weights are only read from a local file (``--weights``); nothing is downloaded.
"""

import argparse
import os
import sys

import numpy as np

LOSSES = ("focal", "class-balanced", "reduced")


# ----------------------------------------------------------------------------- data


def region_soft_labels(region_maps, num_regions=116):
    """Soft labels per slice from integer region maps (0 = background, 1..num_regions).

    ``soft[n, r-1] = area(region r in slice n) / max over slices of area(region r)``; a region
    absent from every slice gets 0.

    Args:
        region_maps: integer array (N, H, W) or (N, H, W, 1).
        num_regions: number of regions (classes), labels 1..num_regions.

    Returns:
        float32 (N, num_regions).
    """
    maps = np.asarray(region_maps)
    if maps.ndim == 4:
        maps = maps[..., 0]
    if maps.ndim != 3:
        raise ValueError(f"region_soft_labels: `region_maps` must be (N, H, W[, 1]); received "
                         f"shape {maps.shape}.")
    flat = maps.reshape(maps.shape[0], -1).astype("int64")
    if flat.size and (flat.min() < 0 or flat.max() > num_regions):
        raise ValueError(f"region_soft_labels: `region_maps` must hold labels in "
                         f"[0, {num_regions}]; received values up to {flat.max()}.")
    areas = np.stack([np.bincount(row, minlength=num_regions + 1) for row in flat])[:, 1:]
    largest = areas.max(axis=0)
    return (areas / np.maximum(largest, 1)).astype("float32")


def load_brain(image_size):
    """The shipped brain sample as a multi-label problem: (x, soft labels) per split."""
    import keras_seg_extras as kse

    (x_train, y_train), (x_val, y_val) = kse.datasets.brain.load_data(
        image_size=image_size, num_classes=117)
    # The largest area of a region is taken over all slices, so both splits share one scale.
    soft = region_soft_labels(np.concatenate([y_train, y_val]), num_regions=116)
    names = kse.datasets.brain.region_names(117)[1:]
    return (x_train, soft[: len(x_train)]), (x_val, soft[len(x_train):]), names


def load_csv(csv_path, image_root, image_size, image_column, label_column, val_fraction, seed):
    """A LADI-style vote CSV: images resized to ``image_size``, soft labels, random split."""
    import cv2

    import keras_seg_extras as kse

    images, soft, names = kse.data.soft_labels_from_csv(
        csv_path, image_column=image_column, label_column=label_column)
    root = image_root or os.path.dirname(os.path.abspath(csv_path))
    pixels = []
    for image in images:
        path = image if os.path.isabs(image) else os.path.join(root, image)
        array = cv2.imread(path, cv2.IMREAD_COLOR)
        if array is None:
            raise ValueError(f"ladi_multilabel: cannot read image {path!r} listed in {csv_path}.")
        array = cv2.resize(array, (image_size, image_size), interpolation=cv2.INTER_AREA)
        pixels.append(cv2.cvtColor(array, cv2.COLOR_BGR2RGB))
    x = np.stack(pixels)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, int(round(val_fraction * len(x))))
    if n_val >= len(x):
        raise ValueError(f"ladi_multilabel: {len(x)} images are too few for a validation "
                         f"fraction of {val_fraction}.")
    val, train = order[:n_val], order[n_val:]
    return (x[train], soft[train]), (x[val], soft[val]), names


# ----------------------------------------------------------------------------- model, loss


def build_classifier(num_classes, image_size, channels, backbone="efficientnetb0",
                     weights=None, bn_momentum=0.9):
    """Image -> one logit per class.

    ``efficientnetb0``: keras.applications.EfficientNetB0 without its top, global average
    pooling, a Dense layer of logits; grey images are repeated to three channels (as
    ImageNet weights expect); the network rescales 0..255 inputs itself. ``weights`` is a
    local file of no-top weights or None (random initialisation). ``small``: four
    convolution blocks for quick CPU runs. Every BatchNormalization layer gets
    ``bn_momentum`` (see ``set_batch_norm_momentum``).
    """
    import keras
    from keras import layers

    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = layers.Concatenate(name="to_rgb")([inputs] * 3) if channels == 1 else inputs
    if backbone == "efficientnetb0":
        if weights is not None and not os.path.isfile(weights):
            raise ValueError(f"ladi_multilabel: `--weights` must be an existing local file; "
                             f"received {weights!r}.")
        encoder = keras.applications.EfficientNetB0(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3),
            pooling="avg")
        x = encoder(x)
        x = layers.Dropout(0.2)(x)
    elif backbone == "small":
        if weights is not None:
            raise ValueError("ladi_multilabel: `--weights` only applies to --backbone "
                             "efficientnetb0.")
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
    set_batch_norm_momentum(model, bn_momentum)
    return model


def set_batch_norm_momentum(model, momentum):
    """Set every BatchNormalization layer's momentum (nested models included).

    Keras's default 0.99 needs hundreds of steps before the moving statistics used at
    inference match the data; on a small set (the brain sample: 8 steps per epoch) the
    validation scores then stay near chance. 0.9 fixes that.
    """
    import keras

    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def class_counts(soft_labels):
    """Images in which each class appears (soft label > 0), at least 1 (CB counts must be > 0)."""
    return np.maximum((np.asarray(soft_labels) > 0).sum(axis=0), 1)


def make_loss(name, train_labels, args, class_weights):
    import keras_seg_extras as kse

    if name == "focal":
        loss = kse.losses.SoftFocalLoss(gamma=args.gamma, from_logits=True,
                                        class_weights=class_weights)
    elif name == "class-balanced":
        loss = kse.losses.ClassBalancedFocalLoss(class_counts(train_labels), beta=args.beta,
                                                 gamma=args.gamma, from_logits=True,
                                                 class_weights=class_weights)
    elif name == "reduced":
        loss = kse.losses.ReducedFocalLoss(threshold=args.threshold, gamma=args.gamma,
                                           from_logits=True, class_weights=class_weights)
    else:
        raise ValueError(f"ladi_multilabel: `--losses` entries must be among {LOSSES}; "
                         f"received {name!r}.")
    if args.drop_worst:
        loss = kse.losses.DropWorst(loss, k=args.drop_worst)
    return loss


def none_class_weights(names, none_classes, multiplier):
    """(C,) weights: ``multiplier`` on the named none-classes, 1 elsewhere (paper C08/C09)."""
    if not none_classes:
        return None
    weights = np.ones(len(names))
    for entry in none_classes:
        if entry in names:
            weights[names.index(entry)] = multiplier
        elif entry.isdigit() and int(entry) < len(names):
            weights[int(entry)] = multiplier
        else:
            raise ValueError(f"ladi_multilabel: `--none-classes` entry {entry!r} is neither a "
                             f"class name nor a class index below {len(names)}.")
    return weights.tolist()


# ----------------------------------------------------------------------------- training


def validation_ranking_callback(x_val, y_val, num_classes, batch_size, label=""):
    """A callback adding ``val_lrap`` and ``val_map`` to the logs at the end of each epoch.

    It also prints them, prefixed with ``[label]``.

    Validation-only on purpose: ``fit`` computes every compiled metric's ``result()`` after
    each training batch, and mean average precision sorts its whole buffer there; computing it
    once per epoch on the validation predictions costs one sort per epoch.
    """
    import keras

    import keras_seg_extras as kse

    class _ValidationRanking(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            scores = self.model.predict(x_val, batch_size=batch_size, verbose=0)
            lrap = kse.metrics.LabelRankingAveragePrecision()
            mean_ap = kse.metrics.MeanAveragePrecision(num_classes, capacity=len(x_val))
            for metric in (lrap, mean_ap):
                metric.update_state(y_val, scores)
            values = float(lrap.result()), float(mean_ap.result())
            if logs is not None:
                logs["val_lrap"], logs["val_map"] = values
            print(f"[{label}] epoch {epoch + 1}: val LRAP {values[0]:.4f}  "
                  f"val mAP {values[1]:.4f}", flush=True)

    return _ValidationRanking()


def constant_prior_scores(y_train, y_val):
    """LRAP and mAP of the best constant predictor: every image scored with the training prior.

    Ranking the classes by their mean training label is what a model that ignores its input
    can do at best for label ranking; a trained model must beat it to have learnt anything.
    """
    import keras_seg_extras as kse

    scores = np.tile(np.mean(y_train, axis=0, dtype="float64"), (len(y_val), 1)).astype("float32")
    lrap = kse.metrics.LabelRankingAveragePrecision()
    mean_ap = kse.metrics.MeanAveragePrecision(y_val.shape[1], capacity=len(y_val))
    for metric in (lrap, mean_ap):
        metric.update_state(y_val, scores)
    return float(lrap.result()), float(mean_ap.result())


def train_one(loss_name, train, val, names, args):
    import keras

    import keras_seg_extras as kse

    keras.utils.set_random_seed(args.seed)
    (x_train, y_train), (x_val, y_val) = train, val
    weights = none_class_weights(names, args.none_classes, args.none_multiplier)
    model = build_classifier(len(names), x_train.shape[1], x_train.shape[-1], args.backbone,
                             args.weights, args.bn_momentum)
    # Start from the constant prior (Lin et al. 2017's bias initialisation for focal losses):
    # the logits' bias is the log-odds of each class's mean training label, so the untrained
    # model ranks like the best constant predictor and training has to improve on that.
    prior = np.clip(np.mean(y_train, axis=0, dtype="float64"), 1e-3, 1 - 1e-3)
    model.get_layer("logits").bias.assign(np.log(prior / (1 - prior)).astype("float32"))
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=make_loss(loss_name, y_train, args, weights),
        metrics=[kse.metrics.LabelRankingAveragePrecision(name="lrap")],
    )
    folder = os.path.join(args.output_dir, loss_name)
    os.makedirs(folder, exist_ok=True)
    checkpoints = keras.callbacks.ModelCheckpoint(
        os.path.join(folder, "epoch_{epoch:03d}.keras"), save_freq="epoch")
    validation = validation_ranking_callback(x_val, y_val, len(names), args.batch_size,
                                             label=loss_name)
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        shuffle=True, callbacks=[validation, checkpoints],
                        verbose=2 if args.verbose else 0)
    return {"lrap": float(history.history["val_lrap"][-1]),
            "map": float(history.history["val_map"][-1]),
            "checkpoints": sorted(os.listdir(folder))}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csv", help="vote CSV (one row per image and annotator label); "
                                      "default: the shipped brain sample")
    parser.add_argument("--image-root", help="folder of the CSV's relative image paths "
                                             "(default: the CSV's folder)")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--backbone", choices=("auto", "efficientnetb0", "small"),
                        default="auto", help="auto: efficientnetb0 with --csv, small on the "
                                             "brain sample (minutes on a CPU)")
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--weights", help="local file of EfficientNetB0 no-top weights")
    parser.add_argument("--losses", default=",".join(LOSSES),
                        help=f"comma-separated losses to train, among {LOSSES}")
    parser.add_argument("--gamma", type=float, default=2.0)
    parser.add_argument("--beta", type=float, default=0.999, help="class-balanced β")
    parser.add_argument("--threshold", type=float, default=0.5, help="reduced focal th")
    parser.add_argument("--none-classes", type=lambda s: [e.strip() for e in s.split(",") if e],
                        default=[], help="comma-separated names or indices of none-classes")
    parser.add_argument("--none-multiplier", type=float, default=1.0,
                        help="factor on the none-classes' loss terms (paper: 0.1, 0.01)")
    parser.add_argument("--drop-worst", type=int, default=0,
                        help="drop this many largest per-sample losses per batch (0: off)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/ladi_multilabel")
    parser.add_argument("--verbose", action="store_true", help="Keras's per-epoch log lines")
    args = parser.parse_args(argv)
    if args.backbone == "auto":
        args.backbone = "efficientnetb0" if args.csv else "small"
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    for name in args.losses:
        if name not in LOSSES:
            parser.error(f"--losses: {name!r} is not among {LOSSES}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.csv:
        train, val, names = load_csv(args.csv, args.image_root, args.image_size,
                                     args.image_column, args.label_column, args.val_fraction,
                                     args.seed)
        source = args.csv
    else:
        train, val, names = load_brain(args.image_size)
        source = "kse.datasets.brain (116 AAL regions, soft label = area / largest area)"
    print(f"data: {source}; {len(train[0])} training and {len(val[0])} validation images, "
          f"{len(names)} classes, {args.image_size} px, backbone {args.backbone}", flush=True)
    results = {}
    prior_lrap, prior_map = constant_prior_scores(train[1], val[1])
    for name in args.losses:
        results[name] = train_one(name, train, val, names, args)
        results[name].update(prior_lrap=prior_lrap, prior_map=prior_map)
    print("\nloss            val LRAP   val mAP")
    for name, result in results.items():
        print(f"{name:<15} {result['lrap']:8.4f}  {result['map']:8.4f}")
    print(f"{'constant prior':<15} {prior_lrap:8.4f}  {prior_map:8.4f}   (every image scored "
          "with the training labels' mean: what a model that ignores its input gets)")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
