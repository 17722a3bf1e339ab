"""Run every loss and metric of ``cases.py`` on the paths of one backend; write JSON.

Usage: ``KERAS_BACKEND=<backend> python tests/backends/harness.py OUT.json`` (the backend is
fixed when keras is imported, hence one process per backend; ``test_paths.py`` starts them).

For each kind of input, one model holds one output per loss of that kind (the input plus a
zero scalar weight: the output equals the input, and SGD with learning rate 0 keeps it so)
with that kind's metrics on the first output, so one compilation covers the whole kind. Per
path it records what ``train_on_batch``, ``fit`` (one batch) and ``evaluate`` (one batch)
log for each loss and metric; then NaN predictions and faulty targets through ``evaluate``
on the same compiled step, and (for one kind, ``cases.MISMATCH_KIND``: the check is the same
Python code on every path, at trace time) a mismatched target shape. ``fit`` also writes a
``CSVLogger`` file, read back as the ``csv_logger`` record. A metric whose ``result()`` is a
dict (the per-class metrics) is recorded as a dict (``cases.metric_values``). When a kind's model fails, each
of its cases is run alone so the failure is named. Direct (eager) calls of every loss and
metric, with the same faults, come first.

Paths: tensorflow: ``tf_graph`` (``jit_compile=False``), ``tf_xla`` (``jit_compile=True``);
eager calls (``run_eagerly=True`` runs the same code) are the direct ones; jax: ``jax`` (always compiled) and, with two devices,
``jax_data_parallel`` (``keras.distribution.DataParallel``); torch: ``torch``.
"""

import csv
import json
import os
import sys
import tempfile
import time
import traceback

import keras
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cases  # noqa: E402

BACKEND = keras.backend.backend()
METHODS = ("train_on_batch", "fit", "csv_logger", "evaluate")


def _number(value):
    value = np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")
    return float(value) if value.size == 1 else value.tolist()


def _error(exception):
    text = f"{type(exception).__name__}: {exception}"
    return text if len(text) < 3000 else text[:1000] + " [...] " + text[-2000:]


def _paths():
    if BACKEND == "tensorflow":
        return {"tf_graph": dict(jit_compile=False), "tf_xla": dict(jit_compile=True)}
    if BACKEND == "jax":
        import jax

        paths = {"jax": {}}
        if len(jax.devices()) >= 2:
            paths["jax_data_parallel"] = {}
        return paths
    return {BACKEND: {}}


class Identity(keras.layers.Layer):
    """The input plus a zero scalar weight (something to train, a value that stays put)."""

    def build(self, shape):
        self.offset = self.add_weight(shape=(), initializer="zeros", name="offset")

    def call(self, x):
        return x + keras.ops.cast(self.offset, x.dtype)


def _model(loss_names, metric_names, shape, compile_kwargs):
    x = keras.Input(shape[1:])
    outputs = {name: Identity(name=name)(x) for name in loss_names}
    model = keras.Model(x, outputs)
    losses = {}
    for name in loss_names:
        losses[name] = cases.LOSSES[name][0]()
        losses[name].name = name  # the per-output loss is logged as f"{name}_loss"
    metrics = {loss_names[0]: [cases.METRICS[name][0]() for name in metric_names]}
    for metric, name in zip(metrics[loss_names[0]], metric_names):
        metric.name = name
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=losses, metrics=metrics,
                  **compile_kwargs)
    return model


def _read_logs(logs, loss_names, metric_names):
    found = {}
    for name in loss_names:
        key = f"{name}_loss" if len(loss_names) > 1 else "loss"
        found[name] = float(logs[key])
    for name in metric_names:
        keys = [k for k in logs if k == name or k.endswith("_" + name)]
        found[name] = float(logs[keys[0]])
        # A dict result's keys reach the logs as they are (Keras drops the metric's name).
        per_class = {k[len(name):]: float(v) for k, v in logs.items()
                     if k.startswith(name + "/")}
        if per_class:
            found[name] = {"": found[name], **per_class}
    return found


def _targets(y_true, loss_names):
    return {name: y_true for name in loss_names}


