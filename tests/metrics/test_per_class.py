"""PerClassIoU / PerClassDice: per-class values by name in History, CSVLogger, TensorBoard.

The reference is a NumPy confusion matrix counted with ``np.add.at`` (rows truth, columns
prediction) and the IoU / Dice formulas written out here; the model is the identity (a zero
weight trained with learning rate 0), so its predictions are the inputs and the reference
needs no model.
"""

import csv
import glob
import math
import os

import keras
import numpy as np
import pytest
from tests.training.replicas import two_cpu_replicas

import keras_seg_extras as kse

NAMES = ["sky", "road", "car", "bike"]  # "bike" never occurs: neither in truth nor predicted
IGNORE = 255


def _reference(labels, scores, num_classes=4, ignore_index=IGNORE):
    """{"iou": mean, "iou/<name>": value, "dice": ..., ...} from a NumPy confusion matrix."""
    keep = labels.ravel() != ignore_index
    matrix = np.zeros((num_classes, num_classes))
    np.add.at(matrix, (labels.ravel()[keep], scores.argmax(-1).ravel()[keep]), 1.0)
    tp = np.diag(matrix)
    fp = matrix.sum(0) - tp
    fn = matrix.sum(1) - tp
    seen = tp + fp + fn > 0
    out = {}
    for key, value in (("iou", tp / np.maximum(tp + fp + fn, 1)),
                       ("dice", 2 * tp / np.maximum(2 * tp + fp + fn, 1))):
        value = np.where(seen, value, np.nan)
        out[key] = float(np.nanmean(value))
        out.update({f"{key}/{n}": float(v) for n, v in zip(NAMES, value)})
    return out


def _data(seed, batch=8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (batch, 4, 4))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    logits = rng.normal(0.0, 1.0, (batch, 4, 4, 4)).astype("float32")
    logits[..., 3] -= 50.0  # "bike" is never predicted
    return labels.astype("int32"), logits


@keras.saving.register_keras_serializable(package="tests_per_class")
class _Identity(keras.layers.Layer):
    def build(self, shape):
        self.offset = self.add_weight(shape=(), initializer="zeros", name="offset")

    def call(self, x):
        return x + self.offset


def _metrics():
    return [kse.metrics.PerClassIoU(4, class_names=NAMES, ignore_index=IGNORE),
            kse.metrics.PerClassDice(4, class_names=NAMES, ignore_index=IGNORE)]


def _model():
    inputs = keras.Input((4, 4, 4))
    model = keras.Model(inputs, _Identity()(inputs))
    model.compile(optimizer=keras.optimizers.SGD(0.0), metrics=_metrics(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                  ignore_class=IGNORE))
    return model


def _assert_logs(logs, expected, prefix=""):
    for key, value in expected.items():
        got = float(logs[prefix + key])
        assert (math.isnan(got) and math.isnan(value)) or math.isclose(got, value,
                                                                      rel_tol=1e-6), key


def _fit(model, epochs=1, callbacks=()):
    train, val = _data(0), _data(1)
    history = model.fit(train[1], train[0], validation_data=(val[1], val[0]), batch_size=4,
                        epochs=epochs, verbose=0, shuffle=False, callbacks=list(callbacks))
    return history, _reference(*train), _reference(*val)


def test_direct_values_match_a_numpy_confusion_matrix_over_two_batches():
    (labels_a, logits_a), (labels_b, logits_b) = _data(2, batch=2), _data(3, batch=3)
    iou, dice = _metrics()
    mean_iou = kse.metrics.ConfusionMatrixIoU(4, ignore_index=IGNORE)
    for metric in (iou, dice, mean_iou):
        metric.update_state(labels_a, logits_a)
        metric.update_state(labels_b, logits_b)
    both = _reference(np.concatenate([labels_a.reshape(-1), labels_b.reshape(-1)]),
                      np.concatenate([logits_a.reshape(-1, 4), logits_b.reshape(-1, 4)]))
    result = {**iou.result(), **dice.result()}
    assert sorted(result) == sorted(both)
    _assert_logs(result, both)
    assert math.isnan(both["iou/bike"]) and math.isfinite(both["iou"])  # absent: NaN, mean ok
    assert float(iou.result()["iou"]) == float(mean_iou.result())  # the same mIoU


