"""Every public loss and metric of the package, each with the kind of input it takes.

Backend-agnostic (keras and the package only, no backend import): ``harness.py`` runs this
table under each ``KERAS_BACKEND`` in a subprocess, and ``test_paths.py`` checks that every
public loss and metric class appears in it (or in ``EXCLUDED``, with the reason).

Each entry is ``name: (factory, kind)``; the factory builds a fresh object (a backend and a
path each get their own). Inputs are tiny NumPy batches built by :func:`inputs` from the
kind; :func:`faulty_targets`, :func:`nan_predictions` and :func:`mismatched_targets` derive
the fault cases from them.
"""

import keras
import numpy as np

from keras_seg_extras import losses as L
from keras_seg_extras import metrics as M

#: Public classes left out of the cross-path table, with the reason.
EXCLUDED = {}

IGNORE = 255

#: The kind whose compiled step is also fed a mismatched target shape (the shape checks run
#: at trace time, the same code on every path; every case meets them in direct calls).
MISMATCH_KIND = "multilabel"


def _binary(seed, channels=1):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((4, 8, 8, channels)) > 0.6).astype("float32")
    y_true[0] = 0.0  # an empty mask
    y_pred = (rng.random((4, 8, 8, channels)) * 0.98 + 0.01).astype("float32")
    return y_true, y_pred


def inputs(kind, seed=0):
    """``(y_true, y_pred)`` NumPy arrays of one kind; batch 4 (8 for multi-label scores)."""
    rng = np.random.default_rng(seed + 100)
    if kind == "binary":
        return _binary(seed)
    if kind == "binary_logits":
        y_true, p = _binary(seed)
        return y_true, (np.log(p / (1 - p)) * 2.0).astype("float32")
    if kind == "multilabel":
        return _binary(seed, channels=3)
    logits = rng.normal(0.0, 2.0, (4, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 8, 8)).astype("int32")
    labels[0] = 0  # one class only in the first image
    if kind == "multiclass":
        return labels, logits
    if kind == "multiclass_ignore":
        labels = np.where(rng.random(labels.shape) < 0.2, IGNORE, labels).astype("int32")
        labels[1, :6] = IGNORE  # an image that is mostly ignored
        return labels, logits
    if kind == "onehot":
        probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return np.eye(3, dtype="float32")[labels], probabilities.astype("float32")
    if kind == "multilabel_scores":  # (B, C) soft multi-label targets and probabilities
        y_true = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0], (8, 4)).astype("float32")
        y_true[0] = [1, 0, 0, 0]
        return y_true, (rng.random((8, 4)) * 0.98 + 0.01).astype("float32")
    if kind == "multilabel_soft":  # soft segmentation targets (label smoothing, agreement)
        y_true, y_pred = _binary(seed, channels=3)
        y_true = np.where(rng.random(y_true.shape) < 0.5, y_true, rng.random(y_true.shape))
        return y_true.astype("float32"), y_pred
    if kind == "multilabel_hard":  # (B, C) {0, 1} multi-label targets and logits
        y_true = (rng.random((8, 4)) < 0.4).astype("float32")
        y_true[0], y_true[1] = 0.0, 1.0  # a sample with no label, one with every label
        return y_true, rng.normal(0.0, 2.0, (8, 4)).astype("float32")
    if kind == "auxiliary":
        # Targets 0, 1; auxiliary outputs 2, 3; label 7 is a foreign class. Every foreign
        # pixel is predicted as an auxiliary class, so Algorithm 1 draws nothing at random
        # and the value is the same on every backend.
        labels = np.where(rng.random((4, 8, 8)) < 0.4, 7, rng.integers(0, 2, (4, 8, 8)))
        logits = rng.normal(0.0, 1.0, (4, 8, 8, 4)).astype("float32")
        boost = np.eye(4, dtype="float32")[rng.integers(2, 4, (4, 8, 8))] * 10.0
        logits = logits + np.where((labels == 7)[..., None], boost, 0.0).astype("float32")
        return labels.astype("int32"), logits
    raise ValueError(kind)


def faulty_targets(kind):
    """``y_true`` of ``kind`` with one value no loss or metric may accept; None if none exists."""
    y_true, _ = inputs(kind)
    y_true = y_true.copy()
    if kind in ("binary", "binary_logits", "multilabel", "multilabel_soft"):
        y_true[1, 0, 0, 0] = 2.0
    elif kind == "multiclass":
        y_true[1, 0, 0] = 3  # == num_classes
    elif kind == "multiclass_ignore":
        y_true[1, 7, 7] = 254  # close to, but not, the ignore value
    elif kind == "onehot":
        y_true[1, 0, 0] = [1.5, 0.0, 0.0]
    elif kind == "multilabel_scores":
        y_true[1, 0] = 1.5
    elif kind == "multilabel_hard":
        y_true[2, 0] = 0.5  # a soft target: the Lovász extension has no value there
    else:
        return None
    return y_true


