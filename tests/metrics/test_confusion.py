import keras
import numpy as np
import pytest

import keras_seg_extras as kse


def reference_matrix(truth, predicted, num_classes, ignore_index=None, weights=None):
    """Plain loop over pixels: rows truth, columns prediction."""
    matrix = np.zeros((num_classes, num_classes))
    truth, predicted = truth.reshape(-1), predicted.reshape(-1)
    weights = np.ones(truth.shape) if weights is None else weights.reshape(-1)
    for t, p, w in zip(truth, predicted, weights):
        if ignore_index is not None and t == ignore_index:
            continue
        matrix[t, p] += w
    return matrix


def reference_iou(matrix):
    ious = []
    for c in range(matrix.shape[0]):
        tp = matrix[c, c]
        union = matrix[c, :].sum() + matrix[:, c].sum() - tp
        ious.append(tp / union if union > 0 else np.nan)
    ious = np.array(ious)
    return ious, (np.nanmean(ious) if np.any(~np.isnan(ious)) else 0.0)


def random_batch(rng, shape=(2, 5, 6), num_classes=4, ignore_index=255, absent=3):
    labels = rng.integers(0, num_classes - 1, size=shape)  # class `absent` never in truth
    labels[rng.random(shape) < 0.2] = ignore_index
    logits = rng.normal(size=shape + (num_classes,)).astype("float32")
    logits[..., absent] -= 100.0  # and never predicted
    return labels, logits


def test_streaming_matrix_and_iou_match_a_pixel_loop(rng):
    metric = kse.metrics.ConfusionMatrixIoU(num_classes=4, ignore_index=255)
    expected = np.zeros((4, 4))
    for _ in range(2):
        labels, logits = random_batch(rng)
        metric.update_state(labels, logits)
        expected += reference_matrix(labels, logits.argmax(-1), 4, 255)
    np.testing.assert_array_equal(np.asarray(metric.confusion_matrix()), expected)
    ious, mean = reference_iou(expected)
    class_iou = np.asarray(metric.class_iou())
    assert np.isnan(class_iou[3])
    np.testing.assert_allclose(class_iou, ious, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(float(metric.result()), mean, rtol=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
    assert np.all(np.asarray(metric.confusion_matrix()) == 0)


def test_one_hot_labels_and_trailing_channel_give_the_same_matrix(rng):
    labels, logits = random_batch(rng, ignore_index=255)
    valid = labels != 255
    one_hot = np.eye(4)[np.where(valid, labels, 0)] * valid[..., None]  # ignored: all-zero row
    from_int = kse.metrics.ConfusionMatrixIoU(4, ignore_index=255)
    from_int.update_state(labels[..., None], logits)
    from_one_hot = kse.metrics.ConfusionMatrixIoU(4)
    from_one_hot.update_state(one_hot.astype("float32"), logits)
    np.testing.assert_array_equal(np.asarray(from_int.confusion_matrix()),
                                  np.asarray(from_one_hot.confusion_matrix()))


def test_sample_weights_per_image_and_per_pixel(rng):
    labels, logits = random_batch(rng, ignore_index=255)
    predicted = logits.argmax(-1)
    per_image = np.array([0.5, 2.0], dtype="float32")
    metric = kse.metrics.ConfusionMatrixIoU(4, ignore_index=255)
    metric.update_state(labels, logits, sample_weight=per_image)
    pixel_weights = np.broadcast_to(per_image[:, None, None], labels.shape)
    np.testing.assert_allclose(np.asarray(metric.confusion_matrix()),
                               reference_matrix(labels, predicted, 4, 255, pixel_weights))
    pixel = rng.random(labels.shape).astype("float32")
    metric.reset_state()
    metric.update_state(labels, logits, sample_weight=pixel)
    np.testing.assert_allclose(np.asarray(metric.confusion_matrix()),
                               reference_matrix(labels, predicted, 4, 255, pixel), rtol=1e-6)


@pytest.mark.parametrize("from_logits", [True, False])
def test_single_channel_binary_scores(rng, from_logits):
    labels = rng.integers(0, 2, size=(2, 4, 4))
    scores = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    if not from_logits:
        scores = 1.0 / (1.0 + np.exp(-scores))
    metric = kse.metrics.ConfusionMatrixIoU(2, from_logits=from_logits)
    metric.update_state(labels, scores)
    predicted = (scores[..., 0] > (0.0 if from_logits else 0.5)).astype(int)
    np.testing.assert_array_equal(np.asarray(metric.confusion_matrix()),
                                  reference_matrix(labels, predicted, 2))


def test_edge_inputs_float16_scores_and_a_perfect_prediction():
    labels = np.zeros((1, 3, 3), dtype="int32")
    labels[0, 0, 0] = 1
    scores = np.eye(3)[labels].astype("float16")
    metric = kse.metrics.ConfusionMatrixIoU(3)
    metric.update_state(labels, scores)
    np.testing.assert_allclose(np.asarray(metric.class_iou()), [1.0, 1.0, np.nan])
    assert float(metric.result()) == 1.0
    ignored_only = kse.metrics.ConfusionMatrixIoU(3, ignore_index=255)
    ignored_only.update_state(np.full((1, 3, 3), 255), scores)
    assert float(ignored_only.result()) == 0.0
    assert np.all(np.isnan(np.asarray(ignored_only.class_iou())))


def test_config_round_trip():
    metric = kse.metrics.ConfusionMatrixIoU(5, ignore_index=255, from_logits=False, name="miou")
    clone = kse.metrics.ConfusionMatrixIoU.from_config(metric.get_config())
    assert (clone.num_classes, clone.ignore_index, clone.from_logits, clone.name) == (
        5, 255, False, "miou")
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(again) is kse.metrics.ConfusionMatrixIoU and again.num_classes == 5


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: `num_classes` must be >= 2; received 1"):
        kse.metrics.ConfusionMatrixIoU(1)
    metric = kse.metrics.ConfusionMatrixIoU(3, ignore_index=255)
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: integer labels .*\[-1, 3\]"):
        metric.update_state(np.array([[[0, 3], [-1, 255]]]), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: `y_pred` .*num_classes=3"):
        metric.update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 4)))
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: `y_pred` .*rank 4"):
        metric.update_state(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: `y_true`"):
        metric.update_state(np.zeros((1, 2, 3)), np.zeros((1, 2, 2, 3)))


def test_out_of_range_labels_fail_inside_a_compiled_evaluate():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 1)])
    model.compile(loss=lambda y, p: keras.ops.mean(p) * 0.0, metrics=[kse.metrics.ConfusionMatrixIoU(3)])
    labels = np.zeros((2, 4, 4), dtype="int32")
    labels[1, 2, 2] = 7
    with pytest.raises(Exception, match=r"ConfusionMatrixIoU: integer labels must lie in \[0, 3\)"):
        model.evaluate(np.zeros((2, 4, 4, 1), "float32"), labels, verbose=0)


