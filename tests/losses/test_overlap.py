import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_seg_extras as kse
from keras_seg_extras import losses as L

IGNORE = 255


# ----------------------------------------------------------------------------- references


def np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_overlap(kind, targets, probabilities, valid, smooth, per_image):
    """Loop over images (or the batch) and classes; targets/probabilities (B, H, W, C)."""
    groups = [slice(b, b + 1) for b in range(targets.shape[0])] if per_image else [slice(None)]
    values = []
    for group in groups:
        per_class = []
        for c in range(targets.shape[-1]):
            y = targets[group, ..., c][valid[group, ..., c] > 0].astype("float64")
            p = probabilities[group, ..., c][valid[group, ..., c] > 0].astype("float64")
            if y.sum() + p.sum() == 0:
                per_class.append(0.0)
                continue
            inter = (y * p).sum()
            if kind == "dice":
                per_class.append(1 - (2 * inter + smooth) / (y.sum() + p.sum() + smooth))
            else:
                per_class.append(1 - (inter + smooth) / (y.sum() + p.sum() - inter + smooth))
        values.append(np.mean(per_class))
    return np.array(values) if per_image else values[0]


def np_jaccard_gradient(gt_sorted):
    gts = gt_sorted.sum()
    intersection = gts - np.cumsum(gt_sorted)
    union = gts + np.cumsum(1.0 - gt_sorted)
    jaccard = 1.0 - intersection / union
    return np.concatenate([jaccard[:1], np.diff(jaccard)])


def np_lovasz_flat(errors, labels):
    """errors, labels: 1-D over the valid pixels only."""
    if errors.size == 0:
        return 0.0
    order = np.argsort(-errors, kind="stable")
    return float(np.dot(np.maximum(errors[order], 0.0), np_jaccard_gradient(labels[order])))


def np_lovasz_hinge(labels, logits, per_image, ignore=None):
    """labels (B, H, W), logits (B, H, W); ignored pixels are removed, not masked."""
    groups = [(labels[b], logits[b]) for b in range(len(labels))] if per_image else [(labels, logits)]
    values = []
    for lab, log in groups:
        keep = np.ones(lab.shape, bool) if ignore is None else lab != ignore
        lab, log = lab[keep].astype("float64"), log[keep].astype("float64")
        values.append(np_lovasz_flat(1.0 - log * (2 * lab - 1), lab))
    return np.array(values) if per_image else values[0]


def np_lovasz_softmax(labels, probabilities, classes, per_image, ignore=None):
    """labels (B, H, W) ints, probabilities (B, H, W, C)."""
    C = probabilities.shape[-1]
    groups = ([(labels[b], probabilities[b]) for b in range(len(labels))] if per_image
              else [(labels, probabilities)])
    values = []
    for lab, prob in groups:
        keep = np.ones(lab.shape, bool) if ignore is None else lab != ignore
        lab, prob = lab[keep], prob[keep].astype("float64")
        ids = range(C) if classes in ("all", "present") else classes
        losses = []
        for c in ids:
            fg = (lab == c).astype("float64")
            if classes == "present" and fg.sum() == 0:
                continue
            losses.append(np_lovasz_flat(np.abs(fg - prob[:, c]), fg))
        values.append(np.mean(losses) if losses else 0.0)
    return np.array(values) if per_image else values[0]


def one_hot(labels, C, ignore=None):
    valid = np.ones(labels.shape, bool) if ignore is None else labels != ignore
    return np.eye(C)[np.where(valid, labels, 0)] * valid[..., None], valid[..., None]


# ----------------------------------------------------------------------------- Dice / Jaccard


CASES = [  # mode, channels, from_logits, per_image, ignore
    ("binary", 1, True, False, None),
    ("binary", 1, False, True, IGNORE),
    ("multilabel", 3, True, True, None),
    ("multilabel", 3, False, False, IGNORE),
    ("multiclass", 4, True, False, IGNORE),
    ("multiclass", 4, False, True, None),
]


