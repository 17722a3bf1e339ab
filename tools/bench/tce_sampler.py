"""Images per second of the class-sampled pipeline against a plain shuffled one.

Both pipelines read the same PNG files (the shipped brain sample's label maps and RGB noise
images of equal decoding cost, written to a temporary folder), decode and augment them with the same function
(``kse.data.indexed_loader``: PNG decoding, random flip, random brightness), in parallel, and
batch and prefetch the same way; the only difference is how indices are chosen: a shuffled
stream vs the class draw of ``kse.data.class_sampled_dataset`` (a categorical draw from the
weight variable, then a minibatch among the images containing that class). The weights are
changed between rounds, as the sampler callback would.

Rounds alternate between the two pipelines (A B A B ...) so that a machine shared with other
jobs slows both alike; the table gives the median images/s of each and their ratio.

    python tools/bench/tce_sampler.py [--batches 60] [--rounds 5] [--size 128]
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras_seg_extras as kse  # noqa: E402


def augment(image, label):
    flip = tf.random.uniform([]) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    label = tf.cond(flip, lambda: tf.image.flip_left_right(label), lambda: label)
    image = tf.clip_by_value(image + tf.random.uniform([], -0.1, 0.1), 0.0, 1.0)
    return image, label


def write_files(folder, size, num_classes):
    """Brain label maps with RGB noise images of equal decoding cost.

    The brain slices themselves decode faster the more background they show, and the class
    draw favours the slices with many regions: with them the ratio would measure the data,
    not the pipeline. Noise PNGs of one size cost the same to decode whichever is drawn.
    """
    (_, y), _ = kse.datasets.load_brain(image_size=size, num_classes=num_classes)
    noise = np.random.default_rng(0)
    images, labels = [], []
    for n in range(y.shape[0]):
        image = noise.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        for array, name, store in ((image, f"{n:04d}_image.png", images),
                                   (y[n], f"{n:04d}_label.png", labels)):
            path = os.path.join(folder, name)
            tf.io.write_file(path, tf.io.encode_png(array))
            store.append(path)
    return images, labels


def plain(images, labels, batch):
    load = kse.data.indexed_loader(images, labels, augment=augment)
    n = len(images)
    return (tf.data.Dataset.range(n).shuffle(n, seed=0).repeat()
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def measure(iterator, batches, batch):
    next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--num-classes", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        images, labels = write_files(folder, args.size, args.num_classes)
        sampled = kse.data.class_sampled_dataset(
            images, labels, args.num_classes, args.batch_size, augment=augment, seed=0,
            cache_path=os.path.join(folder, "presence.npz"))
        plain_it, sampled_it = iter(plain(images, labels, args.batch_size)), iter(sampled)
        rng = np.random.default_rng(0)
        rates = {"plain": [], "sampled": []}
        for _ in range(args.rounds):
            rates["plain"].append(measure(plain_it, args.batches, args.batch_size))
            sampled.sampling_weights.assign(rng.dirichlet(np.ones(args.num_classes)).astype("f"))
            rates["sampled"].append(measure(sampled_it, args.batches, args.batch_size))
    plain_rate, sampled_rate = np.median(rates["plain"]), np.median(rates["sampled"])
    pair_ratios = np.array(rates["sampled"]) / np.array(rates["plain"])
    ratio = float(np.median(pair_ratios))
    print(f"{len(images)} RGB PNGs {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.rounds} alternating rounds of {args.batches} batches; median images/s; "
          f"ratio = median over rounds of (sampled / plain) of the same round "
          f"(quartiles {np.percentile(pair_ratios, 25):.2f}-{np.percentile(pair_ratios, 75):.2f})")
    print("| pipeline | images/s | ratio to plain |")
    print("|---|---|---|")
    print(f"| plain shuffled | {plain_rate:.0f} | 1.00 |")
    print(f"| class-sampled (TCE) | {sampled_rate:.0f} | {ratio:.2f} |")
    return ratio


if __name__ == "__main__":
    main()