def nan_predictions(kind):
    _, y_pred = inputs(kind)
    y_pred = y_pred.copy()
    y_pred.reshape(-1)[5] = np.nan
    return y_pred


def mismatched_targets(kind):
    """``y_true`` whose spatial (or class) size differs from the prediction's."""
    y_true, _ = inputs(kind)
    return y_true[:, :3] if y_true.ndim == 2 else y_true[:, :6]


# ----------------------------------------------------------------------------- losses


def _overlap(kinds):
    """Dice and Jaccard on every kind of input; per_image alternates, so each class meets
    both reductions."""
    table = {}
    for offset, cls in enumerate((L.DiceLoss, L.JaccardLoss)):
        for position, (mode, kind) in enumerate(kinds):
            per_image = (position + offset) % 2 == 1
            name = f"{cls.__name__}_{kind}_{'per_image' if per_image else 'batch'}"
            table[name] = ((lambda cls=cls, mode=mode, kind=kind, per_image=per_image: cls(
                mode, from_logits=kind in ("multiclass", "binary_logits"),
                per_image=per_image)), kind)
    return table


def _losses():
    bce = keras.losses.BinaryCrossentropy
    table = {
        **_overlap([("binary", "binary"), ("binary", "binary_logits"),
                    ("multilabel", "multilabel"), ("multiclass", "multiclass"),
                    ("multiclass", "onehot")]),
        "DiceLoss_soft_batch": (lambda: L.DiceLoss("multilabel", soft=True), "multilabel_soft"),
        "JaccardLoss_soft_per_image": (lambda: L.JaccardLoss("multilabel", per_image=True,
                                                             soft=True), "multilabel_soft"),
        "DiceLoss_ignore": (lambda: L.DiceLoss("multiclass", from_logits=True,
                                               ignore_index=IGNORE), "multiclass_ignore"),
        "BCEDiceLoss": (lambda: L.BCEDiceLoss(), "binary"),
        "BCEDiceLoss_logits": (lambda: L.BCEDiceLoss(from_logits=True), "binary_logits"),
        # Our member first: Keras's own losses do not check targets (on PyTorch its BCE
        # raises torch's RuntimeError for a target of 2; TensorFlow and JAX compute with it).
        "CombinedLoss": (lambda: L.CombinedLoss([L.DiceLoss("binary", per_image=True), bce()],
                                                weights=[0.5, 1.0]), "binary"),
        "LovaszHingeLoss_per_image": (lambda: L.LovaszHingeLoss(per_image=True),
                                      "binary_logits"),
        "LovaszHingeLoss_batch": (lambda: L.LovaszHingeLoss(per_image=False), "binary_logits"),
        "SymmetricLovaszLoss_per_image": (lambda: L.SymmetricLovaszLoss(per_image=True),
                                          "binary_logits"),
        "SymmetricLovaszLoss_batch": (lambda: L.SymmetricLovaszLoss(per_image=False),
                                      "binary_logits"),
        **{f"SymmetricLovaszLoss_multilabel_{s}": (
            (lambda s=s: L.SymmetricLovaszLoss(jaccard_set=s)), "multilabel_hard")
           for s in ("sample", "class", "batch")},
        "LovaszSoftmaxLoss_batch": (lambda: L.LovaszSoftmaxLoss(), "multiclass"),
        "LovaszSoftmaxLoss_per_image": (lambda: L.LovaszSoftmaxLoss(per_image=True),
                                        "multiclass"),
        "LovaszSoftmaxLoss_list": (lambda: L.LovaszSoftmaxLoss(average_over=[0, 2]), "multiclass"),
        "LovaszSoftmaxLoss_ignore": (lambda: L.LovaszSoftmaxLoss(ignore_index=IGNORE),
                                     "multiclass_ignore"),
        "LovaszSoftmaxLoss_onehot": (lambda: L.LovaszSoftmaxLoss(from_logits=False), "onehot"),
        "TiltedCrossEntropy_image_t2": (lambda: L.TiltedCrossEntropy(t=2.0), "multiclass"),
        "TiltedCrossEntropy_image_negative": (lambda: L.TiltedCrossEntropy(t=-1.0),
                                              "multiclass"),
        "TiltedCrossEntropy_class": (lambda: L.TiltedCrossEntropy(t=1.0, level="class"),
                                     "multiclass"),
        "TiltedCrossEntropy_class_ignore": (lambda: L.TiltedCrossEntropy(
            t=1.0, level="class", ignore_index=IGNORE), "multiclass_ignore"),
        "TiltedCrossEntropy_onehot": (lambda: L.TiltedCrossEntropy(from_logits=False),
                                      "onehot"),
        "SoftFocalLoss_logits": (lambda: L.SoftFocalLoss(
            gamma=1.5, from_logits=True, class_weights=[1.0, 0.5, 2.0, 0.1]),
            "multilabel_scores"),
        "SoftFocalLoss_segmentation": (lambda: L.SoftFocalLoss(gamma=2.0), "onehot"),
        "ClassBalancedFocalLoss": (lambda: L.ClassBalancedFocalLoss([500, 100, 20, 5],
                                                                    beta=0.99),
                                   "multilabel_scores"),
        "ReducedFocalLoss": (lambda: L.ReducedFocalLoss(threshold=0.5), "multilabel_scores"),
        "DropWorst": (lambda: L.DropWorst(L.SoftFocalLoss(gamma=2.0), k=1),
                      "multilabel_scores"),
        # "auto": the fast sparse formulation eagerly and in TF graphs, the static one under
        # XLA, JAX and PyTorch; the Minkowski pooling with its default exponent.
        "LocallyAdaptiveLoss": (lambda: L.LocallyAdaptiveLoss(kernel_size=3), "multiclass"),
        "LocallyAdaptiveLoss_ignore": (lambda: L.LocallyAdaptiveLoss(
            kernel_size=3, ignore_index=IGNORE), "multiclass_ignore"),
        "AuxiliaryClassLoss": (lambda: L.AuxiliaryClassLoss(
            keras.losses.SparseCategoricalCrossentropy(from_logits=True), target_classes=2,
            auxiliary_classes=2, seed=3), "auxiliary"),
    }
    return table