def random_case(rng, mode, C, from_logits, ignore, shape=(3, 6, 5)):
    scores = rng.normal(scale=2.0, size=shape + (C,)).astype("float32")
    if mode == "multiclass":
        labels = rng.integers(0, C, size=shape)
        if ignore is not None:
            labels[rng.random(shape) < 0.25] = ignore
        targets, valid = one_hot(labels, C, ignore)
        valid = np.broadcast_to(valid, targets.shape)
        probabilities = np_softmax(scores)
    else:
        labels = (rng.random(shape + (C,)) < 0.4).astype("float32")
        if ignore is not None:
            labels[rng.random(labels.shape) < 0.25] = ignore
        valid = (labels != ignore) if ignore is not None else np.ones(labels.shape, bool)
        targets = np.where(valid, labels, 0)
        probabilities = np_sigmoid(scores)
    y_pred = scores if from_logits else probabilities.astype("float32")
    return labels, y_pred, targets, probabilities, valid


@pytest.mark.parametrize("kind", ["dice", "jaccard"])
@pytest.mark.parametrize("mode,C,from_logits,per_image,ignore", CASES)
def test_overlap_losses_match_reference(rng, kind, mode, C, from_logits, per_image, ignore):
    labels, y_pred, targets, probabilities, valid = random_case(rng, mode, C, from_logits, ignore)
    for smooth in (1.0, 0.0):
        expected = np_overlap(kind, targets, probabilities, valid, smooth, per_image)
        function = L.dice_loss if kind == "dice" else L.jaccard_loss
        value = function(labels, y_pred, mode, from_logits=from_logits, smooth=smooth,
                         per_image=per_image, ignore_index=ignore)
        np.testing.assert_allclose(np.asarray(value), expected, atol=1e-5)
        cls = L.DiceLoss if kind == "dice" else L.JaccardLoss
        loss = cls(mode, from_logits=from_logits, smooth=smooth, per_image=per_image,
                   ignore_index=ignore)
        np.testing.assert_allclose(float(loss(labels, y_pred)), np.mean(expected), atol=1e-5)


@pytest.mark.parametrize("cls", [L.DiceLoss, L.JaccardLoss])
def test_empty_masks_give_zero_and_perfect_masks_give_zero(cls):
    empty = np.zeros((2, 4, 4, 1), "float32")
    for smooth in (1.0, 0.0):
        for per_image in (False, True):
            loss = cls("binary", smooth=smooth, per_image=per_image)
            assert float(loss(empty, empty)) == 0.0  # probabilities exactly 0
            full = np.ones_like(empty)
            assert abs(float(loss(full, full))) < 1e-7  # probabilities exactly 1
            logits = cls("binary", from_logits=True, smooth=smooth, per_image=per_image)
            value = float(logits(empty, np.full_like(empty, -100.0)))
            assert np.isfinite(value) and value < 1e-6
            assert abs(float(logits(full, np.full_like(empty, 100.0)))) < 1e-6
            n = 16 if per_image else 32  # foreground pixels per sum, nothing predicted
            assert float(logits(full, np.full_like(empty, -100.0))) == pytest.approx(
                1 - smooth / (n + smooth), abs=1e-6)


def test_per_image_empty_image_counts_as_perfect_class():
    truth = np.zeros((2, 2, 2, 1), "float32")
    truth[0, 0, 0, 0] = 1.0
    pred = np.zeros_like(truth)  # image 0 misses its pixel, image 1 is empty and predicted empty
    value = L.dice_loss(truth, pred, "binary", smooth=0.0, per_image=True)
    np.testing.assert_allclose(np.asarray(value), [1.0, 0.0])


def test_ignored_only_images_give_zero_and_no_nan():
    labels = np.full((2, 3, 3), IGNORE)
    logits = np.random.default_rng(1).normal(size=(2, 3, 3, 3)).astype("float32")
    for cls in (L.DiceLoss, L.JaccardLoss):
        for smooth in (0.0, 1.0):
            loss = cls("multiclass", from_logits=True, smooth=smooth, ignore_index=IGNORE,
                       per_image=True)
            assert float(loss(labels, logits)) == 0.0
    assert float(L.LovaszSoftmaxLoss(ignore_index=IGNORE)(labels, logits)) == 0.0
    assert float(L.LovaszSoftmaxLoss(ignore_index=IGNORE, per_image=True)(labels, logits)) == 0.0
    binary = np.full((2, 3, 3, 1), IGNORE, "float32")
    assert float(L.LovaszHingeLoss(ignore_index=IGNORE)(binary, logits[..., :1])) == 0.0
    assert float(L.SymmetricLovaszLoss(ignore_index=IGNORE, per_image=False)(
        binary, logits[..., :1])) == 0.0


