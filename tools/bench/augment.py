"""Images per second of the augmented segmentation pipeline against the plain one.

Both pipelines read the same PNG files (real nuclei tiles from the shipped sample, D4
variants, written to a temporary folder), decode, resize and batch them the same way; the
augmented one adds ``kse.data.siim_preset`` through ``tf.numpy_function`` with
``num_parallel_calls=AUTOTUNE``. Runs alternate (plain, augmented, plain, ...) so that a
change in machine load hits both; the table gives the median of the repeats and the ratio.

    python tools/bench/augment.py [--images 64] [--image-size 256] [--repeats 3]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras_seg_extras as kse  # noqa: E402


def write_pngs(folder, count, size):
    import cv2

    (x_train, y_train), (x_val, y_val) = kse.datasets.load_nuclei(tile_size=256)
    x, y = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val])
    images, masks = [], []
    for i in range(count):
        k = i % len(x)
        turns, flip = (i // len(x)) % 4, (i // (4 * len(x))) % 2
        image, mask = np.rot90(x[k], turns), np.rot90(y[k, ..., 0], turns)
        if flip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        if size != 256:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
        images.append(os.path.join(folder, f"image_{i:04d}.png"))
        masks.append(os.path.join(folder, f"mask_{i:04d}.png"))
        cv2.imwrite(images[-1], np.ascontiguousarray(image))
        cv2.imwrite(masks[-1], np.ascontiguousarray(mask) * 255)
    return images, masks


def images_per_second(dataset, count):
    start = time.perf_counter()
    seen = 0
    for image, _ in dataset:
        seen += int(image.shape[0])
    elapsed = time.perf_counter() - start
    assert seen == count
    return count / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        images, masks = write_pngs(folder, args.images, args.image_size)
        preset = kse.data.siim_preset(args.image_size)
        runs = {"plain": [], "augmented": []}
        for repeat in range(args.repeats + 1):  # the first round warms up (tracing, caches)
            for name, transform in (("plain", None), ("augmented", preset)):
                dataset = kse.data.segmentation_dataset(images, masks, args.batch_size,
                                                        args.image_size, augment=transform,
                                                        seed=repeat)
                rate = images_per_second(dataset, args.images)
                if repeat:
                    runs[name].append(rate)
    plain, augmented = np.median(runs["plain"]), np.median(runs["augmented"])
    print(f"{args.images} PNG images {args.image_size}x{args.image_size}, batch "
          f"{args.batch_size}, median of {args.repeats} alternating runs")
    print("| pipeline | images/s | ratio to plain |")
    print("|---|---|---|")
    print(f"| plain (decode + resize + batch) | {plain:.1f} | 1.00 |")
    print(f"| + siim_preset (albumentations, parallel) | {augmented:.1f} | "
          f"{augmented / plain:.2f} |")
    return plain, augmented


if __name__ == "__main__":
    main()
