"""strategy() selection, and a reusable check that a loss/metric is the same under 2 replicas.

``assert_loss_same_under_replicas`` and ``assert_metric_same_under_replicas`` are applied to
every loss and metric of the package (``LOSSES`` / ``METRICS``; a test checks that every public
class appears). Losses that reduce over the whole batch (batch-global Dice/Jaccard/Lovász,
BCE + Dice, the image-level tilted CE, ``DropWorst``) are computed per replica by design;
``PER_REPLICA_LOSSES`` asserts that documented behaviour with
``assert_loss_is_mean_of_replica_shards``: the 2-replica value is the mean of the one-device
values of the two half batches, and the gradient each half's gradient divided by 2.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tests.training.replicas import two_cpu_replicas

from keras_seg_extras.training import strategy
from keras_seg_extras.training.distribute import _cluster_size

# ----------------------------------------------------------------------------- helpers


def _two_replicas():
    return two_cpu_replicas()


def _split(mirrored, array):
    half = array.shape[0] // 2
    return mirrored.experimental_distribute_values_from_function(
        lambda context: tf.constant(array[context.replica_id_in_sync_group * half:
                                          (context.replica_id_in_sync_group + 1) * half]))


def loss_under_replicas(loss, y_true, y_pred):
    """(value, gradient w.r.t. y_pred) on one device and as Keras trains under 2 replicas.

    Under ``MirroredStrategy`` Keras's ``train_step`` computes the loss on each replica's
    half of the global batch, where a ``keras.losses.Loss`` divides its reduced value by the
    number of replicas, and sums the gradients (all-reduce). So the distributed loss is
    ``sum_r loss(shard_r) / R`` and its gradient w.r.t. the predictions is the
    concatenation of the per-replica gradients. A plain function is wrapped the way
    ``compile`` wraps it (``LossFunctionWrapper``).
    """
    if not isinstance(loss, keras.losses.Loss):
        from keras.src.losses.losses import LossFunctionWrapper

        loss = LossFunctionWrapper(loss)
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred, "float32")
    if y_true.shape[0] % 2:
        raise ValueError("loss_under_replicas: the batch must split into two equal halves")
    prediction = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(prediction)
        single = loss(tf.constant(y_true), prediction)
    single_gradient = tape.gradient(single, prediction).numpy()

    mirrored = _two_replicas()

    def replica_step(shard_true, shard_pred):
        with tf.GradientTape() as tape:
            tape.watch(shard_pred)
            value = loss(shard_true, shard_pred)  # scaled by 1/R inside Loss.__call__
        return value, tape.gradient(value, shard_pred)

    values, gradients = mirrored.run(replica_step,
                                     args=(_split(mirrored, y_true), _split(mirrored, y_pred)))
    distributed = float(mirrored.reduce(tf.distribute.ReduceOp.SUM, values, axis=None))
    distributed_gradient = np.concatenate(
        [g.numpy() for g in mirrored.experimental_local_results(gradients)])
    return (float(single), single_gradient), (distributed, distributed_gradient)


def assert_loss_same_under_replicas(loss, y_true, y_pred, atol=1e-5):
    (value, gradient), (value_2, gradient_2) = loss_under_replicas(loss, y_true, y_pred)
    assert np.isfinite(value)
    np.testing.assert_allclose(value_2, value, atol=atol, rtol=0)
    np.testing.assert_allclose(gradient_2, gradient, atol=atol, rtol=0)


def assert_metric_same_under_replicas(make_metric, y_true, y_pred, atol=1e-5):
    """A metric updated per replica on half batches reports the one-device value."""
    single = make_metric()
    single.update_state(y_true, y_pred)
    mirrored = _two_replicas()
    with mirrored.scope():
        metric = make_metric()
    mirrored.run(metric.update_state, args=(_split(mirrored, np.asarray(y_true)),
                                            _split(mirrored, np.asarray(y_pred, "float32"))))
    got, expected = metric.result(), single.result()
    if isinstance(expected, dict):  # per-class metrics: every key
        assert got.keys() == expected.keys()
        got, expected = [got[k] for k in expected], list(expected.values())
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=atol, rtol=0)


def loss_per_replica_shards(loss, y_true, y_pred, replicas=2):
    """(mean value, gradient) of ``loss`` over the R replica shards, computed on one device.

    What a loss that is documented to be computed per replica (a batch-global reduction
    over each replica's share of the batch) must give under R replicas: the mean of the
    shard values, and as gradient w.r.t. the predictions each shard's gradient divided by R.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred, "float32")
    size = y_true.shape[0] // replicas
    values, gradients = [], []
    for r in range(replicas):
        prediction = tf.constant(y_pred[r * size:(r + 1) * size])
        with tf.GradientTape() as tape:
            tape.watch(prediction)
            value = loss(tf.constant(y_true[r * size:(r + 1) * size]), prediction)
        values.append(float(value))
        gradients.append(tape.gradient(value, prediction).numpy() / replicas)
    return float(np.mean(values)), np.concatenate(gradients)


def assert_loss_is_mean_of_replica_shards(loss, y_true, y_pred, atol=1e-5):
    """The documented behaviour of a per-replica (not batch-decomposable) loss."""
    (value, _), (value_2, gradient_2) = loss_under_replicas(loss, y_true, y_pred)
    expected, expected_gradient = loss_per_replica_shards(loss, y_true, y_pred)
    assert np.isfinite(expected)
    np.testing.assert_allclose(value_2, expected, atol=atol, rtol=0)
    np.testing.assert_allclose(gradient_2, expected_gradient, atol=atol, rtol=0)
    # The check has teeth on these inputs: the batch-global value differs from the mean.
    assert abs(value - expected) > 10 * atol


def _segmentation_batch(seed=0, classes=1):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((4, 8, 8, classes)) > 0.6).astype("float32")
    y_pred = rng.random((4, 8, 8, classes)).astype("float32") * 0.98 + 0.01
    return y_true, y_pred


