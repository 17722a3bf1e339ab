"""Benchmark: what GroupNorm and rematerialisation cost and save in a U-Net++ training step.

For each combination of ``normalization`` in {batch, group} and ``remat`` in {False, True}
of ``UNetPlusPlus(encoder)`` (default EfficientNet-B4, the SIIM report's encoder, Fig. 5
decoder), one training step (forward, binary cross-entropy, gradients of every trainable
weight, SGD update) at ``--batch`` x ``--size`` px, under the JAX backend:

- **peak memory**: the compiled step's ``memory_analysis()``: XLA's exact buffer assignment,
  ``temp`` = every intermediate the step keeps alive at its peak (activations saved for the
  backward pass, gradients, workspace), ``arguments`` = weights, optimizer state and the
  batch. This is what the step needs, measured without running it and without the noise of
  other processes; under TensorFlow on a CPU ``tf.config.experimental.get_memory_info`` is
  not available and peak RSS mixes the allocator's caches, the graph and other runs of the
  process in one number.
- **step time**: the median of ``--repeats`` timed steps after one untimed warm-up (absolute
  times depend on the machine and its load; the ratios to the first row, measured in the same
  run, are what carries over).
- **gradient check**: the remat step's loss and gradients against the plain step's, on the
  same weights and batch (max absolute difference; they must agree to float rounding).

    KERAS_BACKEND=jax PYTHONPATH=. python tools/bench/unetpp_memory.py \
        [--encoder efficientnet_b4] [--size 512] [--batch 2] [--repeats 2]
"""

import argparse
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_seg_extras.models import UNetPlusPlus  # noqa: E402

LEARNING_RATE = 1e-3


def _step_function(model):
    """A pure JAX training step on the model's stateless call (SGD, so no optimizer state)."""

    def loss_fn(trainable, non_trainable, images, masks):
        probabilities, non_trainable = model.stateless_call(trainable, non_trainable, images,
                                                            training=True)
        p = jnp.clip(probabilities.astype("float32"), 1e-7, 1 - 1e-7)
        loss = -jnp.mean(masks * jnp.log(p) + (1 - masks) * jnp.log(1 - p))
        return loss, non_trainable

    def step(trainable, non_trainable, images, masks):
        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable, images, masks)
        trainable = [w - LEARNING_RATE * g for w, g in zip(trainable, grads)]
        return loss, grads, trainable, non_trainable

    return jax.jit(step)


def _measure(model, images, masks, repeats):
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    step = _step_function(model)
    started = time.perf_counter()
    compiled = step.lower(trainable, non_trainable, images, masks).compile()
    compile_s = time.perf_counter() - started
    memory = compiled.memory_analysis()
    loss, grads, _, _ = compiled(trainable, non_trainable, images, masks)  # warm-up
    jax.block_until_ready(grads)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(trainable, non_trainable, images, masks))
        times.append(time.perf_counter() - started)
    return {"temp": memory.temp_size_in_bytes, "arguments": memory.argument_size_in_bytes,
            "step": float(np.median(times)), "compile": compile_s, "loss": float(loss),
            "grads": [np.asarray(g) for g in grads]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="efficientnet_b4")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    cli = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (cli.batch, cli.size, cli.size, 3)).astype("float32")
    masks = (rng.uniform(size=(cli.batch, cli.size, cli.size, 1)) > 0.8).astype("float32")
    rows, reference = [], {}
    for normalization in ("batch", "group"):
        keras.utils.set_random_seed(0)
        plain = UNetPlusPlus(cli.encoder, (cli.size, cli.size, 3), normalization=normalization)
        for remat in (False, True):
            model = plain
            if remat:  # the plain model's weights, norm statistics and dropout seeds
                model = UNetPlusPlus(cli.encoder, (cli.size, cli.size, 3),
                                     normalization=normalization, remat=True)
                for source, target in zip(plain.variables, model.variables):
                    target.assign(source.value)
            result = _measure(model, images, masks, cli.repeats)
            if not remat:
                reference[normalization] = result
            base = reference[normalization]
            difference = max(float(np.max(np.abs(a - b)))
                             for a, b in zip(result["grads"], base["grads"]))
            scale = max(float(np.max(np.abs(g))) for g in base["grads"])
            rows.append((normalization, remat, result, difference / scale,
                         abs(result["loss"] - base["loss"])))
            print(f"done {normalization} remat={remat}: step {result['step']:.2f} s, temp "
                  f"{result['temp'] / 2**30:.2f} GiB", flush=True)
            del model
        del plain, reference[normalization]["grads"], result["grads"]

    base = rows[0][2]
    print(f"\nUNetPlusPlus({cli.encoder!r}), batch {cli.batch} x {cli.size} px, JAX "
          f"{jax.__version__} on {jax.devices()[0].platform}, Keras {keras.__version__}, "
          f"{os.cpu_count()} CPUs\n")
    print("| normalization | remat | peak temp (GiB) | arguments (GiB) | step (s) | temp x | "
          "step x | compile (s) | max grad diff / max grad | loss diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for normalization, remat, r, grad_diff, loss_diff in rows:
        print(f"| {normalization} | {'on' if remat else 'off'} | {r['temp'] / 2**30:.2f} | "
              f"{r['arguments'] / 2**30:.3f} | {r['step']:.2f} | {r['temp'] / base['temp']:.2f} | "
              f"{r['step'] / base['step']:.2f} | {r['compile']:.0f} | {grad_diff:.1e} | "
              f"{loss_diff:.1e} |")


if __name__ == "__main__":
    main()
