"""Benchmark: our U-Net++ (simplified and nested, EfficientNet-B4) against
segmentation-models' ``Unet("efficientnetb4")`` on the same inputs, in one run.

Run (segmentation-models is a bench-only dependency, installed in a separate venv)::

    SM_FRAMEWORK=tf.keras python tools/bench/unetpp.py --sizes 256 512 --iterations 1

The training and inference functions are traced once per model (their signatures have
``None`` sizes) and warmed up by one call at the first size only, to keep the run short on
CPU; later sizes are timed from their first call.

Reports parameters, FLOPs and the time of one training step (forward + backward + Adam,
batch ``--batch``) and of one inference pass, at each size, as absolute numbers and as
ratios to the baseline. All models use random weights (no download).

FLOPs are counted from layer shapes: 2 * multiply-accumulates of every convolution
(regular, depthwise, transposed) and dense layer, i.e. FLOPs = 2 * H_out * W_out * k_h * k_w *
C_in / groups * C_out (transposed: over the input grid); normalisation, activations, additions
and resizes are not counted (a few percent). With 'same' padding and sizes that are multiples
of 32 the count scales exactly with H * W.

If segmentation-models cannot be imported under this Keras, the baseline is a plain U-Net
decoder (two 3x3 conv + BN + ReLU per level, filters 256/128/64/32/16, nearest upsampling,
as segmentation-models' Unet) on the same EfficientNet-B4 encoder, and the table says so.
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
from keras_seg_extras.models.encoders import build_encoder  # noqa: E402


def plain_unet_baseline():
    """A plain U-Net decoder on the EfficientNet-B4 encoder (fallback baseline)."""
    inputs = keras.Input((None, None, 3))
    skips = build_encoder("efficientnet_b4", inputs)
    x = skips[-1]
    for level, filters in enumerate((256, 128, 64, 32, 16)):
        x = keras.layers.UpSampling2D()(x)
        if level < 4:
            x = keras.layers.Concatenate()([x, skips[3 - level]])
        for _ in range(2):
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="plain_unet_b4")


def baseline():
    try:
        import segmentation_models as sm

        return sm.Unet("efficientnetb4", encoder_weights=None, input_shape=(None, None, 3)), \
            "segmentation-models Unet('efficientnetb4')"
    except Exception as error:  # not installed, or not importable under Keras 3
        print(f"segmentation-models unavailable ({type(error).__name__}: {error}); "
              "using the plain U-Net baseline on the same encoder")
        return plain_unet_baseline(), "plain U-Net on EfficientNet-B4 (fallback)"


def _flat_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def count_flops(model, size):
    """2 * MACs of conv/dense layers at a (1, size, size, 3) input, from layer shapes."""
    layers = [l for l in _flat_layers(model) if isinstance(
        l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Conv2DTranspose,
            keras.layers.Dense))]
    probe = keras.Model(model.inputs, [l.output for l in layers])
    shapes = probe.compute_output_spec(keras.KerasTensor((1, size, size, 3)))
    total = 0
    for layer, out in zip(layers, shapes):
        c_in = layer.input.shape[-1]
        if isinstance(layer, keras.layers.Dense):
            total += 2 * int(np.prod(out.shape[1:-1])) * c_in * out.shape[-1]
            continue
        k_h, k_w = layer.kernel_size
        if isinstance(layer, keras.layers.Conv2DTranspose):
            s_h, s_w = layer.strides
            grid = (out.shape[1] // s_h) * (out.shape[2] // s_w)
            total += 2 * grid * k_h * k_w * c_in * out.shape[-1]
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            total += 2 * out.shape[1] * out.shape[2] * k_h * k_w * out.shape[-1]
        else:
            groups = getattr(layer, "groups", 1)
            total += 2 * out.shape[1] * out.shape[2] * k_h * k_w * c_in // groups * out.shape[-1]
    return total


def compiled_steps(model):
    """One traced training step and one inference function per model, for every size."""
    optimizer = keras.optimizers.Adam(1e-4)
    optimizer.build(model.trainable_variables)
    spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]

    @tf.function(input_signature=spec + [tf.TensorSpec([None, None, None, 1], tf.float32)])
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras.losses.binary_crossentropy(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(input_signature=spec)
    def predict(x):
        return model(x, training=False)

    return train_step, predict


def time_model(steps, size, batch, iterations, warm_up):
    train_step, predict = steps
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (batch, size, size, 3)).astype("float32"))
    y = tf.constant((rng.uniform(size=(batch, size, size, 1)) > 0.9).astype("float32"))
    timings = {}
    for name, call in (("train", lambda: train_step(x, y)), ("infer", lambda: predict(x))):
        if warm_up:
            call()  # trace (once per model: the signature has None sizes) and warm up
        start = time.perf_counter()
        for _ in range(iterations):
            np.asarray(call())
        timings[name] = (time.perf_counter() - start) / iterations
    return timings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=1)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    base, base_name = baseline()
    models = {"U-Net++ simplified (ours)": UNetPlusPlus("efficientnet_b4"),
              "U-Net++ nested (ours)": UNetPlusPlus("efficientnet_b4", decoder="nested"),
              base_name: base}
    rows = []
    for name, model in models.items():
        params = model.count_params()
        steps = compiled_steps(model)
        for index, size in enumerate(args.sizes):
            flops = count_flops(model, size)
            timing = time_model(steps, size, args.batch, args.iterations, warm_up=index == 0)
            rows.append((name, size, params, flops, timing["train"], timing["infer"]))
            print(f"measured {name} at {size}: {timing}", flush=True)
    reference = {row[1]: row for row in rows if row[0] == base_name}
    print(f"\nbaseline: {base_name}; batch {args.batch}; {args.iterations} timed iterations; "
          f"TF {tf.__version__}, Keras {keras.__version__}")
    print("| model | size | params (M) | GFLOPs | train step (s) | inference (s) | "
          "params x | GFLOPs x | train x | inference x |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, size, params, flops, train, infer in rows:
        ref = reference[size]
        print(f"| {name} | {size} | {params / 1e6:.1f} | {flops / 1e9:.1f} | {train:.2f} | "
              f"{infer:.2f} | {params / ref[2]:.2f} | {flops / ref[3]:.2f} | "
              f"{train / ref[4]:.2f} | {infer / ref[5]:.2f} |")


if __name__ == "__main__":
    main()
