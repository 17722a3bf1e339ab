"""What a per-sample weight means for every loss, checked against float64 NumPy references.

Per-sample losses (focal family, auxiliary, locally adaptive, per-image overlap, DropWorst):
``sum_b w_b l_b / B``. Batch-global losses (Dice/Jaccard/Lovász with ``per_image=False``,
the Dice term of BCEDiceLoss, the tilted mean): the weights enter the sums, so an image of
integer weight n counts as n copies of it and a weight-0 image takes no part at all.
"""

import keras
import numpy as np
import pytest

from keras_seg_extras import losses as L
from tests.losses import references as R

IGNORE = 255
WEIGHTS = np.array([1.0, 0.0, 3.0, 0.5], "float32")  # with a zero: that image must not count


def _rng(seed):
    return np.random.default_rng(2000 + seed)


def _binary(seed, shape=(4, 5, 6)):
    rng = _rng(seed)
    labels = (rng.random(shape) < 0.4).astype("float32")
    labels[rng.random(shape) < 0.1] = IGNORE
    return labels, rng.normal(scale=2.0, size=shape + (1,)).astype("float32")


def _multiclass(seed, shape=(4, 5, 6), classes=3):
    rng = _rng(seed)
    labels = rng.integers(0, classes, shape)
    labels[1, :2] = classes - 1  # the weight-0 image alone holds some pixels of the last class
    labels[rng.random(shape) < 0.1] = IGNORE
    return labels, rng.normal(scale=2.0, size=shape + (classes,)).astype("float32")


def _close(got, expected):
    np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- batch-global


BATCH_GLOBAL = {
    "dice": lambda: L.DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE),
    "jaccard": lambda: L.JaccardLoss("multiclass", from_logits=True, ignore_index=IGNORE,
                                     smooth=0.5),
    "lovasz_softmax": lambda: L.LovaszSoftmaxLoss(ignore_index=IGNORE),
    "lovasz_hinge": lambda: L.LovaszHingeLoss(per_image=False, ignore_index=IGNORE),
    "symmetric_lovasz": lambda: L.SymmetricLovaszLoss(per_image=False, ignore_index=IGNORE),
}


def _batch_global_case(name, seed, weights):
    if name.endswith("hinge") or name.startswith("symmetric"):
        labels, logits = _binary(seed)
        symmetric = name.startswith("symmetric")
        return labels, logits, R.lovasz_hinge(labels, logits, False, IGNORE, weights, symmetric)
    labels, logits = _multiclass(seed)
    if name == "lovasz_softmax":
        return labels, logits, R.lovasz_softmax(labels, logits, "present", False, IGNORE, weights)
    targets, valid = R.one_hot(labels, 3, IGNORE)
    smooth = 1.0 if name == "dice" else 0.5
    return labels, logits, R.overlap(name, targets, R.softmax(logits) * valid, valid, smooth,
                                     False, weights)


@pytest.mark.parametrize("name", list(BATCH_GLOBAL))
def test_batch_global_losses_weight_images_inside_their_sums(name):
    loss = BATCH_GLOBAL[name]()
    labels, logits, expected = _batch_global_case(name, 1, WEIGHTS)
    _close(loss(labels, logits, sample_weight=WEIGHTS), expected)
    # The weight-0 image takes no part: whatever it predicts, the loss stays the same.
    changed = logits.copy()
    changed[1] = -changed[1] * 5.0
    _close(loss(labels, changed, sample_weight=WEIGHTS), expected)
    # Per-pixel weights (B, H, W) weight each pixel the same way.
    pixels = _rng(9).uniform(0.0, 2.0, labels.shape).astype("float32")
    pixels[:, 0] = 0.0
    _, _, per_pixel = _batch_global_case(name, 1, pixels)
    _close(loss(labels, logits, sample_weight=pixels), per_pixel)
    # A scalar multiplies the loss, as in every Keras loss.
    _, _, unweighted = _batch_global_case(name, 1, None)
    _close(loss(labels, logits, sample_weight=2.0), 2.0 * unweighted)


@pytest.mark.parametrize("name", list(BATCH_GLOBAL))
def test_integer_weight_equals_repeating_the_image(name):
    loss = BATCH_GLOBAL[name]()
    labels, logits, _ = _batch_global_case(name, 2, None)
    weights = np.array([2.0, 1.0, 0.0, 1.0], "float32")
    repeated = [0, 0, 1, 3]
    _close(loss(labels, logits, sample_weight=weights),
           float(loss(labels[repeated], logits[repeated])))