def test_from_logits_defaults_to_probabilities_and_refuses_logits_read_as_probabilities():
    """The default moved from True to False (one story for every metric): single-channel
    logits left on the default must fail loudly, not be thresholded at 0.5 in silence."""
    metric = kse.metrics.ConfusionMatrixIoU(2)
    assert metric.from_logits is False
    labels = np.array([[[0, 1], [1, 0]]])
    metric.update_state(labels, np.array([[[[0.2], [0.7]], [[0.5], [0.51]]]], "float32"))
    np.testing.assert_array_equal(np.asarray(metric.confusion_matrix()),
                                  reference_matrix(labels, np.array([[[0, 1], [0, 1]]]), 2))
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: single-channel scores with "
                       r"from_logits=False .*pass from_logits=True for logits.*\[-2.0, 3.0\]"):
        metric.update_state(labels, np.array([[[[-2.0], [3.0]], [[0.5], [0.5]]]], "float32"))
    # A configuration saved before the change stores from_logits=True and keeps it.
    old = {"name": "miou", "dtype": "float32", "num_classes": 2, "ignore_index": None,
           "from_logits": True}
    assert kse.metrics.ConfusionMatrixIoU.from_config(old).from_logits is True


def test_logits_on_the_probability_default_make_a_compiled_matrix_nan():
    model = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Identity()])
    model.compile(loss=lambda y, p: keras.ops.mean(p) * 0.0,
                  metrics=[kse.metrics.ConfusionMatrixIoU(2, name="miou")])
    labels = np.array([[[0, 1], [1, 0]]] * 2)
    probabilities = np.array([[[[0.2], [0.7]], [[0.6], [0.1]]]] * 2, "float32")
    assert model.evaluate(probabilities, labels, verbose=0, return_dict=True)["miou"] == 1.0
    logits = probabilities * 8.0 - 4.0  # the same classes, read as probabilities: refused
    assert np.isnan(model.evaluate(logits, labels, verbose=0, return_dict=True)["miou"])