def test_fit_writes_a_csv_column_and_a_tensorboard_tag_per_class(tmp_path):
    model = _model()
    history, train, val = _fit(model, epochs=2, callbacks=[
        keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb"))])
    _assert_logs({k: v[-1] for k, v in history.history.items()}, train)
    _assert_logs({k: v[-1] for k, v in history.history.items()}, val, prefix="val_")
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    assert {"iou/road", "val_iou/road", "dice/bike", "val_dice/sky"} <= set(rows[-1])
    _assert_logs(rows[-1], train)
    _assert_logs(rows[-1], val, prefix="val_")

    import tensorflow as tf

    tags = {}
    for run in ("train", "validation"):
        for path in glob.glob(os.path.join(tmp_path, "tb", run, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    tags.setdefault(run, set()).add(value.tag)
    expected = {f"epoch_{key}" for key in train}
    assert expected <= tags["train"] and expected <= tags["validation"]

    labels, logits = _data(1)
    _assert_logs(model.evaluate(logits, labels, verbose=0, return_dict=True), val)


def test_two_replicas_log_the_one_device_values():
    with two_cpu_replicas().scope():
        model = _model()
    history, train, val = _fit(model)  # batches of 4: 2 images on each replica
    _assert_logs({k: v[-1] for k, v in history.history.items()}, train)
    _assert_logs({k: v[-1] for k, v in history.history.items()}, val, prefix="val_")


def test_saved_model_keeps_the_class_names(tmp_path):
    model = _model()
    path = str(tmp_path / "per_class.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    labels, logits = _data(1)
    logs = loaded.evaluate(logits, labels, verbose=0, return_dict=True)
    _assert_logs(logs, _reference(labels, logits))
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(kse.metrics.PerClassDice(2, ["a", "b"], name="d")))
    assert (type(clone), clone.class_names, clone.name) == (kse.metrics.PerClassDice,
                                                            ["a", "b"], "d")


def test_nan_predictions_make_every_value_nan_and_default_names_are_indices():
    metric = kse.metrics.PerClassIoU(3)
    logits = np.zeros((1, 2, 2, 3), "float32")
    logits[0, 0, 0, 1] = np.nan
    metric.update_state(np.zeros((1, 2, 2), "int32"), logits)
    result = metric.result()
    assert sorted(result) == ["iou", "iou/0", "iou/1", "iou/2"]
    assert all(math.isnan(float(v)) for v in result.values())


@pytest.mark.parametrize("names, expectation", [
    (["a", "b"], r"must name each of the num_classes=3 classes once"),
    (["a", "b", "a"], r"must not repeat a name"),
    ("abc", r"must be a list of non-empty strings"),
    (["a", "", "c"], r"must be a list of non-empty strings"),
    (["a", 1, "c"], r"must be a list of non-empty strings"),
])
def test_bad_class_names_are_refused(names, expectation):
    with pytest.raises(ValueError, match=r"PerClassIoU: `class_names` " + expectation):
        kse.metrics.PerClassIoU(3, class_names=names)


def test_float16_scores_an_ignored_only_batch_and_the_reset():
    labels, logits = _data(4, batch=2)
    half, full = _metrics()[0], _metrics()[0]
    half.update_state(labels, logits.astype("float16"))
    full.update_state(labels, logits.astype("float16").astype("float32"))
    assert {k: float(v) for k, v in half.result().items()} == pytest.approx(
        {k: float(v) for k, v in full.result().items()}, nan_ok=True)
    _assert_logs(half.result(), {k: v for k, v in _reference(labels, logits.astype(
        "float16").astype("float32")).items() if k.startswith("iou")})
    half.reset_state()
    half.update_state(np.full((1, 2, 2), IGNORE), logits[:1, :2, :2])
    result = {k: float(v) for k, v in half.result().items()}
    assert result["iou"] == 0.0 and all(math.isnan(result[f"iou/{n}"]) for n in NAMES)
