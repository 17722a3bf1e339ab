"""Check that 2 local workers (MultiWorkerMirroredStrategy on loopback) train like 1 worker.

Usage:
    python tools/multiworker_check.py            # prints the max weight difference; exit 0 if <= 1e-5

The driver picks two free ports on 127.0.0.1, starts two worker processes with TF_CONFIG
naming both, lets each train a tiny model with ``keras_seg_extras.training.strategy()`` (which
must return a MultiWorkerMirroredStrategy there) on the same global batches, and compares the
chief's final weights with one process training the same model on the same global batches
with the default strategy. Used by tests/training/test_distribute.py.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile

GLOBAL_BATCH, SAMPLES, EPOCHS = 8, 32, 2


def _free_ports(count):
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def train(out_path):
    """Train the tiny model under ``strategy()`` and save its weights (chief only)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_seg_extras.training import strategy

    chosen = strategy()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(SAMPLES, 4, 4, 2)).astype("float32")
    y = rng.normal(size=(SAMPLES, 4, 4, 1)).astype("float32")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH).with_options(options)
    with chosen.scope():
        keras.utils.set_random_seed(3)
        inputs = keras.Input((None, None, 2))
        hidden = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(inputs)
        model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(hidden))
        optimizer = keras.optimizers.Adam(0.01)
        optimizer.build(model.trainable_variables)
    # A custom loop: Keras 3.15's fit() does not run under MultiWorkerMirroredStrategy (it
    # reduces a data batch with strategy.reduce before tracing, "Attempt to convert a value
    # (PerReplica...)", and then fails reducing the per-replica logs). The loop is what
    # fit() does: per-replica mean loss divided by the replica count, gradients all-reduced
    # (summed) inside optimizer.apply.
    replicas = chosen.num_replicas_in_sync

    @tf.function
    def train_step(batch):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x, training=True) - y)) / replicas
            optimizer.apply(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables)

        chosen.run(replica_step, args=batch)

    distributed = chosen.experimental_distribute_dataset(data)
    for _ in range(EPOCHS):
        for batch in distributed:
            train_step(batch)
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {"index": 0})
    if task.get("index", 0) == 0:
        np.savez(out_path, *[w.numpy() for w in model.weights],
                 strategy=type(chosen).__name__, replicas=chosen.num_replicas_in_sync)


def run(timeout=120):
    """Start two workers and one reference run; return (max_abs_difference, worker strategy)."""
    import numpy as np

    workdir = tempfile.mkdtemp(prefix="kse_multiworker_")
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env_base = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env_base.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2",
                    CUDA_VISIBLE_DEVICES="-1",
                    PYTHONPATH=os.pathsep.join(
                        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         env_base.get("PYTHONPATH", "")]))
    script = os.path.abspath(__file__)
    processes = []
    for index in range(2):
        env = dict(env_base, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen(
            [sys.executable, script, "--worker", os.path.join(workdir, "multi.npz")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    reference = subprocess.Popen([sys.executable, script, "--worker",
                                  os.path.join(workdir, "single.npz")],
                                 env=env_base, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    outputs = []
    try:
        for process in processes + [reference]:
            out, _ = process.communicate(timeout=timeout)
            outputs.append(out.decode(errors="replace"))
            if process.returncode != 0:
                raise RuntimeError(f"a worker failed (exit {process.returncode}):\n{outputs[-1]}")
    finally:
        for process in processes + [reference]:
            if process.poll() is None:
                process.kill()
    multi = np.load(os.path.join(workdir, "multi.npz"))
    single = np.load(os.path.join(workdir, "single.npz"))
    keys = [k for k in multi.files if k.startswith("arr_")]
    difference = max(float(np.abs(multi[k] - single[k]).max()) for k in keys)
    moved = max(float(np.abs(single[k]).max()) for k in keys)
    return difference, str(multi["strategy"]), int(multi["replicas"]), moved


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", metavar="OUT", help="internal: run one worker")
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    if args.worker:
        train(args.worker)
        return 0
    difference, name, replicas, _ = run(args.timeout)
    print(f"workers' strategy: {name} with {replicas} replicas; "
          f"max |weights(2 workers) - weights(1 worker)| = {difference:.3g}")
    return 0 if difference <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
