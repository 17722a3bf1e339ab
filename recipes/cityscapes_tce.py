"""Fairness across classes: cross-entropy vs focal vs Stochastic TCE.

Szabo, Jamali-Rad and Mannava, "Tilted Cross-Entropy (TCE): Promoting Fairness in Semantic
Segmentation", CVPR Workshops (2021), table 3: one model trained with each objective, the
fairness criteria side by side (mIoU, sorted bottom/top 25% by the first run's class IoUs,
25th percentile tails, worst class IoU, std), the per-class IoUs and a majority-class baseline.

``--runs`` (comma separated; the first sets the order of the sorted tails): ``ce``
(cross-entropy, plain shuffled pipeline), ``focal`` (Keras's categorical focal loss, gamma 2,
alpha the inverse training pixel frequency normalised to mean 1), ``tce`` (Algorithm 1: the
class-sampled pipeline steered by ``StochasticTCESampler``, plain CE, line 9) and
``tce-loss`` (``TiltedCrossEntropy``, image level, plain pipeline).

Data: ``--data-root`` in the Cityscapes layout (19 train-id classes, 255 ignored), or the
shipped brain MRI sample, 116 regions folded into ``--num-classes`` (minutes on 2 CPU cores).

Example:
    python recipes/cityscapes_tce.py                          # brain sample: CE vs TCE
    python recipes/cityscapes_tce.py --data-root ~/cityscapes --runs ce,focal,tce \\
        --image-size 256x512 --epochs 40 --steps-per-epoch 400 --batch-size 8
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

if __package__ in (None, ""):  # run as a script from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_seg_extras as kse  # noqa: E402

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle"]
RUNS = ("ce", "focal", "tce", "tce-loss")
LABELS = {"ce": "CE", "focal": "Focal", "tce": "TCE t={t:g} (sampler)",
          "tce-loss": "TCE loss t={t:g}"}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", help="Cityscapes root; omit for the brain sample")
    parser.add_argument("--runs", default="ce,tce", help=f"comma-separated of {RUNS}")
    parser.add_argument("--t", type=float, default=1.0, help="tilt")
    parser.add_argument("--gamma", type=float, default=0.1, help="sampler rate (Alg. 1 l. 7)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps-per-epoch", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", help="HxW (default: 256x512 Cityscapes, 64x64 brain)")
    parser.add_argument("--num-classes", type=int, default=9, help="brain: folded classes")
    parser.add_argument("--filters", default="8,16,32,64", help="small_unet filters per level")
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--limit", type=int, help="Cityscapes: at most N images per split")
    parser.add_argument("--out", default=None, help="folder for the index cache and logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-eagerly", action="store_true", help="no tf.function tracing")
    args = parser.parse_args(argv)
    args.runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    if not args.runs or not set(args.runs) <= set(RUNS):
        parser.error(f"--runs: {args.runs} must be among {RUNS}")
    size = (args.image_size or ("256x512" if args.data_root else "64x64")).lower().split("x")
    args.filters = tuple(int(f) for f in args.filters.split(","))
    factor = 2 ** (len(args.filters) - 1)
    if len(size) != 2 or not all(v.isdigit() and int(v) % factor == 0 for v in size):
        parser.error(f"--image-size must be HxW, multiples of {factor}; got {args.image_size!r}")
    args.size = tuple(int(v) for v in size)
    return args


def load_data(args):
    """Returns (train_images, train_labels, val_images, val_labels, K, names, ignore, channels)."""
    if args.data_root:
        xt, yt = kse.data.cityscapes_files(args.data_root, "train", args.limit)
        xv, yv = kse.data.cityscapes_files(args.data_root, "val", args.limit)
        return xt, yt, xv, yv, 19, CITYSCAPES_CLASSES, 255, 3
    if args.size[0] != args.size[1]:
        raise SystemExit("the brain sample has square slices: give --image-size SxS")
    (xt, yt), (xv, yv) = kse.datasets.brain.load_data(image_size=args.size[0],
                                                        num_classes=args.num_classes)
    names = ["background"] + [f"c{k}" for k in range(1, args.num_classes)]
    return xt, yt, xv, yv, args.num_classes, names, None, 1


def plain_dataset(images, labels, args, one_hot_classes=None, train=True):
    """Shuffled, repeated and flipped for training; every image once, in order, for scoring."""
    augment = kse.data.resize_and_flip(args.size, train)
    ds = kse.data.indexed_dataset(images, labels, args.batch_size, shuffle=train, repeat=train,
                                  seed=args.seed, augment=augment)
    if one_hot_classes:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y[..., 0], one_hot_classes)))  # 255 -> zeros
    return ds


def train_run(run, data, args, out):
    """Train one run from the seeded initial weights; its validation confusion matrix."""
    xt, yt, xv, yv, k, names, ignore, channels = data
    keras.utils.set_random_seed(args.seed)
    model = kse.models.small_unet((*args.size, channels), num_classes=k, activation=None,
                                  filters=args.filters)
    sparse_ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore)
    callbacks = []
    if run == "ce":
        loss, ds = sparse_ce, plain_dataset(xt, yt, args)
    elif run == "focal":
        counts = kse.data.class_pixel_counts(yt, k, ignore)
        alpha = 1.0 / np.maximum(counts / max(counts.sum(), 1), 1e-6)
        alpha = (alpha / alpha.mean()).tolist()
        loss = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0, from_logits=True)
        ds = plain_dataset(xt, yt, args, one_hot_classes=k)
    elif run == "tce-loss":
        loss = kse.losses.TiltedCrossEntropy(t=args.t, level="image", ignore_index=ignore)
        ds = plain_dataset(xt, yt, args)
    else:  # "tce": Algorithm 1, class sampler + untilted CE
        ds = kse.data.class_sampled_dataset(
            xt, yt, k, args.batch_size, ignore_index=ignore,
            augment=kse.data.resize_and_flip(args.size, True),
            cache_path=os.path.join(out, "class_presence.npz"), seed=args.seed,
            image_key=model.layers[0].name)  # the model's input layer name
        callbacks, loss = [kse.callbacks.StochasticTCESampler(args.t, args.gamma, ds,
                                                              class_names=names)], sparse_ce
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
    """The most frequent training class predicted everywhere, scored as the runs are (resized)."""
    xt, yt, xv, yv, k, _, ignore, _ = data
    resized = np.concatenate([y.numpy() for _, y in plain_dataset(xv, yv, args, train=False)])
    return kse.data.majority_class_confusion(kse.data.class_pixel_counts(yt, k, ignore),
                                             kse.data.class_pixel_counts(resized, k, ignore))


def write_results(path, matrices, reports, baseline):
    """results.json: per run the confusion matrix and every number of the printed tables."""
    matrices = {**matrices, "majority class baseline": baseline}
    reports = {**reports, "majority class baseline": kse.metrics.fairness_report(baseline)}
    record = {label: {"confusion_matrix": np.asarray(matrices[label]).tolist(),
                      **{key: np.asarray(value).tolist() for key, value in report.items()}}
              for label, report in reports.items()}
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
        label = LABELS[run].format(t=args.t)
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
        print(f"{names[c][:12]:>12}  " + "  ".join(
            f"{r['class_iou'][c] * 100:{width}.2f}" for r in reports.values()))
    baseline = majority_confusion(data, args)
    print(f"\nmajority-class baseline (predict the most frequent training class everywhere): "
          f"mIoU {kse.metrics.fairness_report(baseline)['miou'] * 100:.2f}")
    write_results(os.path.join(out, "results.json"), matrices, reports, baseline)
    return reports


if __name__ == "__main__":
    main()