def _inputs(kind, seed=0):
    """Tiny (4, 8, 8, C) batches; the two halves differ (the first image is all background)."""
    rng = np.random.default_rng(seed)
    if kind in ("binary", "multilabel", "binary_logits"):
        classes = 3 if kind == "multilabel" else 1
        y_true, y_pred = _segmentation_batch(seed, classes)
        y_true[0] = 0.0
        if kind == "binary_logits":
            y_pred = np.log(y_pred / (1 - y_pred)) * 2.0
        return y_true, y_pred.astype("float32")
    logits = rng.normal(0.0, 2.0, (4, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 8, 8))
    labels[0] = 0
    if kind == "multiclass":  # integer labels, logits
        return labels, logits
    if kind == "onehot_probabilities":  # one-hot labels, softmax probabilities
        probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        return np.eye(3, dtype="float32")[labels], probabilities.astype("float32")
    if kind == "auxiliary":
        # Targets 0, 1; auxiliary outputs 2, 3; label 7 is a foreign class. Every foreign
        # pixel is predicted as an auxiliary class, so Algorithm 1 draws nothing at random.
        labels = np.where(rng.random((4, 8, 8)) < 0.4, 7, rng.integers(0, 2, (4, 8, 8)))
        logits = rng.normal(0.0, 1.0, (4, 8, 8, 4)).astype("float32")
        auxiliary = rng.integers(2, 4, (4, 8, 8))
        boost = np.eye(4, dtype="float32")[auxiliary] * 10.0
        logits = logits + np.where((labels == 7)[..., None], boost, 0.0).astype("float32")
        return labels, logits
    raise ValueError(kind)


def _soft_overlap_losses(per_image):
    """Dice and Jaccard in the three modes (multiclass on logits and integer labels)."""
    from keras_seg_extras import losses as L

    suffix = "per_image" if per_image else "batch"
    return {f"{cls.__name__}_{mode}_{suffix}":
            (cls(mode, from_logits=mode == "multiclass", per_image=per_image), mode)
            for cls in (L.DiceLoss, L.JaccardLoss)
            for mode in ("binary", "multilabel", "multiclass")}


