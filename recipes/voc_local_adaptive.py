"""Pascal VOC 2012: softmax cross-entropy against the Locally Adaptive loss at kernel 3, 5 and 7.

The comparison of Guo et al. (2018)'s table 2 (RN-101 + SoftMax CE 74.6 mIoU; L^AD with kernels
3/5/7: 75.7/76.1/75.1), at a scale that runs anywhere: every run trains the same model from
the same initial weights with a different loss and reports the validation mIoU.

Data:
    ``--data-dir VOC2012`` with the usual layout: ``JPEGImages/<id>.jpg``,
    ``SegmentationClass/<id>.png`` (palette PNGs whose indices are the 21 class ids, 255 on
    object borders = ignored), ``ImageSets/Segmentation/{train,val}.txt``. Images and labels are
    resized to ``--image-size`` (bilinear / nearest neighbour). With no ``--data-dir`` the
    recipe runs on the brain MRI sample shipped with the package (AAL regions folded to 21
    classes, split by slab), which takes a few minutes on 2 CPU cores.

Model: ``kse.models.small_unet`` trained from scratch (logits). For the paper's setting use a
DeepLab-style model on a GPU and more iterations; the loss is the same object.

Usage:
    python recipes/voc_local_adaptive.py                          # brain sample, CPU
    python recipes/voc_local_adaptive.py --data-dir /data/VOC2012 --image-size 320 --epochs 30
"""

import argparse
import json
import os
import time

import keras
import numpy as np

import keras_seg_extras as kse

VOC_CLASSES = 21
VOC_IGNORE = 255
PAPER_TABLE_2 = {"cross-entropy": 74.6, "local k=3": 75.7, "local k=5": 76.1, "local k=7": 75.1}


def load_voc_split(data_dir, split, image_size, limit=None):
    """Read one VOC split: uint8 images (N, S, S, 3) and uint8 labels (N, S, S, 1)."""
    from PIL import Image

    list_file = os.path.join(data_dir, "ImageSets", "Segmentation", f"{split}.txt")
    if not os.path.isfile(list_file):
        raise ValueError(f"voc_local_adaptive: `--data-dir` must hold ImageSets/Segmentation/"
                         f"{split}.txt; received {data_dir!r}.")
    with open(list_file, encoding="utf-8") as handle:
        ids = [line.strip() for line in handle if line.strip()]
    if limit:
        ids = ids[:limit]
    images, labels = [], []
    for image_id in ids:
        image = Image.open(os.path.join(data_dir, "JPEGImages", f"{image_id}.jpg")).convert("RGB")
        label = Image.open(os.path.join(data_dir, "SegmentationClass", f"{image_id}.png"))
        if label.mode != "P":
            raise ValueError(f"voc_local_adaptive: label of {image_id!r} must be a palette PNG "
                             f"whose indices are class ids; received mode {label.mode!r}.")
        size = (image_size, image_size)
        images.append(np.asarray(image.resize(size, Image.BILINEAR), dtype="uint8"))
        labels.append(np.asarray(label.resize(size, Image.NEAREST), dtype="uint8")[..., None])
    values = np.unique(np.stack(labels)) if labels else np.array([], "uint8")
    bad = values[(values >= VOC_CLASSES) & (values != VOC_IGNORE)]
    if bad.size:
        raise ValueError(f"voc_local_adaptive: label values must be 0..20 or 255; received "
                         f"{bad.tolist()} in {split}.")
    return np.stack(images), np.stack(labels)


def load_data(data_dir, image_size, limit=None):
    """``((x_train, y_train), (x_val, y_val), description)`` from VOC or the brain sample."""
    if data_dir:
        return (load_voc_split(data_dir, "train", image_size, limit),
                load_voc_split(data_dir, "val", image_size, limit), f"Pascal VOC at {data_dir}")
    train, val = kse.datasets.brain.load_data(image_size=image_size, num_classes=VOC_CLASSES)
    if limit:
        train, val = (train[0][:limit], train[1][:limit]), (val[0][:limit], val[1][:limit])
    return train, val, "brain MRI sample (AAL regions folded to 21 classes)"


def train_and_evaluate(loss, train, val, args, seed):
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_val, y_val) = train, val
    model = kse.models.small_unet(x_train.shape[1:], num_classes=VOC_CLASSES, activation=None,
                                  filters=tuple(args.filters))
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=loss)
    model.fit(x_train.astype("float32") / 255.0, y_train, batch_size=args.batch_size,
              epochs=args.epochs, shuffle=True, verbose=0)
    # A few hundred steps are too few for momentum-0.99 moving averages to forget their
    # initial values: set them to the exact statistics of (up to) 256 training images.
    kse.training.recompute_batchnorm_statistics(model, [x_train[:256].astype("float32") / 255.0])
    metric = kse.metrics.ConfusionMatrixIoU(VOC_CLASSES, ignore_index=VOC_IGNORE)
    for start in range(0, len(x_val), args.batch_size):
        images = x_val[start:start + args.batch_size].astype("float32") / 255.0
        metric.update_state(y_val[start:start + args.batch_size], model(images, training=False))
    return float(metric.result())


def build_losses(kernels, ignore_index, minkowski_k):
    losses = {"cross-entropy": keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, ignore_class=ignore_index)}
    for k in kernels:
        losses[f"local k={k}"] = kse.losses.LocallyAdaptiveLoss(
            kernel_size=k, minkowski_k=minkowski_k, ignore_index=ignore_index)
    return losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None, help="VOC2012 folder; default: brain sample")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--filters", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--minkowski-k", type=float, default=3.0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default=None,
                        help="write results.json (every number of the table) there")
    args = parser.parse_args(argv)

    train, val, description = load_data(args.data_dir, args.image_size, args.limit)
    print(f"{description}: {len(train[0])} training and {len(val[0])} validation images at "
          f"{args.image_size} px; small_unet filters {tuple(args.filters)}, {args.epochs} epochs",
          flush=True)
    results = {}
    for name, loss in build_losses(args.kernels, VOC_IGNORE, args.minkowski_k).items():
        start = time.perf_counter()
        results[name] = train_and_evaluate(loss, train, val, args, args.seed)
        print(f"  {name:14s} mIoU {100 * results[name]:5.1f}  "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    # The constant model predicting the most frequent training class: what learning must beat.
    majority = int(np.argmax(kse.data.class_pixel_counts(train[1], VOC_CLASSES, VOC_IGNORE)))
    constant = np.zeros((VOC_CLASSES, VOC_CLASSES), "int64")  # rows: truth, columns: prediction
    constant[:, majority] = kse.data.class_pixel_counts(val[1], VOC_CLASSES, VOC_IGNORE)
    baseline = float(np.nanmean(kse.metrics.class_iou_from_confusion(constant)))
    print("\n| loss | mIoU here (%) | paper table 2 (VOC, RN-101) |")
    print("|---|---|---|")
    for name, value in results.items():
        paper = PAPER_TABLE_2.get(name)
        print(f"| {name} | {100 * value:.1f} | {'-' if paper is None else paper} |")
    print(f"| majority class (constant) | {100 * baseline:.1f} | - |")
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)
        with open(os.path.join(args.output_dir, "results.json"), "w") as handle:
            json.dump({"miou": results, "majority_class_miou": baseline,
                       "majority_class": majority}, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
