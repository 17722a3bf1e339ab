"""Benchmark: LocallyAdaptiveLoss ("fast" and "patches") against plain softmax cross-entropy.

At (4, 256, 256, 21), kernel 3, 5 and 7, on real label maps (four slices of the brain sample,
regions folded to 21 classes, 256 px) and on uniformly random labels (every pixel on a
boundary, the worst case), it measures in one run:

- forward + backward time (loss and its gradient with respect to the logits, one
  ``tf.function`` each, no XLA), the median of ``--repeats`` runs, the three losses
  interleaved so that a shared machine's load hits them alike;
- peak memory of that forward + backward, in a child process: the rise of its resident set
  (VmHWM - VmRSS before the call, after resetting VmHWM through /proc/self/clear_refs).
  TensorFlow's CPU allocator has no statistics (tf.config.experimental.get_memory_info raises
  on CPU) and tracemalloc does not see it, so the child runs with MALLOC_MMAP_THRESHOLD_=65536:
  every large buffer is then mmapped and returned to the OS when freed, and the peak RSS rise
  is the peak of the live tensors (inputs excluded). Times are not taken there: with that
  setting every new tensor is fresh pages (page faults), which penalises an implementation in
  proportion to how many buffers it allocates (a ~6.4x -> ~8.1x swing for the fast loss)
  and is not how a training process allocates;
- where the time goes at the middle kernel: the z-score, the depthwise convolution and the
  dense chain (both plus cross-entropy, no boundary work) timed alone, against cross-entropy;
- one training step (``model.train_on_batch``, Adam) with cross-entropy, the fast and the
  patches loss at the middle kernel (5), on the real maps, for two models: the smallest
  ``kse.models.UNetPlusPlus`` (EfficientNet-B0 encoder, random weights, the default decoder)
  and the much lighter ``kse.models.small_unet`` (filters 16-128), where the loss is a larger
  share of the step.

- the paths a user trains with, at the middle kernel on the real maps (``--paths``; with
  ``--paths-only`` nothing else): the default ("auto") loss and cross-entropy each compiled the
  same way, in a ``tf.function`` without XLA (where "auto" is "fast"), with
  ``jit_compile=True`` (XLA on the CPU; "auto" is "static") and under ``jax.jit`` (a child
  process with KERAS_BACKEND=jax; "static"); and, under XLA and JAX, the parts of the static
  loss alone (z-score, the same-label pooling, both plus cross-entropy).

Usage: python tools/bench/local_adaptive.py [--kernels 3 5 7] [--repeats 5] [--no-train]
       python tools/bench/local_adaptive.py --paths-only [--repeats 7]
Linux only (reads /proc). Takes about 10 minutes on 2 CPU cores (--paths-only: about 3).
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import keras  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf  # noqa: E402

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
    (_, y_train), _ = kse.datasets.load_brain(image_size=SIZE, num_classes=CLASSES)
    picks = np.linspace(0.35, 0.75, BATCH) * (len(y_train) - 1)
    return y_train[picks.astype(int), ..., 0].astype("int32")


def boundary_fraction(labels, kernel_size):
    r = kernel_size // 2
    padded = np.pad(labels, ((0, 0), (r, r), (r, r)), constant_values=-1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel_size, kernel_size),
                                                       axis=(1, 2))
    centre = labels[..., None, None]
    return float(((windows >= 0) & (windows != centre)).any((-1, -2)).mean())


def gradient_step(loss_fn, jit_compile=False):
    @tf.function(autograph=False, jit_compile=jit_compile)
    def step(labels, logits):
        with tf.GradientTape() as tape:
            tape.watch(logits)
            value = tf.reduce_mean(loss_fn(labels, logits))
        return value, tape.gradient(value, logits)
    return step


def _static_parts(kernel_size):
    """The parts of the static formulation alone, as functions of (labels, logits)."""
    from keras_seg_extras.losses import local_adaptive as la

    ops = keras.ops

    def zscore(labels, logits):
        return la._masked_zscore(logits, ops.ones_like(logits[..., :1]))

    def pooling(labels, logits):
        return la._same_label_pooling(labels, logits, kernel_size, 1, "count")

    def pooling_cross_entropy(labels, logits):
        return cross_entropy(labels, pooling(labels, zscore(labels, logits)))

    return {"z-score": zscore, f"same-label pooling {kernel_size}x{kernel_size}": pooling,
            "z-score + pooling + cross-entropy": pooling_cross_entropy}


def _path_losses(kernel_size):
    return {"cross-entropy": cross_entropy,
            f"locally adaptive k={kernel_size} (auto)": local_adaptive(kernel_size, "auto")}


def jax_path_child(kernel_size, repeats):
    """KERAS_BACKEND=jax child: print {name: median seconds} of jax.jit(value_and_grad)."""
    import jax
    import jax.numpy as jnp

    labels = jnp.asarray(real_labels())
    logits = jnp.asarray(np.random.default_rng(0).normal(
        size=(BATCH, SIZE, SIZE, CLASSES)).astype("float32"))
    calls = {}
    for name, loss in {**_path_losses(kernel_size), **_static_parts(kernel_size)}.items():
        step = jax.jit(jax.grad(lambda z, y, loss=loss: jnp.mean(loss(y, z))))
        calls[name] = lambda step=step: step(logits, labels).block_until_ready()
    print("JAXPATHS " + json.dumps(interleaved_medians(calls, repeats)), flush=True)


def paths_table(kernel_size, repeats):
    """{path: {name: median seconds}} for TensorFlow without and with XLA, and JAX."""
    labels, logits = tf.constant(real_labels()), logits_tensor()
    steps = {}
    for name, loss in _path_losses(kernel_size).items():
        steps[("tf.function", name)] = gradient_step(loss)
        steps[("XLA", name)] = gradient_step(loss, jit_compile=True)
    for name, loss in _static_parts(kernel_size).items():
        steps[("XLA", name)] = gradient_step(lambda y, z, loss=loss: loss(y, z),
                                             jit_compile=True)
    times = time_steps(steps, labels, logits, repeats)
    table = {}
    for (path, name), seconds in times.items():
        table.setdefault(path, {})[name] = seconds
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    command = [sys.executable, os.path.abspath(__file__), "--jax-paths-child", "--kernels",
               str(kernel_size), "--repeats", str(repeats)]
    output = subprocess.run(command, env=env, check=True, capture_output=True,
                            text=True).stdout
    line = [row for row in output.splitlines() if row.startswith("JAXPATHS ")][-1]
    table["jax.jit"] = json.loads(line[len("JAXPATHS "):])
    return table


def print_paths_table(table, kernel_size, repeats):
    print(f"\nPaths at k={kernel_size} (brain labels, forward+backward, median of {repeats}; "
          "each path's cross-entropy compiled the same way)")
    print("| path | loss | ms | vs cross-entropy on the same path |")
    print("|---|---|---|---|")
    for path, times in table.items():
        base = times["cross-entropy"]
        for name, seconds in times.items():
            print(f"| {path} | {name} | {seconds * 1e3:.0f} | {seconds / base:.2f}x |")


def cross_entropy(labels, logits):
    return keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def local_adaptive(kernel_size, implementation):
    def loss(labels, logits):
        return kse.losses.locally_adaptive_loss(labels, logits, kernel_size=kernel_size,
                                                implementation=implementation)
    return loss


def interleaved_medians(calls, repeats):
    """{name: zero-argument call} -> {name: median seconds}: one warm-up (tracing) call each,
    then ``repeats`` rounds that call every one in turn, so a shared machine's load hits them
    alike."""
    for call in calls.values():
        call()
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def time_steps(steps, labels, logits, repeats):
    """Median seconds of each loss + gradient step over ``repeats`` interleaved runs."""
    return interleaved_medians(
        {name: (lambda step=step: step(labels, logits)[1].numpy()) for name, step in
         steps.items()}, repeats)


def memory_steps(steps, labels, logits):
    """Peak resident-set rise of one call of each step (after a warm-up call)."""
    memory = {}
    for name, step in steps.items():
        step(labels, logits)[1].numpy()
        memory[name] = peak_rise(lambda: step(labels, logits)[1].numpy())[1]
    return memory


def label_sets():
    real = real_labels()
    random = np.random.default_rng(2).integers(0, CLASSES, real.shape).astype("int32")
    return {"brain (real)": real, "random": random}


def loss_steps(k):
    return {"ce": gradient_step(cross_entropy),
            "fast": gradient_step(local_adaptive(k, "fast")),
            "patches": gradient_step(local_adaptive(k, "patches"))}


def logits_tensor():
    rng = np.random.default_rng(0)
    return tf.constant(rng.normal(size=(BATCH, SIZE, SIZE, CLASSES)).astype("float32"))


def memory_child(kernels):
    """Run in a child with MALLOC_MMAP_THRESHOLD_ set: print {"set/k/loss": bytes} as JSON."""
    logits = logits_tensor()
    result = {}
    for set_name, labels_np in label_sets().items():
        for k in kernels:
            memory = memory_steps(loss_steps(k), tf.constant(labels_np), logits)
            result.update({f"{set_name}/{k}/{name}": value for name, value in memory.items()})
    print("MEMORY " + json.dumps(result), flush=True)


def measure_memory(kernels):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", "--kernels",
               *map(str, kernels)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    line = [row for row in output.splitlines() if row.startswith("MEMORY ")][-1]
    return json.loads(line[len("MEMORY "):])


def loss_table(sets, kernels, repeats, memory):
    logits = logits_tensor()
    rows = []
    for set_name, labels_np in sets.items():
        for k in kernels:
            times = time_steps(loss_steps(k), tf.constant(labels_np), logits, repeats)
            mem = {name: memory[f"{set_name}/{k}/{name}"] for name in times}
            rows.append((set_name, k, boundary_fraction(labels_np, k), times, mem))
            print(f"  measured {set_name} k={k}", flush=True)
    return rows


def floor_table(labels_np, kernel_size, repeats):
    """The parts every exact dense formulation pays, timed alone on the same tensors (forward
    + backward): the z-score, the fixed k x k depthwise convolution, and both plus the
    cross-entropy with no boundary work at all (not the loss: wrong at boundary centres)."""
    from keras_seg_extras.losses import local_adaptive as la

    weights = la.chessboard_weights(kernel_size)
    kernel = tf.constant(np.tile(weights[:, :, None, None], (1, 1, CLASSES, 1)))
    valid = tf.ones((BATCH, SIZE, SIZE, 1))

    def zscore(labels, logits):
        return la._masked_zscore(logits, valid)

    def convolution(labels, logits):
        return tf.nn.depthwise_conv2d(logits, kernel, [1, 1, 1, 1], "SAME")

    def dense_chain(labels, logits):
        pooled = convolution(labels, zscore(labels, logits)) / float(kernel_size ** 2)
        return cross_entropy(labels, pooled)

    steps = {"cross-entropy": gradient_step(cross_entropy), "z-score": gradient_step(zscore),
             f"depthwise {kernel_size}x{kernel_size}": gradient_step(convolution),
             "z-score + convolution + cross-entropy": gradient_step(dense_chain),
             f"fast loss k={kernel_size}": gradient_step(local_adaptive(kernel_size, "fast"))}
    return time_steps(steps, tf.constant(labels_np), logits_tensor(), repeats)


MODELS = {
    "UNetPlusPlus efficientnet_b0": lambda: kse.models.UNetPlusPlus(
        encoder="efficientnet_b0", input_shape=(SIZE, SIZE, 1), num_classes=CLASSES,
        activation=None),
    "small_unet (16, 32, 64, 128)": lambda: kse.models.small_unet(
        (SIZE, SIZE, 1), num_classes=CLASSES, activation=None, filters=(16, 32, 64, 128)),
}


def training_table(labels_np, kernels, repeats):
    """{model: {loss: median step seconds}}, the three losses interleaved per model."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=(BATCH, SIZE, SIZE, 1)).astype("float32")
    middle = kernels[len(kernels) // 2]
    losses = {"cross-entropy": lambda: keras.losses.SparseCategoricalCrossentropy(
        from_logits=True),
        f"fast k={middle}": lambda: kse.losses.LocallyAdaptiveLoss(kernel_size=middle),
        f"patches k={middle}": lambda: kse.losses.LocallyAdaptiveLoss(
            kernel_size=middle, implementation="patches")}
    table = {}
    for model_name, build in MODELS.items():
        models = {}
        for name, loss in losses.items():
            keras.utils.set_random_seed(0)
            model = build()
            model.compile(optimizer="adam", loss=loss())
            models[name] = model
        table[model_name] = interleaved_medians(
            {name: (lambda model=model: model.train_on_batch(images, labels_np))
             for name, model in models.items()}, repeats)
        print(f"  measured training step {model_name}", flush=True)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--paths-only", action="store_true",
                        help="only the table of training paths (TF, XLA, JAX)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jax-paths-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(args.kernels)
        return
    middle = args.kernels[len(args.kernels) // 2]
    if args.jax_paths_child:
        jax_path_child(middle, args.repeats)
        return
    started = time.perf_counter()
    if args.paths_only:
        print_paths_table(paths_table(middle, args.repeats), middle, args.repeats)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")
        return

    memory = measure_memory(args.kernels)
    print("  measured peak memory (child process)", flush=True)
    sets = label_sets()
    rows = loss_table(sets, args.kernels, args.repeats, memory)
    mb = 2.0 ** 20
    print(f"\nLoss forward+backward at ({BATCH}, {SIZE}, {SIZE}, {CLASSES}), median of "
          f"{args.repeats}; memory = peak RSS rise during one call (child process)")
    print("| labels | k | boundary px | CE ms | fast ms | patches ms | fast/CE time "
          "| patches/fast time | CE MB | fast MB | patches MB | fast/CE mem | patches/fast mem |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, k, fraction, t, m in rows:
        print(f"| {name} | {k} | {fraction:.0%} | {t['ce'] * 1e3:.0f} | {t['fast'] * 1e3:.0f} "
              f"| {t['patches'] * 1e3:.0f} | {t['fast'] / t['ce']:.2f}x "
              f"| {t['patches'] / t['fast']:.2f}x | {m['ce'] / mb:.0f} | {m['fast'] / mb:.0f} "
              f"| {m['patches'] / mb:.0f} | {m['fast'] / max(m['ce'], 1):.2f}x "
              f"| {m['patches'] / max(m['fast'], 1):.2f}x |")
    print_paths_table(paths_table(middle, args.repeats), middle, args.repeats)
    floor = floor_table(sets["brain (real)"], middle, args.repeats)
    print(f"\nWhere the time goes at k={middle} (brain labels, forward+backward, median of "
          f"{args.repeats})")
    print("| part | ms | vs cross-entropy |")
    print("|---|---|---|")
    for name, seconds in floor.items():
        print(f"| {name} | {seconds * 1e3:.0f} | {seconds / floor['cross-entropy']:.2f}x |")
    if not args.no_train:
        table = training_table(sets["brain (real)"], args.kernels, args.repeats)
        print(f"\nTraining step (train_on_batch, Adam), batch {BATCH} at {SIZE} px, 1 input "
              f"channel, {CLASSES} classes, brain labels, median of {args.repeats}")
        print("| model | loss | step ms | vs cross-entropy |")
        print("|---|---|---|---|")
        for model_name, times in table.items():
            base = times["cross-entropy"]
            for name, seconds in times.items():
                print(f"| {model_name} | {name} | {seconds * 1e3:.0f} "
                      f"| {(seconds / base - 1) * 100:+.1f}% |")
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