def _losses():
    from keras_seg_extras import losses as L

    table = {
        "keras_binary_crossentropy": (keras.losses.BinaryCrossentropy(), "binary"),
        "keras_binary_focal_crossentropy": (keras.losses.BinaryFocalCrossentropy(gamma=2.0),
                                            "binary"),
        "lovasz_hinge_per_image": (L.LovaszHingeLoss(per_image=True), "binary_logits"),
        "symmetric_lovasz_per_image": (L.SymmetricLovaszLoss(per_image=True), "binary_logits"),
        "lovasz_softmax_per_image": (L.LovaszSoftmaxLoss(per_image=True), "multiclass"),
        "combined_bce_dice_per_image": (
            L.CombinedLoss([keras.losses.BinaryCrossentropy(),
                            L.DiceLoss("binary", per_image=True)], weights=[1.0, 0.5]),
            "binary"),
        "soft_focal": (L.SoftFocalLoss(gamma=2.0), "onehot_probabilities"),
        "class_balanced_focal": (L.ClassBalancedFocalLoss([500, 100, 20], beta=0.99),
                                 "onehot_probabilities"),
        "reduced_focal": (L.ReducedFocalLoss(threshold=0.5), "onehot_probabilities"),
        "tilted_ce_image_t0": (L.TiltedCrossEntropy(t=0.0, level="image"), "multiclass"),
        "tilted_ce_class": (L.TiltedCrossEntropy(t=1.0, level="class"), "multiclass"),
        "locally_adaptive": (L.LocallyAdaptiveLoss(kernel_size=3), "multiclass"),
        "auxiliary_class_deterministic": (
            L.AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                 target_classes=2, auxiliary_classes=2, seed=3),
            "auxiliary"),
    }
    return {**table, **_soft_overlap_losses(per_image=True)}


def _per_replica_losses():
    """Losses documented (or, for the batch-global overlap losses, defined) to reduce over
    each replica's share of the batch: under R replicas they give the mean of the shards."""
    from keras_seg_extras import losses as L

    table = {
        "lovasz_hinge_batch": (L.LovaszHingeLoss(per_image=False), "binary_logits"),
        "symmetric_lovasz_batch": (L.SymmetricLovaszLoss(per_image=False), "binary_logits"),
        "lovasz_softmax_batch": (L.LovaszSoftmaxLoss(per_image=False), "multiclass"),
        "bce_dice": (L.BCEDiceLoss(), "binary"),
        "combined_bce_dice_batch": (
            L.CombinedLoss([keras.losses.BinaryCrossentropy(), L.DiceLoss("binary")]),
            "binary"),
        "tilted_ce_image": (L.TiltedCrossEntropy(t=2.0, level="image"), "multiclass"),
        "drop_worst": (L.DropWorst(L.SoftFocalLoss(gamma=2.0), k=1), "onehot_probabilities"),
    }
    return {**table, **_soft_overlap_losses(per_image=False)}


def _metrics():
    from keras_seg_extras import metrics as M

    return {
        "keras_binary_iou": (lambda: keras.metrics.BinaryIoU(target_class_ids=[1]), "binary"),
        "keras_mean_iou": (lambda: keras.metrics.MeanIoU(num_classes=2, sparse_y_pred=False),
                           "two_channel"),
        "dice_per_image": (lambda: M.DiceCoefficient(per_image=True), "binary"),
        "dice_pooled": (lambda: M.DiceCoefficient(per_image=False), "binary"),
        "iou_per_image": (lambda: M.IoUScore(per_image=True), "binary"),
        "iou_pooled": (lambda: M.IoUScore(per_image=False), "binary"),
        "confusion_matrix_iou": (lambda: M.ConfusionMatrixIoU(num_classes=3), "multiclass"),
        "fairness_worst": (lambda: M.FairnessIoU(3, statistic="worst"), "multiclass"),
        "fairness_std": (lambda: M.FairnessIoU(3, statistic="std"), "multiclass"),
        "per_class_iou": (lambda: M.PerClassIoU(3, class_names=["a", "b", "c"]), "multiclass"),
        "per_class_dice": (lambda: M.PerClassDice(3), "multiclass"),
        "lrap": (lambda: M.LabelRankingAveragePrecision(), "ranking"),
        "mean_average_precision": (lambda: M.MeanAveragePrecision(4, capacity=16), "ranking"),
    }


# Losses and metrics of the package (and Keras's own as a baseline).
LOSSES = _losses()
PER_REPLICA_LOSSES = _per_replica_losses()
METRICS = _metrics()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_same_under_two_replicas(name):
    loss, kind = LOSSES[name]
    y_true, y_pred = _inputs(kind)
    assert_loss_same_under_replicas(loss, y_true, y_pred)


@pytest.mark.parametrize("name", sorted(PER_REPLICA_LOSSES))
def test_per_replica_losses_give_the_mean_of_replica_shards(name):
    loss, kind = PER_REPLICA_LOSSES[name]
    y_true, y_pred = _inputs(kind)
    assert_loss_is_mean_of_replica_shards(loss, y_true, y_pred)


