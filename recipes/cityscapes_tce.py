"""Fairness across classes: cross-entropy vs focal vs Stochastic TCE (paper 002, table 3).

Trains the same model with each chosen objective and prints the fairness criteria of the
runs side by side (mIoU, sorted bottom/top 25% by the first run's class IoUs, the 25th
percentile tails, worst class IoU, standard deviation), like the paper's table 3, plus the
per-class IoUs.

Runs (``--runs``, comma separated, the first is the reference order for the sorted tails):

- ``ce``: multi-class cross-entropy on a plain shuffled pipeline.
- ``focal``: ``keras.losses.CategoricalFocalCrossentropy`` (gamma 2, per-class alpha the
  inverse training pixel frequency normalised to mean 1, as the paper's focal baseline).
- ``tce``: Stochastic TCE, the paper's Algorithm 1: the class-sampled pipeline
  (``kse.data.class_sampled_dataset``) steered by ``kse.callbacks.StochasticTCESampler``,
  the model trained with plain cross-entropy (line 9).
- ``tce-loss``: the tilted loss itself (``kse.losses.TiltedCrossEntropy``, image level) on
  the plain pipeline.

Data:

- ``--data-root DIR``: the Cityscapes layout,
  ``DIR/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` and ``DIR/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png`` (19 classes, 255 ignored;
  make the trainIds with cityscapesScripts' ``createTrainIdLabelImgs``). Images are resized
  to ``--image-size`` HxW (labels by nearest neighbour) for training and evaluation.
- no ``--data-root``: the shipped brain MRI sample (``kse.datasets.brain``) with its 116
  regions folded into ``--num-classes`` classes, a few minutes on 2 CPU cores.

Example:
    python recipes/cityscapes_tce.py                          # brain sample: CE vs TCE
    python recipes/cityscapes_tce.py --data-root ~/cityscapes --runs ce,focal,tce \\
        --image-size 256x512 --epochs 40 --steps-per-epoch 400 --batch-size 8
"""

import argparse
import glob
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import keras_seg_extras as kse  # noqa: E402

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle"]
RUNS = ("ce", "focal", "tce", "tce-loss")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", help="Cityscapes root; omit for the brain sample")
    parser.add_argument("--runs", default="ce,tce", help=f"comma-separated of {RUNS}")
    parser.add_argument("--t", type=float, default=1.0, help="tilt")
    parser.add_argument("--gamma", type=float, default=0.1, help="sampler rate (Alg. 1 l. 7)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", default=None,
                        help="HxW (default 256x512 for Cityscapes, 64x64 for the brain)")
    parser.add_argument("--num-classes", type=int, default=9,
                        help="brain sample only: classes after folding the 116 regions")
    parser.add_argument("--filters", default="8,16,32,64", help="small_unet filters per level")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--limit", type=int, default=None,
                        help="Cityscapes only: use at most this many images per split")
    parser.add_argument("--out", default=None, help="folder for the index cache and logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-eagerly", action="store_true",
                        help="no tf.function tracing (debugging, or runs of a few steps)")
    args = parser.parse_args(argv)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        parser.error(f"--runs: unknown {bad}; choose from {RUNS}")
    args.runs = runs
    default = "256x512" if args.data_root else "64x64"
    try:
        height, width = (int(v) for v in (args.image_size or default).lower().split("x"))
    except ValueError:
        parser.error(f"--image-size must look like 256x512, got {args.image_size!r}")
    args.filters = tuple(int(f) for f in args.filters.split(","))
    factor = 2 ** (len(args.filters) - 1)
    if height % factor or width % factor:
        parser.error(f"--image-size: H and W must be multiples of {factor} (small_unet levels)")
    args.size = (height, width)
    return args


# ----------------------------------------------------------------------------- data


def cityscapes_split(root, split, limit=None):
    images = sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*_leftImg8bit.png")))
    if not images:
        raise SystemExit(f"no images under {root}/leftImg8bit/{split}/<city>/*_leftImg8bit.png")
    labels = []
    for path in images:
        city = os.path.basename(os.path.dirname(path))
        stem = os.path.basename(path)[: -len("_leftImg8bit.png")]
        label = os.path.join(root, "gtFine", split, city, f"{stem}_gtFine_labelTrainIds.png")
        if not os.path.exists(label):
            raise SystemExit(f"missing label {label} (make trainIds with cityscapesScripts)")
        labels.append(label)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return images, labels