def test_difference_from_keras_dice_is_only_at_empty_masks(rng):
    truth = (rng.random((2, 5, 5, 1)) < 0.5).astype("float32")
    pred = rng.random((2, 5, 5, 1)).astype("float32")
    ours = L.DiceLoss("binary", smooth=0.0)
    np.testing.assert_allclose(float(ours(truth, pred)), float(keras.losses.Dice()(truth, pred)),
                               atol=1e-5)
    empty = np.zeros_like(truth)
    assert float(keras.losses.Dice()(empty, empty)) == pytest.approx(1.0)
    assert float(ours(empty, empty)) == 0.0


# ----------------------------------------------------------------------------- Lovász


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_lovasz_hinge_and_symmetric_match_reference(rng, per_image, ignore):
    labels = (rng.random((3, 5, 4)) < 0.4).astype("float32")
    if ignore is not None:
        labels[rng.random(labels.shape) < 0.3] = ignore
    labels[2] = np.where(labels[2] == 1, 0, labels[2])  # an image without foreground
    logits = rng.normal(scale=2.0, size=(3, 5, 4)).astype("float32")
    expected = np_lovasz_hinge(labels, logits, per_image, ignore)
    value = L.lovasz_hinge(labels[..., None], logits[..., None], per_image, ignore)
    np.testing.assert_allclose(np.asarray(value), expected, atol=1e-5)
    loss = L.LovaszHingeLoss(per_image=per_image, ignore_index=ignore)
    np.testing.assert_allclose(float(loss(labels, logits[..., None])), np.mean(expected), atol=1e-5)
    flipped = np.where(labels == ignore, ignore, 1.0 - labels) if ignore else 1.0 - labels
    symmetric = 0.5 * (expected + np_lovasz_hinge(flipped, -logits, per_image, ignore))
    np.testing.assert_allclose(np.asarray(L.symmetric_lovasz(labels, logits[..., None], per_image,
                                                            ignore)), symmetric, atol=1e-5)
    loss = L.SymmetricLovaszLoss(per_image=per_image, ignore_index=ignore)
    np.testing.assert_allclose(float(loss(labels, logits[..., None])), np.mean(symmetric), atol=1e-5)


def test_lovasz_hinge_gradient_is_the_jaccard_gradient(rng):
    labels = (rng.random((1, 4, 4)) < 0.5).astype("float32")
    logits = rng.normal(size=(1, 4, 4)).astype("float32")
    variable = tf.Variable(logits[..., None])
    with tf.GradientTape() as tape:
        value = L.lovasz_hinge(labels[..., None], variable, per_image=True)[0]
    gradient = tape.gradient(value, variable).numpy()[0, ..., 0].reshape(-1)
    # d/dx_i of sum_k relu(e)_(k) g_k with e_i = 1 - x_i s_i is -s_i g_rank(i) where e_i > 0.
    signs = 2 * labels.reshape(-1) - 1
    errors = 1 - logits.reshape(-1) * signs
    order = np.argsort(-errors, kind="stable")
    g = np_jaccard_gradient(labels.reshape(-1)[order].astype("float64"))
    expected = np.zeros(errors.shape)
    expected[order] = -signs[order] * g * (errors[order] > 0)
    np.testing.assert_allclose(gradient, expected, atol=1e-6)


@pytest.mark.parametrize("classes", ["present", "all", [0, 2]])
@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_softmax_matches_reference(rng, classes, per_image):
    labels = rng.integers(0, 3, size=(3, 5, 4))  # class 3 never in the truth
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    labels[1][labels[1] == 2] = 0  # class 2 absent from image 1
    logits = rng.normal(scale=2.0, size=(3, 5, 4, 4)).astype("float32")
    expected = np_lovasz_softmax(labels, np_softmax(logits.astype("float64")), classes, per_image,
                                 IGNORE)
    value = L.lovasz_softmax(labels, logits, classes, per_image, IGNORE)
    np.testing.assert_allclose(np.asarray(value), expected, atol=1e-5)
    probabilities = np_softmax(logits).astype("float32")
    loss = L.LovaszSoftmaxLoss(classes, per_image, IGNORE, from_logits=False)
    one_hot_labels, _ = one_hot(labels, 4, IGNORE)
    np.testing.assert_allclose(float(loss(one_hot_labels, probabilities)), np.mean(expected),
                               atol=1e-5)


