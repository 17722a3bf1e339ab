"""Every public loss and metric on every path users train with: TensorFlow without and with
XLA, JAX (one device and ``keras.distribution.DataParallel`` on two), PyTorch.

``harness.py`` runs the table of ``cases.py`` once per backend in a subprocess (keras fixes
its backend at import) and writes JSON; these tests compare it with the direct TensorFlow
eager values (themselves checked against NumPy references in tests/losses and tests/metrics,
and here against independent references for a few cases) and check the fault behaviour the
docs (docs/backends.md) promise on each path:

- values: ``train_on_batch``, ``fit`` (its History and its ``CSVLogger`` file) and
  ``evaluate`` log the direct value (1e-5 relative), and each backend's direct value equals
  TensorFlow's; for the per-class metrics every class's key and the mean;
- NaN predictions: the loss or metric is NaN (or the step raises), never a number;
- faulty targets (a label out of range, a one-hot value of 1.5): a ``ValueError`` on direct
  calls and PyTorch, an assertion in TensorFlow graphs, a raised error in a one-device JAX
  step; NaN under XLA and under JAX ``DataParallel``;
- a ``y_true``/``y_pred`` shape mismatch: a ``ValueError`` naming the object and both shapes.
"""

import functools
import inspect
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from tests.backends import cases

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RTOL, ATOL = 1e-5, 1e-7

#: What each path does with faulty targets: "raises" (a message naming the object) or "nan".
FAULTY_TARGETS = {"tf_graph": "raises", "tf_xla": "nan", "jax": "raises",
                  "jax_data_parallel": "nan", "torch": "raises"}
PATHS = {"tensorflow": ("tf_graph", "tf_xla"), "jax": ("jax", "jax_data_parallel"),
         "torch": ("torch",)}


@functools.lru_cache(maxsize=None)
def harness(backend, tmp=os.environ.get("TMPDIR", "/tmp")):
    """The harness's JSON for ``backend`` (one subprocess per backend and test process)."""
    destination = os.path.join(tmp, f"kse_paths_{backend}_{os.getpid()}.json")
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    if backend == "jax":  # two simulated CPU devices for DataParallel
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    if backend == "torch":
        env["CUDA_VISIBLE_DEVICES"] = ""
    result = subprocess.run([sys.executable, os.path.join(HERE, "harness.py"), destination],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    with open(destination) as handle:
        data = json.load(handle)
    os.remove(destination)
    return data


def _is_nan(value):
    """NaN; for a dict result (per-class metrics), NaN in every entry."""
    if isinstance(value, dict) and "error" not in value:
        return bool(value) and all(_is_nan(v) for v in value.values())
    return isinstance(value, float) and math.isnan(value)


def _raised(value):
    """Whether an outcome is an error (``{"error": message}``), not a value."""
    return isinstance(value, dict) and "error" in value


def _close(a, b):
    if isinstance(a, dict) and isinstance(b, dict):  # per-class metrics: the same keys
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return (isinstance(a, float) and isinstance(b, float)
            and math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL))


def _finite(value):
    if isinstance(value, dict) and "error" not in value:
        return all(_finite(v) for v in value.values())
    return isinstance(value, float) and math.isfinite(value)


def _fault_outcomes(path_result, fault):
    """{case: value or {"error": message}} for one fault on one path (groups expanded)."""
    outcomes = {}
    for kind, faults in path_result["faults"].items():
        names = [n for n, (_, k) in list(cases.LOSSES.items()) + list(cases.METRICS.items())
                 if k == kind]
        found = faults.get(fault)
        if found is None:
            continue
        if set(found) == {"error"}:  # the kind's model stopped as a whole
            outcomes.update({name: found for name in names})
        else:
            for name, value in found.items():  # per case (values, or errors of a fallback)
                if name == "_":
                    outcomes.update(value)
                else:
                    outcomes[name] = value
    return outcomes


def _direct_value(name):
    """This (TensorFlow, eager) process's direct value of one case."""
    if name in cases.LOSSES:
        factory, kind = cases.LOSSES[name]
        return float(factory()(*cases.inputs(kind)))
    factory, kind = cases.METRICS[name]
    metric = factory()
    metric.update_state(*cases.inputs(kind))
    return cases.metric_values(metric.result(), metric.name)


@functools.lru_cache(maxsize=None)
def _tensorflow_eager_values():
    return {name: _direct_value(name) for name in list(cases.LOSSES) + list(cases.METRICS)}


@functools.lru_cache(maxsize=None)
def type_name(name):
    """The class name of a case: every message must name its object."""
    factory = (cases.LOSSES.get(name) or cases.METRICS[name])[0]
    return type(factory()).__name__


def _shape_message_parts(name):
    """The object's name and both shapes: what a shape-mismatch message must hold."""
    kind = (cases.LOSSES.get(name) or cases.METRICS[name])[1]
    _, y_pred = cases.inputs(kind)
    return type_name(name), str(cases.mismatched_targets(kind).shape), str(y_pred.shape)