def load_data(args):
    """Returns (train_images, train_labels, val_images, val_labels, K, names, ignore, channels)."""
    if args.data_root:
        xt, yt = cityscapes_split(args.data_root, "train", args.limit)
        xv, yv = cityscapes_split(args.data_root, "val", args.limit)
        return xt, yt, xv, yv, 19, CITYSCAPES_CLASSES, 255, 3
    if args.size[0] != args.size[1]:
        raise SystemExit("the brain sample has square slices: give --image-size SxS")
    (xt, yt), (xv, yv) = kse.datasets.brain.load_data(image_size=args.size[0],
                                                        num_classes=args.num_classes)
    names = [f"c{k}" for k in range(args.num_classes)]
    names[0] = "background"
    return xt, yt, xv, yv, args.num_classes, names, None, 1


def make_augment(size, train):
    height, width = size

    def augment(image, label):
        image = tf.image.resize(image, size, method="bilinear")
        label = tf.image.resize(label, size, method="nearest")
        if train:
            flip = tf.random.uniform([]) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            label = tf.cond(flip, lambda: tf.image.flip_left_right(label), lambda: label)
        image = tf.ensure_shape(image, (height, width, None))
        return image, tf.ensure_shape(label, (height, width, 1))

    return augment


def plain_dataset(images, labels, args, one_hot_classes=None, train=True):
    load = kse.data.indexed_loader(images, labels, augment=make_augment(args.size, train))
    n = len(images)
    ds = tf.data.Dataset.range(n)
    if train:
        ds = ds.shuffle(n, seed=args.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot_classes:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y[..., 0], one_hot_classes)))  # 255 -> zeros
    return ds.batch(args.batch_size, drop_remainder=train).prefetch(tf.data.AUTOTUNE)


def pixel_frequencies(labels, num_classes, ignore):
    if isinstance(labels, list):
        counts = np.zeros(num_classes)
        for path in labels:
            lab = tf.io.decode_png(tf.io.read_file(path), channels=1).numpy().ravel()
            counts += np.bincount(lab[lab != ignore], minlength=num_classes)[:num_classes]
    else:
        lab = np.asarray(labels).ravel()
        counts = np.bincount(lab, minlength=num_classes)[:num_classes].astype(float)
    return counts / max(counts.sum(), 1.0)


# ----------------------------------------------------------------------------- runs


def build_model(args, num_classes, channels):
    keras.utils.set_random_seed(args.seed)
    return kse.models.small_unet((args.size[0], args.size[1], channels), classes=num_classes,
                                 activation=None, filters=args.filters)


def train_run(run, data, args, out):
    xt, yt, xv, yv, k, names, ignore, channels = data
    model = build_model(args, k, channels)
    sparse_ce = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=ignore)
    callbacks = []
    if run == "ce":
        loss, ds = sparse_ce, plain_dataset(xt, yt, args)
    elif run == "focal":
        freq = pixel_frequencies(yt, k, ignore)
        alpha = 1.0 / np.maximum(freq, 1e-6)
        alpha = (alpha / alpha.mean()).tolist()
        loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0,
                                                         from_logits=True)
        ds = plain_dataset(xt, yt, args, one_hot_classes=k)
    elif run == "tce-loss":
        loss = kse.losses.TiltedCrossEntropy(t=args.t, level="image", ignore_index=ignore)
        ds = plain_dataset(xt, yt, args)
    else:  # "tce": Algorithm 1, class sampler + untilted CE
        ds = kse.data.class_sampled_dataset(
            xt, yt, k, args.batch_size, ignore_index=ignore,
            augment=make_augment(args.size, True),
            cache_path=os.path.join(out, "class_presence.npz"), seed=args.seed,
            image_key=model.layers[0].name)  # the model's input layer name
        callbacks.append(kse.callbacks.StochasticTCESampler(args.t, args.gamma, ds,
                                                            class_names=names))
        loss = sparse_ce
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=loss,
                  run_eagerly=args.run_eagerly)
    start = time.time()
    history = model.fit(ds, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                        callbacks=callbacks, verbose=0)
    seconds = time.time() - start
    metric = kse.metrics.ConfusionMatrixIoU(k, ignore_index=ignore)
    for x, y in plain_dataset(xv, yv, args, train=False):
        metric.update_state(y, model(x, training=False))
    final = {key: values[-1] for key, values in history.history.items()}
    return np.asarray(metric.confusion_matrix()), seconds, final