def _run_kind(kind, loss_names, metric_names, compile_kwargs, data_parallel):
    """{method: {case: value}} for one model; plus the fault runs through evaluate."""
    y_true, y_pred = cases.inputs(kind)
    batch = y_pred.shape[0]
    model = _model(loss_names, metric_names, y_pred.shape, compile_kwargs)
    y = _targets(y_true, loss_names)
    record = {}
    logs = model.train_on_batch(y_pred, y, return_dict=True)
    record["train_on_batch"] = _read_logs(logs, loss_names, metric_names)
    csv_path = os.path.join(tempfile.mkdtemp(), "log.csv")
    history = model.fit(y_pred, y, batch_size=batch, epochs=1, shuffle=False, verbose=0,
                        callbacks=[keras.callbacks.CSVLogger(csv_path)])
    record["fit"] = _read_logs({k: v[-1] for k, v in history.history.items()}, loss_names,
                               metric_names)
    with open(csv_path) as handle:
        row = list(csv.DictReader(handle))[-1]
    os.remove(csv_path)
    # CSVLogger writes "NA" for a key a row lacks: left out, so a needed key fails loudly.
    record["csv_logger"] = _read_logs({k: float(v) for k, v in row.items()
                                       if k != "epoch" and v != "NA"}, loss_names, metric_names)
    logs = model.evaluate(y_pred, y, batch_size=batch, verbose=0, return_dict=True)
    record["evaluate"] = _read_logs(logs, loss_names, metric_names)
    weights = model.get_weights()
    assert all(np.all(w == 0) for w in weights), "the identity model moved"
    faults = {}
    fault_inputs = {"nan_predictions": (cases.nan_predictions(kind), y_true),
                    "faulty_targets": (y_pred, cases.faulty_targets(kind))}
    for fault, (x, targets) in fault_inputs.items():
        if targets is None:
            continue
        try:
            logs = model.evaluate(x, _targets(targets, loss_names), batch_size=batch,
                                  verbose=0, return_dict=True)
            faults[fault] = _read_logs(logs, loss_names, metric_names)
        except Exception as exception:  # the path stopped the user: what did it say?
            faults[fault] = {"error": _error(exception)}
    if kind == cases.MISMATCH_KIND and not data_parallel:
        # A fresh model: its first trace sees the data's static shapes, as a user's first
        # step does (a retrace with new shapes relaxes them to None).
        model = _model(loss_names, metric_names, y_pred.shape, compile_kwargs)
        try:
            model.evaluate(y_pred, _targets(cases.mismatched_targets(kind), loss_names),
                           batch_size=batch, verbose=0)
            faults["mismatched_shape"] = {"error": None}
        except Exception as exception:
            faults["mismatched_shape"] = {"error": _error(exception)}
    return record, faults


def run_path(path, compile_kwargs):
    data_parallel = path == "jax_data_parallel"
    if data_parallel:
        import jax

        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices()[:2]))
    out = {"values": {m: {} for m in METHODS}, "faults": {}, "errors": {}}
    for kind in cases.KINDS:
        start = time.perf_counter()
        loss_names = sorted(n for n, (_, k) in cases.LOSSES.items() if k == kind)
        metric_names = sorted(n for n, (_, k) in cases.METRICS.items() if k == kind)
        try:
            record, faults = _run_kind(kind, loss_names, metric_names, compile_kwargs,
                                       data_parallel)
        except Exception:  # name the culprits: every case of the kind on its own
            out["errors"][f"kind:{kind}"] = traceback.format_exc()[-3000:]
            record, faults = {m: {} for m in METHODS}, {}
            for name in loss_names + metric_names:
                is_loss = name in cases.LOSSES
                try:
                    single, single_faults = _run_kind(
                        kind, [name] if is_loss else [loss_names[0]],
                        [] if is_loss else [name], compile_kwargs, data_parallel)
                except Exception as exception:
                    out["errors"][name] = _error(exception)
                    continue
                for method in METHODS:
                    record[method][name] = single[method][name]
                for fault, values in single_faults.items():
                    faults.setdefault(fault, {})[name if "error" in values else "_"] = values
        for method in METHODS:
            out["values"][method].update(record[method])
        out["faults"][kind] = faults
        out.setdefault("seconds", {})[kind] = time.perf_counter() - start
        print(f"harness: {path} {kind} {out['seconds'][kind]:.1f} s", file=sys.stderr, flush=True)
    if data_parallel:
        keras.distribution.set_distribution(None)
    return out


def _direct_loss(name, y_true, y_pred):
    return _number(cases.LOSSES[name][0]()(y_true, y_pred))


def _direct_metric(name, y_true, y_pred):
    metric = cases.METRICS[name][0]()
    metric.update_state(y_true, y_pred)
    return cases.metric_values(metric.result(), metric.name)


def _attempt(function, *args):
    try:
        return function(*args)
    except Exception as exception:
        return {"error": _error(exception)}


def run_direct():
    out = {"values": {}, "nan_predictions": {}, "faulty_targets": {}, "mismatched_shape": {}}
    for table, call in ((cases.LOSSES, _direct_loss), (cases.METRICS, _direct_metric)):
        for name, (_, kind) in table.items():
            y_true, y_pred = cases.inputs(kind)
            out["values"][name] = _attempt(call, name, y_true, y_pred)
            if BACKEND == "tensorflow":  # elsewhere through the compiled paths only (time)
                out["nan_predictions"][name] = _attempt(call, name, y_true,
                                                        cases.nan_predictions(kind))
            bad = cases.faulty_targets(kind)
            if bad is not None:
                out["faulty_targets"][name] = _attempt(call, name, bad, y_pred)
            out["mismatched_shape"][name] = _attempt(call, name, cases.mismatched_targets(kind),
                                                     y_pred)
    return out


def main(destination):
    start = time.perf_counter()
    result = {"backend": BACKEND, "direct": run_direct(), "paths": {}}
    print(f"harness: direct {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    for path, compile_kwargs in _paths().items():
        result["paths"][path] = run_path(path, compile_kwargs)
    with open(destination, "w") as handle:
        json.dump(result, handle)


if __name__ == "__main__":
    main(sys.argv[1])