def test_lovasz_edge_inputs_exact_probabilities_and_extreme_logits():
    labels = np.array([[[0, 1], [1, 1]]])
    exact = np.eye(2, dtype="float32")[labels]
    assert float(L.lovasz_softmax(labels, exact, from_logits=False)) == 0.0
    wrong = 1.0 - exact  # probabilities exactly 0 on the true class
    expected = np_lovasz_softmax(labels, wrong, "present", False)
    np.testing.assert_allclose(float(L.lovasz_softmax(labels, wrong, from_logits=False)), expected,
                               atol=1e-6)
    logits = np.where(labels == 1, 100.0, -100.0).astype("float32")[..., None]
    assert float(L.lovasz_hinge(labels, logits)[0]) == 0.0
    assert float(L.lovasz_hinge(labels, -logits)[0]) == pytest.approx(
        np_lovasz_hinge(labels, -logits[..., 0], True).mean(), rel=1e-6)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 3)).astype("float32")
    uniform = np.stack([np.ones((3, 3)), np.zeros((3, 3))])  # all-foreground, all-background
    for per_image in (True, False):
        np.testing.assert_allclose(
            np.asarray(L.lovasz_hinge(uniform, logits[..., None], per_image)),
            np_lovasz_hinge(uniform, logits, per_image), atol=1e-5)
        np.testing.assert_allclose(
            np.asarray(L.symmetric_lovasz(uniform, logits[..., None], per_image)),
            0.5 * (np_lovasz_hinge(uniform, logits, per_image)
                   + np_lovasz_hinge(1 - uniform, -logits, per_image)), atol=1e-5)
    single_class = np.zeros((1, 3, 3), "int32")
    probabilities = np_softmax(rng.normal(size=(1, 3, 3, 3)))
    for classes in ("present", "all"):
        np.testing.assert_allclose(
            float(L.lovasz_softmax(single_class, probabilities.astype("float32"), classes,
                                   from_logits=False)),
            np_lovasz_softmax(single_class, probabilities, classes, False), atol=1e-5)


# ----------------------------------------------------------------------------- dtypes


ALL_LOSSES = {
    "dice_binary": (L.DiceLoss("binary", from_logits=True), "binary"),
    "jaccard_multiclass": (L.JaccardLoss("multiclass", from_logits=True, per_image=True), "multi"),
    "dice_multilabel": (L.DiceLoss("multilabel", from_logits=True), "multilabel"),
    "lovasz_hinge": (L.LovaszHingeLoss(), "binary"),
    "symmetric_lovasz": (L.SymmetricLovaszLoss(), "binary"),
    "lovasz_softmax": (L.LovaszSoftmaxLoss(per_image=True), "multi"),
}


@pytest.mark.parametrize("name", sorted(ALL_LOSSES))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("scale", [1.0, 100.0])
def test_low_precision_and_extreme_inputs_give_finite_values_and_gradients(rng, name, dtype, scale):
    loss, kind = ALL_LOSSES[name]
    C = {"binary": 1, "multilabel": 3, "multi": 3}[kind]
    logits = (scale * np.sign(rng.normal(size=(2, 4, 4, C)))).astype("float32")
    if kind == "multi":
        labels = rng.integers(0, C, size=(2, 4, 4))
    else:
        labels = (rng.random((2, 4, 4, C)) < 0.5).astype("float32")
    variable = tf.Variable(tf.cast(logits, dtype))
    with tf.GradientTape() as tape:
        value = loss(labels, variable)
    gradient = tape.gradient(value, variable)
    assert value.dtype == tf.float32 and np.isfinite(float(value))
    assert np.all(np.isfinite(tf.cast(gradient, "float32").numpy()))


# ----------------------------------------------------------------------------- config and errors


