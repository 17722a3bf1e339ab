"""Cost of checking a folder of PNGs before training, against the plain pipeline's first epoch.

A folder of ``--pairs`` image/mask PNG pairs (crops of the shipped nuclei sample, random
offsets, ``--size`` px) is read by:

- ``plain``: the same ``read_file`` + ``decode_image`` + resize-if-needed + batch as
  ``segmentation_dataset``, with nothing added (the pipeline before file checks);
- ``pipeline, no size check``: ``segmentation_dataset(..., check_files="off")`` with
  ``file_check._read_checked`` replaced by a plain ``tf.io.read_file`` (the A/B of the check);
- ``pipeline, size check``: the same as shipped: the per-file size comparison that names a
  file changed after the check (``_read_checked``);
- ``structure check``: ``kse.data.check_files`` over every image and mask (read
  whole, PNG chunks and CRCs walked, no decoding), in parallel; the per-process cache is
  cleared before each run;
- ``decode check``: the same plus a full TensorFlow decode of every file.

Runs alternate so that a change in machine load hits all; the table gives medians and the
ratio to ``plain``.

    python tools/bench/file_check.py [--pairs 2000] [--size 64] [--repeats 3]
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


def write_folder(folder, pairs, size):
    import tensorflow as tf

    image, mask, _ = kse.datasets.load_nuclei_image()
    image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    mask = mask if mask.ndim == 2 else mask[..., 0]
    rng = np.random.default_rng(0)
    images, masks = [], []
    for i in range(pairs):
        r, c = rng.integers(0, image.shape[0] - size, 2)
        images.append(os.path.join(folder, f"image_{i:05d}.png"))
        masks.append(os.path.join(folder, f"mask_{i:05d}.png"))
        tf.io.write_file(images[-1], tf.io.encode_png(image[r:r + size, c:c + size]))
        tf.io.write_file(masks[-1], tf.io.encode_png(
            (mask[r:r + size, c:c + size, None] > 0).astype(np.uint8) * 255))
    return images, masks


def plain(images, masks, size, batch):
    import tensorflow as tf

    def load(index):
        image = tf.io.decode_image(tf.io.read_file(tf.gather(images, index)), channels=3,
                                   expand_animations=False)
        mask = tf.io.decode_image(tf.io.read_file(tf.gather(masks, index)), channels=1,
                                  expand_animations=False)
        image = tf.cond(tf.reduce_all(tf.shape(image)[:2] == size), lambda: image,
                        lambda: tf.cast(tf.image.resize(image, [size, size]), tf.uint8))
        mask = tf.image.resize(mask, [size, size], method="nearest")
        return image, tf.cast(mask > 0, tf.uint8)

    return (tf.data.Dataset.range(len(images))
            .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch).prefetch(tf.data.AUTOTUNE))


def epoch(dataset):
    start = time.perf_counter()
    for _ in dataset:
        pass
    return time.perf_counter() - start


def pipeline_epoch(images, masks, size, batch, size_check):
    import tensorflow as tf

    from keras_seg_extras.data import file_check

    shipped = file_check._read_checked
    if not size_check:
        file_check._read_checked = lambda owner, paths, sizes, index: tf.io.read_file(
            tf.gather(paths, index))
    try:
        dataset = kse.data.segmentation_dataset(images, masks, batch, size,
                                                shuffle=False, check_files="off")
    finally:
        file_check._read_checked = shipped
    return epoch(dataset)


def check(images, masks, mode):
    from keras_seg_extras.data import file_check

    file_check._CACHE.clear()
    start = time.perf_counter()
    for paths, role in ((images, file_check.FileRole("image", 3)),
                        (masks, file_check.FileRole("mask", 1, png_only=True,
                                                    allow_16_bit=False))):
        assert file_check.check_files(paths, role, mode, progress=False) == {}
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        images, masks = write_folder(folder, args.pairs, args.size)
        megabytes = sum(os.path.getsize(p) for p in images + masks) / 2 ** 20
        runs = {
            "plain first epoch": lambda: epoch(plain(images, masks, args.size, args.batch_size)),
            "pipeline, no size check": lambda: pipeline_epoch(
                images, masks, args.size, args.batch_size, False),
            "pipeline, size check": lambda: pipeline_epoch(
                images, masks, args.size, args.batch_size, True),
            "structure check": lambda: check(images, masks, "structure"),
            "decode check": lambda: check(images, masks, "decode"),
        }
        times = {name: [] for name in runs}
        for name, run in runs.items():  # warm-up: tracing, file cache
            run()
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(run())
    base = float(np.median(times["plain first epoch"]))
    print(f"{args.pairs} pairs ({2 * args.pairs} PNG files, {megabytes:.1f} MB), "
          f"{args.size} px, batch {args.batch_size}, median of {args.repeats}")
    print("| run | seconds | files/s | ratio to plain epoch |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = float(np.median(values))
        print(f"| {name} | {median:.3f} | {2 * args.pairs / median:,.0f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
