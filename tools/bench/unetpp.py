"""Benchmark: our U-Net++ (EfficientNet-B4) against segmentation-models' ``Unet("efficientnetb4")``
on the same inputs, in one run.

Models: the default ``UNetPlusPlus("efficientnet_b4")`` (the report's Fig. 5: start width 8,
centre pooled from the stride-16 features), the earlier wide variant built from arguments
(widths 256..16, centre on the stride-32 top, dropout 0.1), and the peer. segmentation-models
is a bench-only dependency (extra ``bench``); keep it out of the project's environment, e.g.::

    pip install --no-deps --target .bench_deps segmentation-models==1.0.1 \
        image-classifiers==1.0.0 efficientnet==1.0.0 keras-applications==1.0.8 \
        scikit-image lazy_loader imageio networkx
    PYTHONPATH=.:.bench_deps python tools/bench/unetpp.py --sizes 256 512 --batch 2 --repeats 5 3

``--encoder-table`` prints, for every encoder of the package, the default model's skips,
parameters and MACs at 512 px instead (no peer, no timing).

(``SM_FRAMEWORK=tf.keras`` is set here, so segmentation-models builds its graph from
``tf.keras``, which is Keras 3 in TensorFlow >= 2.16.) All models use random weights.

Measured, per size: parameters; multiply-accumulates (MACs) of every convolution (regular,
depthwise, transposed) and dense layer, counted from layer shapes at a (1, size, size, 3)
input: MACs = H_out * W_out * k_h * k_w * C_in / groups * C_out (transposed: over the input
grid); normalisation, activations, pooling, additions and resizes are not counted (a few
percent); the time of one training step (forward + backward + Adam, binary cross-entropy,
batch ``--batch``) and of one inference pass. Each model's step and inference are traced once
(signatures with ``None`` sizes) and warmed up by one untimed call at every size. Timings are
interleaved: every round times each model once, in turn, so a machine shared with other jobs
slows all of them alike; the table gives the median over rounds of each time and the median of
the per-round ratios to the peer, of wall time and of the process's CPU time (all threads;
less sensitive than wall time to other jobs taking the cores, though not immune to them).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("SM_FRAMEWORK", "tf.keras")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_seg_extras.models import UNetPlusPlus  # noqa: E402

PEER = "segmentation-models Unet('efficientnetb4')"
MODELS = {
    "U-Net++ Fig. 5 (default)": lambda: UNetPlusPlus("efficientnet_b4"),
    "U-Net++ wide (256..16, stride-32 centre)": lambda: UNetPlusPlus(
        "efficientnet_b4", decoder_filters=(256, 128, 64, 32, 16), center_input="stride32",
        dropout=(0.1,) * 6 + (0.0,)),
}


KINDS = ("train", "infer", "train_cpu", "infer_cpu")
HEADER = ("| model | size | params (M) | GMACs | train step (s) | inference (s) | params x | "
          "MACs x | train x | inference x | train x (CPU s) | inference x (CPU s) |\n"
          + "|---" * 12 + "|")


def peer_model():
    import segmentation_models as sm  # the bench extra; see the module docstring

    return sm.Unet("efficientnetb4", encoder_weights=None, input_shape=(None, None, 3))


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def count_macs(model, size):
    """Multiply-accumulates of conv/dense layers at a (1, size, size, 3) input."""
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose,
             keras.layers.Dense)
    counted = [layer for layer in _flat_layers(model) if isinstance(layer, kinds)]
    probe = keras.Model(model.inputs, [layer.output for layer in counted])
    shapes = probe.compute_output_spec(keras.KerasTensor((1, size, size, 3)))
    total = 0
    for layer, out in zip(counted, shapes):
        c_in, c_out = layer.input.shape[-1], out.shape[-1]
        if isinstance(layer, keras.layers.Dense):
            total += int(np.prod(out.shape[1:-1])) * c_in * c_out
            continue
        k_h, k_w = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):
            s_h, s_w = layer.strides
            total += (out.shape[1] // s_h) * (out.shape[2] // s_w) * k_h * k_w * c_in * c_out
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            total += out.shape[1] * out.shape[2] * k_h * k_w * c_out
        else:
            groups = getattr(layer, "groups", 1)
            total += out.shape[1] * out.shape[2] * k_h * k_w * c_in // groups * c_out
    return total


def traced_steps(model):
    """One traced training step and one inference function, for every size."""
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    image = tf.TensorSpec([None, None, None, 3], tf.float32)

    @tf.function(input_signature=[image, tf.TensorSpec([None, None, None, 1], tf.float32)])
    def train(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(input_signature=[image])
    def infer(x):
        return model(x, training=False)

    return {"train": train, "infer": infer}


def _seconds(call, *args):
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    np.asarray(call(*args))
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved_times(steps, size, batch, repeats):
    """{model: {"train"|"infer"|"train_cpu"|"infer_cpu": [seconds per round]}}, every round
    visiting each model."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.constant((rng.uniform(size=(batch, size, size, 1)) > 0.9).astype("float32"))
    for name, fns in steps.items():  # untimed: first call at this size (trace, kernels)
        start = time.perf_counter()
        fns["train"](x, y), fns["infer"](x)
        print(f"{name} at {size}: first calls {time.perf_counter() - start:.0f} s", flush=True)
    times = {name: {kind: [] for kind in KINDS} for name in steps}
    for _ in range(repeats):
        for name, fns in steps.items():
            for kind, args in (("train", (x, y)), ("infer", (x,))):
                wall, cpu = _seconds(fns[kind], *args)
                times[name][kind].append(wall)
                times[name][f"{kind}_cpu"].append(cpu)
    for name in steps:
        print(f"{name} at {size}: {times[name]}", flush=True)
    return times


