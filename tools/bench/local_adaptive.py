"""Benchmark: LocallyAdaptiveLoss ("fast" and "patches") against plain softmax cross-entropy.

At (4, 256, 256, 21), kernel 3, 5 and 7, on real label maps (four slices of the brain sample,
regions folded to 21 classes, 256 px) and on uniformly random labels (every pixel on a
boundary, the worst case), it measures in one run:

- forward + backward time (loss and its gradient with respect to the logits, one
  ``tf.function`` each, no XLA), best of a few runs, the three losses interleaved so that a
  shared machine's load hits them alike;
- peak memory of that forward + backward: the rise of the process's resident set (VmHWM -
  VmRSS before the call, after resetting VmHWM through /proc/self/clear_refs). TensorFlow's
  CPU allocator has no statistics (tf.config.experimental.get_memory_info raises on CPU) and
  tracemalloc does not see it, so the script re-executes itself with
  MALLOC_MMAP_THRESHOLD_=65536: every large buffer is then mmapped and returned to the OS when
  freed, and the peak RSS rise is the peak of the live tensors (inputs excluded);
- one training step (``model.train_on_batch``) of ``kse.models.small_unet`` with filters
  (16, 32, 64, 128) (a stand-in for the U-Net++ of issue 7, which is not merged yet) with
  cross-entropy, the fast and the patches loss at the middle kernel (5), on the real maps.

Usage: python tools/bench/local_adaptive.py [--kernels 3 5 7] [--repeats 3] [--no-train]
Linux only (reads /proc). Takes about 3 minutes on 2 CPU cores.
"""

import argparse
import os
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and __name__ == "__main__":
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

import keras_seg_extras as kse  # noqa: E402

BATCH, SIZE, CLASSES = 4, 256, 21


def _status(field):
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rise(call):
    """Run ``call`` once; return (seconds, bytes the resident set rose above its start)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    call()
    seconds = time.perf_counter() - start
    return seconds, _status("VmHWM") - before


def real_labels():
    (_, y_train), _ = kse.datasets.brain.load_data(image_size=SIZE, num_classes=CLASSES)
    picks = np.linspace(0.35, 0.75, BATCH) * (len(y_train) - 1)
    return y_train[picks.astype(int), ..., 0].astype("int32")


def boundary_fraction(labels, kernel_size):
    r = kernel_size // 2
    padded = np.pad(labels, ((0, 0), (r, r), (r, r)), constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel_size, kernel_size),
                                                       axis=(1, 2))
    centre = labels[..., None, None]
    return float(((windows >= 0) & (windows != centre)).any((-1, -2)).mean())


def gradient_step(loss_fn):
    @tf.function(autograph=False)
    def step(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = tf.reduce_mean(loss_fn(labels, logits))
        return value, tape.gradient(value, logits)
    return step


def cross_entropy(labels, logits):
    return keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def local_adaptive(kernel_size, implementation):
    def loss(labels, logits):
        return kse.losses.locally_adaptive_loss(labels, logits, kernel_size=kernel_size,
                                                implementation=implementation)
    return loss


def measure(steps, labels, logits, repeats):
    """Interleaved timing; peak memory from the first measured call of each."""
    for step in steps.values():
        step(labels, logits)[1].numpy()  # trace and warm up
    times = {name: [] for name in steps}
    memory = {}
    for rep in range(repeats):
        for name, step in steps.items():
            seconds, rise = peak_rise(lambda: step(labels, logits)[1].numpy())
            times[name].append(seconds)
            memory.setdefault(name, rise)
    return {name: min(t) for name, t in times.items()}, memory


def loss_table(label_sets, kernels, repeats):
    rng = np.random.default_rng(0)
    logits = tf.constant(rng.normal(size=(BATCH, SIZE, SIZE, CLASSES)).astype("float32"))
    rows = []
    for set_name, labels_np in label_sets.items():
        labels = tf.constant(labels_np)
        for k in kernels:
            steps = {"ce": gradient_step(cross_entropy),
                     "fast": gradient_step(local_adaptive(k, "fast")),
                     "patches": gradient_step(local_adaptive(k, "patches"))}
            times, memory = measure(steps, labels, logits, repeats)
            rows.append((set_name, k, boundary_fraction(labels_np, k), times, memory))
            print(f"  measured {set_name} k={k}", flush=True)
    return rows


def training_table(labels_np, kernels, repeats):
    rng = np.random.default_rng(1)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype("float32")
    losses = {"cross-entropy": keras.losses.SparseCategoricalCrossentropy(from_logits=True)}
    middle = kernels[len(kernels) // 2]
    losses[f"fast k={middle}"] = kse.losses.LocallyAdaptiveLoss(kernel_size=middle)
    losses[f"patches k={middle}"] = kse.losses.LocallyAdaptiveLoss(
        kernel_size=middle, implementation="patches")
    models = {}
    for name, loss in losses.items():
        keras.utils.set_random_seed(0)
        model = kse.models.small_unet((SIZE, SIZE, 1), classes=CLASSES, activation=None,
                                      filters=(16, 32, 64, 128))
        model.compile(optimizer="adam", loss=loss)
        model.train_on_batch(images, labels_np)  # trace and warm up
        models[name] = model
    times = {name: [] for name in models}
    for rep in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model.train_on_batch(images, labels_np)
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-train", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    real = real_labels()
    random = np.random.default_rng(2).integers(0, CLASSES, real.shape).astype("int32")
    rows = loss_table({"brain (real)": real, "random": random}, args.kernels, args.repeats)
    mb = 2.0 ** 20
    print(f"\nLoss forward+backward at ({BATCH}, {SIZE}, {SIZE}, {CLASSES}), best of "
          f"{args.repeats}; memory = peak RSS rise during one call")
    print("| labels | k | boundary px | CE ms | fast ms | patches ms | fast/CE time "
          "| patches/fast time | CE MB | fast MB | patches MB | fast/CE mem | patches/fast mem |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, k, fraction, t, m in rows:
        print(f"| {name} | {k} | {fraction:.0%} | {t['ce'] * 1e3:.0f} | {t['fast'] * 1e3:.0f} "
              f"| {t['patches'] * 1e3:.0f} | {t['fast'] / t['ce']:.2f}x "
              f"| {t['patches'] / t['fast']:.2f}x | {m['ce'] / mb:.0f} | {m['fast'] / mb:.0f} "
              f"| {m['patches'] / mb:.0f} | {m['fast'] / max(m['ce'], 1):.2f}x "
              f"| {m['patches'] / max(m['fast'], 1):.2f}x |")
    if not args.no_train:
        times = training_table(real, args.kernels, args.repeats)
        base = times["cross-entropy"]
        print(f"\nTraining step (train_on_batch) of small_unet filters (16, 32, 64, 128), "
              f"batch {BATCH} at {SIZE} px, {CLASSES} classes, brain labels, best of "
              f"{args.repeats}")
        print("| loss | step ms | vs cross-entropy |")
        print("|---|---|---|")
        for name, seconds in times.items():
            print(f"| {name} | {seconds * 1e3:.0f} | {(seconds / base - 1) * 100:+.1f}% |")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