def test_bce_dice_weights_both_terms():
    labels, logits = _binary(3)
    y = np.where(labels == IGNORE, 0.0, labels)[..., None].astype("float32")
    loss = L.BCEDiceLoss(bce_weight=0.5, dice_weight=2.0, from_logits=True)
    _close(loss(y, logits, sample_weight=WEIGHTS), R.bce_dice(y, logits, 0.5, 2.0, 1.0, WEIGHTS))
    assert np.asarray(loss(y, logits)).shape == ()
    none = L.BCEDiceLoss(from_logits=True, reduction="none")(y, logits, sample_weight=WEIGHTS)
    dice = R.overlap("dice", y, R.sigmoid(logits), np.ones_like(y), 1.0, False, WEIGHTS)
    bce = (np.logaddexp(0.0, logits) - logits * y).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(none), WEIGHTS * bce + dice, rtol=1e-5)
    _close(L.BCEDiceLoss(from_logits=True, reduction="sum")(y, logits, sample_weight=WEIGHTS),
           float(np.sum(WEIGHTS * bce + dice)))
    _close(L.bce_dice_loss(y, logits, from_logits=True, sample_weight=WEIGHTS)[2],
           3.0 * bce[2] + dice)


def test_combined_loss_gives_each_member_its_own_weighting():
    labels, logits = _binary(4)
    y = np.where(labels == IGNORE, 0.0, labels)[..., None].astype("float32")
    loss = L.CombinedLoss([L.BCEDiceLoss(from_logits=True), L.DiceLoss("binary", from_logits=True),
                           L.LovaszHingeLoss()], weights=[1.0, 0.5, 2.0])
    dice = R.overlap("dice", y, R.sigmoid(logits), np.ones_like(y), 1.0, False, WEIGHTS)
    expected = (R.bce_dice(y, logits, weights=WEIGHTS) + 0.5 * dice
                + 2.0 * R.lovasz_hinge(y[..., 0], logits, True, weights=WEIGHTS))
    _close(loss(y, logits, sample_weight=WEIGHTS), expected)


def test_tilted_cross_entropy_weights_images_inside_the_tilt():
    labels, logits = _multiclass(5)
    for level, t in (("image", 2.0), ("class", -1.0), ("image", 0.0)):
        loss = L.TiltedCrossEntropy(t=t, level=level, ignore_index=IGNORE)
        _close(loss(labels, logits, sample_weight=WEIGHTS),
               R.tilted_cross_entropy(labels, logits, t, level, IGNORE, WEIGHTS))
        _close(loss(labels, logits, sample_weight=WEIGHTS[:, None]),
               R.tilted_cross_entropy(labels, logits, t, level, IGNORE, WEIGHTS))
    with pytest.raises(ValueError, match=r"TiltedCrossEntropy: `sample_weight` must hold one "
                                         r"weight per image.*\(4, 5, 6\)"):
        L.TiltedCrossEntropy(ignore_index=IGNORE)(labels, logits,
                                                  sample_weight=np.ones(labels.shape, "float32"))


# ----------------------------------------------------------------------------- per-sample


def _soft(seed, shape):
    rng = _rng(seed)
    y = np.where(rng.random(shape) < 0.3, 0.25, (rng.random(shape) < 0.5).astype("float64"))
    return y.astype("float32"), rng.normal(scale=2.0, size=shape).astype("float32")


FOCAL = {
    "soft": (lambda: L.SoftFocalLoss(gamma=2.0, from_logits=True),
             lambda y, x: R.soft_focal_terms(y, x, 2.0)),
    "class_balanced": (lambda: L.ClassBalancedFocalLoss([10, 200, 3], beta=0.99, from_logits=True),
                       lambda y, x: R.soft_focal_terms(y, x, 2.0,
                                                       R.class_balanced([10, 200, 3], 0.99))),
    "reduced": (lambda: L.ReducedFocalLoss(threshold=0.4, from_logits=True),
                lambda y, x: R.reduced_focal_terms(y, x, 0.4, 2.0)),
}


@pytest.mark.parametrize("name", list(FOCAL))
def test_focal_losses_weight_each_sample(name):
    make, reference = FOCAL[name]
    loss = make()
    y, x = _soft(6, (4, 3))
    _close(loss(y, x, sample_weight=WEIGHTS), R.keras_mean(reference(y, x), WEIGHTS))
    # Per-pixel multi-label maps: a per-image weight weights every pixel of its image (also
    # when W == B, where plain broadcasting would weight the wrong axis).
    y, x = _soft(7, (4, 2, 4, 3))
    _close(loss(y, x, sample_weight=WEIGHTS), R.keras_mean(reference(y, x), WEIGHTS))
    pixels = _rng(8).uniform(0, 2, (4, 2, 4)).astype("float32")
    _close(loss(y, x, sample_weight=pixels), float((reference(y, x) * pixels).mean()))