def table_rows(models, size, times):
    peer_params, peer_macs = models[PEER].count_params(), count_macs(models[PEER], size)
    for name, model in models.items():
        params, macs = model.count_params(), count_macs(model, size)
        ratio = {kind: np.median(np.divide(times[name][kind], times[PEER][kind]))
                 for kind in KINDS}
        yield (f"| {name} | {size} | {params / 1e6:.2f} | {macs / 1e9:.1f} | "
               f"{np.median(times[name]['train']):.2f} | {np.median(times[name]['infer']):.2f} | "
               f"{params / peer_params:.2f} | {macs / peer_macs:.2f} | "
               + " | ".join(f"{ratio[kind]:.2f}" for kind in KINDS) + " |")


def encoder_table(size=512):
    """For every encoder of the table: the skips of the default (Fig. 5) U-Net++ with their
    channels, its parameters and its MACs at ``size`` (no timing)."""
    from keras_seg_extras.models import ENCODERS

    print(f"| encoder | skips at strides 2, 4, 8, 16 (channels) | params (M) | GMACs at {size} |")
    print("|---|---|---|---|")
    for encoder, (_, skips, _) in ENCODERS.items():
        model = UNetPlusPlus(encoder)
        channels = [model.get_layer(skip).output.shape[-1] for skip in skips[:4]]
        names = ", ".join(f"`{skip}` ({c})" for skip, c in zip(skips, channels))
        print(f"| {encoder} | {names} | {model.count_params() / 1e6:.2f} | "
              f"{count_macs(model, size) / 1e9:.1f} |", flush=True)
        del model
        keras.backend.clear_session()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, nargs="+", default=[5, 3],
                        help="interleaved rounds per size (one number for all sizes, or one each)")
    parser.add_argument("--without-wide", action="store_true",
                        help="time only the default model and the peer (a shorter run)")
    parser.add_argument("--encoder-table", action="store_true",
                        help="only print each encoder's skips, parameters and MACs, and exit")
    args = parser.parse_args(argv)
    if args.encoder_table:
        return encoder_table()
    repeats = args.repeats * len(args.sizes) if len(args.repeats) == 1 else args.repeats
    if len(repeats) != len(args.sizes):
        parser.error("--repeats: give one number or one per size")
    keras.utils.set_random_seed(0)
    chosen = list(MODELS)[:1] if args.without_wide else list(MODELS)
    models = {name: MODELS[name]() for name in chosen}
    models[PEER] = peer_model()
    steps = {name: traced_steps(model) for name, model in models.items()}
    print(f"peer: {PEER}; batch {args.batch}; TF {tf.__version__}, Keras {keras.__version__}")
    print(HEADER, flush=True)
    for size, rounds in zip(args.sizes, repeats):
        times = interleaved_times(steps, size, args.batch, rounds)
        print(f"(size {size}: median of {rounds} interleaved rounds)")
        print("\n".join(table_rows(models, size, times)), flush=True)


if __name__ == "__main__":
    main()