# ----------------------------------------------------------------------------- metrics


def _fairness():
    statistics = ("worst", "sorted_top_25", "bottom_25th_percentile")
    table = {f"FairnessIoU_{s}": ((lambda s=s: M.FairnessIoU(3, statistic=s)), "multiclass")
             for s in statistics}
    table["FairnessIoU_reference_order"] = (lambda: M.FairnessIoU(
        3, statistic="sorted_bottom_25", reference_order=[2, 0, 1]), "multiclass")
    table["FairnessIoU_ignore"] = (lambda: M.FairnessIoU(3, "std", ignore_index=IGNORE),
                                   "multiclass_ignore")
    return table


def _per_class():
    """Dict results: one value per class name plus the mean (see :func:`metric_values`)."""
    names = ["sky", "road", "car"]
    return {
        "PerClassIoU": (lambda: M.PerClassIoU(3, class_names=names), "multiclass"),
        "PerClassIoU_ignore": (lambda: M.PerClassIoU(3, class_names=names, ignore_index=IGNORE),
                               "multiclass_ignore"),
        "PerClassDice_onehot": (lambda: M.PerClassDice(3, class_names=names), "onehot"),
        "PerClassDice_binary": (lambda: M.PerClassDice(2, class_names=["background", "mask"],
                                                       from_logits=True), "binary_logits"),
    }


def metric_values(result, name):
    """A metric's result as plain numbers: a float, or for a dict result (the per-class
    metrics) ``{key minus the metric's name: float}``, e.g. ``{"": mean, "/road": ...}``, so
    that the direct call (default name) and the compiled paths (renamed) compare."""
    if isinstance(result, dict):
        return {key[len(name):]: float(keras.ops.convert_to_numpy(value))
                for key, value in result.items()}
    return float(keras.ops.convert_to_numpy(result))


def _metrics():
    return {
        "DiceCoefficient_per_image": (lambda: M.DiceCoefficient(per_image=True), "binary"),
        "DiceCoefficient_pooled": (lambda: M.DiceCoefficient(per_image=False), "binary"),
        "DiceCoefficient_logits": (lambda: M.DiceCoefficient(from_logits=True),
                                   "binary_logits"),
        "IoUScore_per_image": (lambda: M.IoUScore(per_image=True), "binary"),
        "IoUScore_pooled": (lambda: M.IoUScore(per_image=False), "binary"),
        "ConfusionMatrixIoU": (lambda: M.ConfusionMatrixIoU(3), "multiclass"),
        "ConfusionMatrixIoU_ignore": (lambda: M.ConfusionMatrixIoU(3, ignore_index=IGNORE),
                                      "multiclass_ignore"),
        "ConfusionMatrixIoU_onehot": (lambda: M.ConfusionMatrixIoU(3), "onehot"),
        "ConfusionMatrixIoU_binary": (lambda: M.ConfusionMatrixIoU(2, from_logits=True),
                                      "binary_logits"),
        "ConfusionMatrixIoU_binary_probabilities": (lambda: M.ConfusionMatrixIoU(2), "binary"),
        **_fairness(),
        **_per_class(),
        "LabelRankingAveragePrecision": (lambda: M.LabelRankingAveragePrecision(),
                                         "multilabel_scores"),
        "MeanAveragePrecision": (lambda: M.MeanAveragePrecision(4, capacity=16),
                                 "multilabel_scores"),
    }


LOSSES = _losses()
METRICS = _metrics()
KINDS = sorted({kind for _, kind in list(LOSSES.values()) + list(METRICS.values())})