def _check_backend(backend):
    data = harness(backend)
    reference = _tensorflow_eager_values()
    problems = []
    direct = data["direct"]
    every_case = list(cases.LOSSES) + list(cases.METRICS)
    for name in every_case:
        value = direct["values"][name]
        if not _finite(value):
            problems.append(f"direct {name}: {value}")
        elif not _close(value, reference[name]):
            problems.append(f"direct {name}: {value} != TensorFlow {reference[name]}")
        nan = direct["nan_predictions"].get(name, float("nan"))  # TensorFlow's only
        if not (_is_nan(nan) or _raised(nan)):
            problems.append(f"direct {name}: NaN predictions gave {nan}")
        if name in direct["faulty_targets"]:
            faulty = direct["faulty_targets"][name]
            if not (_raised(faulty) and "ValueError" in faulty["error"]
                    and "must lie in" in faulty["error"]):
                problems.append(f"direct {name}: faulty targets gave {faulty}")
        mismatch = direct["mismatched_shape"][name]
        if not (_raised(mismatch) and "ValueError" in mismatch["error"]
                and all(part in mismatch["error"] for part in _shape_message_parts(name))):
            problems.append(f"direct {name}: mismatched shapes gave {mismatch}")
    assert set(data["paths"]) == set(PATHS[backend]), sorted(data["paths"])
    assert backend != "tensorflow" or set(direct["nan_predictions"]) == set(every_case)
    for path, result in data["paths"].items():
        for key, error in result["errors"].items():
            problems.append(f"{path} {key} failed: {error[-600:]}")
        for method, values in result["values"].items():
            for name in every_case:
                value = values.get(name)
                if not _close(value, direct["values"][name]):
                    problems.append(f"{path} {method} {name}: {value} != direct "
                                    f"{direct['values'][name]}")
        for name, value in _fault_outcomes(result, "nan_predictions").items():
            if not (_is_nan(value) or _raised(value)):
                problems.append(f"{path} {name}: NaN predictions gave {value}")
        expected = FAULTY_TARGETS[path]
        for name, value in _fault_outcomes(result, "faulty_targets").items():
            raised = _raised(value) and "must lie in" in value["error"]
            if (expected == "raises" and not raised) or (expected == "nan"
                                                         and not _is_nan(value)):
                problems.append(f"{path} {name}: faulty targets gave {value} ({expected})")
        if path != "jax_data_parallel":
            error = result["faults"][cases.MISMATCH_KIND]["mismatched_shape"].get("error")
            if not (error and "ValueError" in error and "must match" in error):
                problems.append(f"{path}: mismatched shapes gave {error}")
    assert not problems, "\n".join(problems)
    return data


def test_every_loss_and_metric_on_tensorflow_graph_and_xla():
    _check_backend("tensorflow")


def test_every_loss_and_metric_on_jax_one_device_and_data_parallel():
    _check_backend("jax")


def test_every_loss_and_metric_on_torch():
    _check_backend("torch")


# ----------------------------------------------------------------------------- references


def _dice_binary_batch(y, p, smooth=1.0):
    intersection = (y * p).sum()
    return 1.0 - (2 * intersection + smooth) / (y.sum() + p.sum() + smooth)


def _dice_soft_batch(y, p, smooth=1.0):
    """Per channel over the batch with the L1 intersection (Wang et al. 2023), then the mean."""
    cardinality = y.sum((0, 1, 2)) + p.sum((0, 1, 2))
    intersection = 0.5 * (cardinality - np.abs(p - y).sum((0, 1, 2)))
    return float(np.mean(1.0 - (2 * intersection + smooth) / (cardinality + smooth)))


def _confusion_miou(labels, scores, classes):
    predicted = scores.argmax(-1).ravel()
    matrix = np.zeros((classes, classes))
    np.add.at(matrix, (labels.ravel(), predicted), 1)
    tp = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def _tilted_image(labels, logits, t):
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_image = -np.take_along_axis(log_p, labels[..., None], -1)[..., 0].mean((1, 2))
    return float(np.log(np.mean(np.exp(t * per_image))) / t)


def _dice_per_image(y, p, threshold=0.5):
    scores = []
    for truth, pred in zip(y > 0.5, p > threshold):
        tp, fp, fn = (truth & pred).sum(), (~truth & pred).sum(), (truth & ~pred).sum()
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _lrap(y, p):
    from sklearn.metrics import label_ranking_average_precision_score

    return float(label_ranking_average_precision_score(y >= 0.5, p))


def _mean_average_precision(y, p):
    from sklearn.metrics import average_precision_score

    relevant = y >= 0.5
    return float(np.mean([average_precision_score(relevant[:, c], p[:, c])
                          for c in range(y.shape[1]) if relevant[:, c].any()]))


REFERENCES = {
    "DiceLoss_binary_batch": _dice_binary_batch,
    "DiceLoss_soft_batch": _dice_soft_batch,
    "ConfusionMatrixIoU": lambda y, p: _confusion_miou(y, p, 3),
    "TiltedCrossEntropy_image_t2": lambda y, p: _tilted_image(y, p, 2.0),
    "DiceCoefficient_per_image": _dice_per_image,
    "LabelRankingAveragePrecision": _lrap,
    "MeanAveragePrecision": _mean_average_precision,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_direct_values_match_numpy_references(name):
    """The values every path is compared with are right (independent NumPy/sklearn code)."""
    table = cases.LOSSES if name in cases.LOSSES else cases.METRICS
    y_true, y_pred = cases.inputs(table[name][1])
    expected = REFERENCES[name](y_true.astype("float64") if y_true.dtype.kind == "f"
                                else y_true, y_pred.astype("float64"))
    np.testing.assert_allclose(_direct_value(name), expected, rtol=RTOL)


# ----------------------------------------------------------------------------- completeness


def test_every_public_loss_and_metric_is_in_the_table():
    from keras_seg_extras import losses as L
    from keras_seg_extras import metrics as M

    def public_classes(module, base):
        return {name for name, obj in vars(module).items()
                if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_")}

    covered = {type(factory()).__name__ for factory, _ in cases.LOSSES.values()}
    covered |= {type(factory()).__name__ for factory, _ in cases.METRICS.values()}
    public = public_classes(L, keras.losses.Loss) | public_classes(M, keras.metrics.Metric)
    assert public - covered - set(cases.EXCLUDED) == set()
    assert set(cases.EXCLUDED) <= public  # an exclusion names a real class