def majority_confusion(data, args):
    """Confusion matrix of the constant model that predicts the most frequent training class,
    on the validation labels exactly as the trained models are scored."""
    xt, yt, xv, yv, k, _, ignore, _ = data
    majority = int(np.argmax(pixel_frequencies(yt, k, ignore)))
    matrix = np.zeros((k, k), "int64")
    for _, labels in plain_dataset(xv, yv, args, train=False):
        truth = labels.numpy().astype("int64").ravel()
        truth = truth[(truth >= 0) & (truth < k)]  # drops the ignore label
        matrix[:, majority] += np.bincount(truth, minlength=k)[:k]
    return matrix


def write_results(path, matrices, reports, baseline):
    """results.json: per run the confusion matrix and every number of the printed tables."""
    def plain(report):
        return {key: (np.asarray(value).tolist() if np.ndim(value) else float(value))
                for key, value in report.items()}

    record = {label: {"confusion_matrix": np.asarray(matrices[label]).tolist(),
                      **plain(report)} for label, report in reports.items()}
    record["majority class baseline"] = {"confusion_matrix": baseline.tolist(),
                                         **plain(kse.metrics.fairness_report(baseline))}
    with open(path, "w") as handle:
        json.dump(record, handle, indent=1)


def main(argv=None):
    args = parse_args(argv)
    out = args.out or os.path.join("runs", "cityscapes_tce")
    os.makedirs(out, exist_ok=True)
    data = load_data(args)
    names, k = data[5], data[4]
    source = args.data_root or f"brain sample ({k} classes)"
    print(f"data: {source}; train {len(data[0])}, val {len(data[2])} images at "
          f"{args.size[0]}x{args.size[1]}; runs: {', '.join(args.runs)}")
    matrices = {}
    for run in args.runs:
        matrix, seconds, final = train_run(run, data, args, out)
        label = {"ce": "CE", "focal": "Focal", "tce": f"TCE t={args.t:g} (sampler)",
                 "tce-loss": f"TCE loss t={args.t:g}"}[run]
        matrices[label] = matrix
        weights = [v for key, v in final.items() if key.startswith("tce_weight_")]
        extra = f", final sampling weights {np.round(weights, 3).tolist()}" if weights else ""
        print(f"  {label}: trained in {seconds:.0f} s, final loss {final['loss']:.4f}{extra}")
    first = next(iter(matrices))
    reference = kse.metrics.fairness_report(matrices[first])
    order = np.argsort(np.where(np.isnan(reference["class_iou"]), np.inf,
                                reference["class_iou"]), kind="stable")
    reports = {label: kse.metrics.fairness_report(m, reference_order=order)
               for label, m in matrices.items()}
    print(f"\nFairness criteria (IoU x 100; sorted tails ordered by {first}'s class IoUs)")
    print(kse.metrics.format_fairness_table(reports))
    print(f"\nPer-class IoU x 100, classes sorted by {first}")
    width = max(len(label) for label in reports)
    print(" " * 14 + "  ".join(label.rjust(width) for label in reports))
    for c in order:
        cells = "  ".join(f"{r['class_iou'][c] * 100:{width}.2f}" for r in reports.values())
        print(f"{names[c][:12]:>12}  {cells}")
    baseline = majority_confusion(data, args)
    print(f"\nmajority-class baseline (predict the most frequent training class everywhere): "
          f"mIoU {kse.metrics.fairness_report(baseline)['miou'] * 100:.2f}")
    write_results(os.path.join(out, "results.json"), matrices, reports, baseline)
    return reports


if __name__ == "__main__":
    main()