def test_per_image_overlap_and_lovasz_weight_the_per_image_values():
    labels, logits = _multiclass(10)
    targets, valid = R.one_hot(labels, 3, IGNORE)
    per_image = R.overlap("dice", targets, R.softmax(logits) * valid, valid, 1.0, True)
    loss = L.DiceLoss("multiclass", from_logits=True, per_image=True, ignore_index=IGNORE)
    _close(loss(labels, logits, sample_weight=WEIGHTS), R.keras_mean(per_image, WEIGHTS))
    binary, binary_logits = _binary(11)
    _close(L.LovaszHingeLoss(ignore_index=IGNORE)(binary, binary_logits, sample_weight=WEIGHTS),
           R.lovasz_hinge(binary, binary_logits, True, IGNORE, WEIGHTS))
    _close(L.LovaszSoftmaxLoss(per_image=True, ignore_index=IGNORE)(labels, logits,
                                                                    sample_weight=WEIGHTS),
           R.lovasz_softmax(labels, logits, "present", True, IGNORE, WEIGHTS))


def test_locally_adaptive_weights_each_image():
    rng = _rng(12)
    labels = np.zeros((4, 4, 5), "int64")
    labels[:, :, 3:] = 1
    labels[rng.random(labels.shape) < 0.2] = 2
    logits = rng.normal(size=(4, 4, 5, 3)).astype("float32")
    loss = L.LocallyAdaptiveLoss(kernel_size=3)
    _close(loss(labels, logits, sample_weight=WEIGHTS),
           R.keras_mean(R.locally_adaptive(labels, logits, 3, 3), WEIGHTS))


def test_drop_worst_chooses_on_unweighted_values_then_weights():
    y, x = _soft(13, (6, 3))
    weights = np.array([0.0, 2.0, 1.0, 0.0, 1.0, 3.0], "float32")
    loss = L.DropWorst(L.SoftFocalLoss(from_logits=True), k=2)
    _close(loss(y, x, sample_weight=weights),
           R.drop_worst(R.soft_focal_terms(y, x, 2.0), 2, weights))


def test_auxiliary_class_loss_weights_each_sample_and_pixel():
    rng = _rng(14)
    labels = rng.integers(0, 3, (4, 2, 4))
    logits = rng.normal(size=(4, 2, 4, 5)).astype("float32")
    loss = L.AuxiliaryClassLoss(keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                target_classes=3, auxiliary_classes=2, seed=0)
    _close(loss(labels, logits, sample_weight=WEIGHTS),
           R.keras_mean(R.sparse_cross_entropy(labels, logits), WEIGHTS))


# ----------------------------------------------------------------------------- bad weights


def test_bad_sample_weights_are_clear_errors():
    labels, logits = _multiclass(15)
    dice = L.DiceLoss("multiclass", from_logits=True)
    with pytest.raises(ValueError, match=r"DiceLoss: `sample_weight` must hold weights >= 0; "
                                         r"received 'minimum -1.0'"):
        dice(labels, logits, sample_weight=np.array([1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"DiceLoss: `sample_weight` must hold per-image \(B,\) "
                                         r"or per-pixel \(B, H, W\) weights"):
        dice(labels, logits, sample_weight=np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"dice_loss: `sample_weight` must be None with "
                                         r"per_image=True"):
        L.dice_loss(labels, logits, "multiclass", per_image=True, sample_weight=WEIGHTS)


def test_weighted_batch_global_loss_under_two_replicas_is_the_mean_of_replica_values():
    import tensorflow as tf

    from tests.training.replicas import two_cpu_replicas

    labels, logits = _multiclass(16)
    loss = L.DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE)
    mirrored = two_cpu_replicas()

    def split(array):
        return mirrored.experimental_distribute_values_from_function(
            lambda context: tf.constant(array[2 * context.replica_id_in_sync_group:
                                              2 * context.replica_id_in_sync_group + 2]))

    values = mirrored.run(lambda y, x, w: loss(y, x, sample_weight=w),
                          args=(split(labels), split(logits), split(WEIGHTS)))
    total = float(mirrored.reduce(tf.distribute.ReduceOp.SUM, values, axis=None))
    shards = [R.overlap("dice", *_one_hot_probabilities(labels[s], logits[s]), 1.0, False,
                        WEIGHTS[s]) for s in (slice(0, 2), slice(2, 4))]
    _close(total, float(np.mean(shards)))


def _one_hot_probabilities(labels, logits):
    targets, valid = R.one_hot(labels, logits.shape[-1], IGNORE)
    return targets, R.softmax(logits) * valid, valid