def test_auxiliary_class_loss_draws_per_replica():
    """With random draws the relabelling is not a function of the batch alone.

    Pixels of a foreign class that the model predicts as a target class get an auxiliary
    label drawn from the loss's seed generator. One device draws one (4, 8, 8) tensor; each
    replica draws a (2, 8, 8) tensor from its own copy of the generator state, so the draws
    (and the loss) under 2 replicas are not those of one device: equality is not defined
    for this case, and the deterministic case (no draws) is in LOSSES. What holds: the
    values are finite and the gradient is the one of the base loss on *some* auxiliary
    relabelling (the target pixels' gradient rows equal the one-device ones).
    """
    from keras_seg_extras.losses import AuxiliaryClassLoss

    loss = AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                              target_classes=2, auxiliary_classes=2, seed=5)
    rng = np.random.default_rng(4)
    labels = np.where(rng.random((4, 8, 8)) < 0.4, 7, rng.integers(0, 2, (4, 8, 8)))
    logits = rng.normal(0.0, 1.0, (4, 8, 8, 4)).astype("float32")
    logits[..., 0] += 10.0 * (labels == 7)  # foreign pixels predicted as a target: draws
    (value, gradient), (value_2, gradient_2) = loss_under_replicas(loss, labels, logits)
    assert np.isfinite(value) and np.isfinite(value_2)
    target = labels != 7
    np.testing.assert_allclose(gradient_2[target], gradient[target], atol=1e-6, rtol=0)
    # A foreign pixel's label is an auxiliary index either way: its gradient is >= 0 on the
    # targets (pushed down) in both runs.
    assert np.all(gradient_2[~target][:, :2] >= 0)


def _metric_inputs(kind, seed=1):
    rng = np.random.default_rng(seed)
    if kind == "binary":
        y_true, y_pred = _segmentation_batch(seed)
        y_true[0] = 0.0
        return y_true, y_pred
    if kind == "two_channel":
        y_true, y_pred = _segmentation_batch(seed)
        return y_true, np.concatenate([1 - y_pred, y_pred], axis=-1)
    if kind == "multiclass":
        labels = rng.integers(0, 3, (4, 8, 8))
        labels[0] = 2
        return labels, rng.normal(0.0, 1.0, (4, 8, 8, 3)).astype("float32")
    if kind == "ranking":  # (B, C) multilabel targets and scores, B = 8
        y_true = (rng.random((8, 4)) > 0.5).astype("float32")
        y_true[0] = [1, 0, 0, 0]
        scores = rng.random((8, 4)).astype("float32")
        return y_true, scores
    raise ValueError(kind)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_metrics_same_under_two_replicas(name):
    make_metric, kind = METRICS[name]
    y_true, y_pred = _metric_inputs(kind)
    assert_metric_same_under_replicas(make_metric, y_true, y_pred)


def test_every_public_loss_and_metric_is_covered():
    import inspect

    from keras_seg_extras import losses as L
    from keras_seg_extras import metrics as M

    def public_classes(module, base):
        return {name for name, obj in vars(module).items()
                if inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_")}

    tables = list(LOSSES.values()) + list(PER_REPLICA_LOSSES.values())
    covered = {type(loss).__name__ for loss, _ in tables}
    assert public_classes(L, keras.losses.Loss) <= covered
    metric_names = {type(make()).__name__ for make, _ in METRICS.values()}
    assert public_classes(M, keras.metrics.Metric) <= metric_names


def test_helper_catches_a_batch_global_loss():
    """A Dice loss pooled over the whole batch is not the mean of two half-batch Dice losses."""

    def batch_dice_loss(y_true, y_pred):
        intersection = tf.reduce_sum(y_true * y_pred)
        return 1.0 - 2.0 * intersection / (tf.reduce_sum(y_true) + tf.reduce_sum(y_pred))

    y_true, y_pred = _segmentation_batch(2)
    y_true[:2] = 0.0  # make the halves very different
    with pytest.raises(AssertionError):
        assert_loss_same_under_replicas(batch_dice_loss, y_true, y_pred)


# ----------------------------------------------------------------------------- strategy()


def test_default_strategy_without_cluster(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy() is tf.distribute.get_strategy()
    single = {"cluster": {"worker": ["127.0.0.1:1234"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(single))
    assert strategy() is tf.distribute.get_strategy()  # a one-task cluster is not a cluster


def test_cluster_parsing_and_errors(monkeypatch):
    two = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "chief", "index": 0}}
    assert _cluster_size(json.dumps(two)) == 2
    with pytest.raises(ValueError, match="strategy: `TF_CONFIG` must be JSON"):
        _cluster_size("{not json")
    with pytest.raises(ValueError, match="must name this process's `task`"):
        _cluster_size(json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}))
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy: `communication`"):
        strategy("mpi")