@pytest.mark.parametrize("loss", [
    L.DiceLoss("multilabel", from_logits=True, smooth=0.5, per_image=True, ignore_index=7),
    L.JaccardLoss("multiclass", smooth=0.0, ignore_index=IGNORE, name="iou"),
    L.LovaszHingeLoss(per_image=False, ignore_index=IGNORE),
    L.SymmetricLovaszLoss(per_image=False),
    L.LovaszSoftmaxLoss(average_over=[1, 3], per_image=True, ignore_index=0, from_logits=False),
])
def test_config_round_trip(loss):
    clone = type(loss).from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is type(loss) and again.get_config() == loss.get_config()


def test_bad_arguments_name_object_argument_and_value():
    with pytest.raises(ValueError, match=r"DiceLoss: `mode` must be one of .*received 'multi'"):
        L.DiceLoss("multi")
    with pytest.raises(ValueError, match=r"JaccardLoss: `smooth` must be >= 0; received -1"):
        L.JaccardLoss("binary", smooth=-1)
    with pytest.raises(ValueError, match=r"LovaszHingeLoss: `per_image` must be True or False"):
        L.LovaszHingeLoss(per_image=1)
    with pytest.raises(ValueError, match=r"LovaszSoftmaxLoss: `average_over` must be one of"):
        L.LovaszSoftmaxLoss(average_over="some")
    with pytest.raises(ValueError, match=r"LovaszSoftmaxLoss: `average_over` must not repeat"):
        L.LovaszSoftmaxLoss(average_over=[1, 1])
    with pytest.raises(ValueError, match=r"LovaszSoftmaxLoss: `average_over` must hold class ids below"):
        L.LovaszSoftmaxLoss(average_over=[5])(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"dice_loss: `mode`"):
        L.dice_loss(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 1)), mode="softmax")


def test_bad_tensors_raise_clear_errors():
    with pytest.raises(ValueError, match=r"DiceLoss: `y_pred` must have rank 4; .*shape \(1, 2, 2\)"):
        L.DiceLoss("binary")(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"DiceLoss: `y_true` must have rank 3 or 4"):
        L.DiceLoss("multiclass")(np.zeros((1, 2, 2, 1, 1)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r'JaccardLoss: `y_pred` .*1 channel with mode="binary"'):
        L.JaccardLoss("binary")(np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r'DiceLoss: `y_pred` .*at least 2 channels'):
        L.DiceLoss("multiclass")(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 1)))
    with pytest.raises(ValueError, match=r"DiceLoss: `y_true` .*3 channel"):
        L.DiceLoss("multilabel")(np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"LovaszHingeLoss: `y_pred` .*1 channel"):
        L.LovaszHingeLoss()(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3)))


def test_out_of_range_labels_raise_naming_object_and_values():
    labels = np.array([[[0, 3], [9, IGNORE]]])
    with pytest.raises(ValueError, match=r"DiceLoss: integer labels must lie in \[0, 3\) or equal "
                                         r"ignore_index=255; received label values \[3, 9\]"):
        L.DiceLoss("multiclass", ignore_index=IGNORE)(labels, np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"LovaszSoftmaxLoss: integer labels .*\[3, 9, 255\]"):
        L.LovaszSoftmaxLoss()(labels, np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"LovaszHingeLoss: binary/multi-label targets must lie in "
                                         r"\{0, 1\}; received target values \[2.0\]"):
        L.LovaszHingeLoss()(np.array([[[0.0, 2.0]]]), np.zeros((1, 1, 2, 1)))


def test_model_fit_trains_in_graph_mode_and_rejects_out_of_range_labels():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss=kse.losses.CombinedLoss([
        kse.losses.JaccardLoss("multiclass", from_logits=True, per_image=True),
        kse.losses.LovaszSoftmaxLoss(per_image=True)]))
    x = np.random.default_rng(2).normal(size=(2, 4, 4, 1)).astype("float32")
    labels = (x[..., 0] > 0).astype("int32") * 2
    before = model.get_weights()
    history = model.fit(x, labels, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]) and history.history["loss"][0] > 0
    assert not np.allclose(before[0], model.get_weights()[0])  # the gradients reached the weights
    labels[1, 0, 0] = 5  # same shapes: the traced train step is reused, the assertion fires
    with pytest.raises(Exception, match=r"JaccardLoss: integer labels must lie in \[0, 3\)"):
        model.fit(x, labels, batch_size=2, epochs=1, verbose=0)
