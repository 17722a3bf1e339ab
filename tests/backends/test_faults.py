"""Faulty inputs in this (TensorFlow) process: the messages, and what stops a user under XLA.

The cross-path table (test_paths.py) checks every loss and metric on every backend; these
are the precise messages and the end-to-end consequence the docs promise.
"""

import keras
import numpy as np
import pytest

from keras_seg_extras import losses as L
from keras_seg_extras import metrics as M


def _identity_model(shape):
    x = keras.Input(shape)
    y = keras.layers.Conv2D(shape[-1], 1, kernel_initializer=keras.initializers.Constant(
        np.eye(shape[-1])[None, None]))(x)
    return keras.Model(x, y)


def test_faulty_label_under_xla_makes_the_loss_nan_and_terminate_on_nan_stops():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 8, 8))
    labels[2, 3, 3] = 255  # a border value with ignore_index unset
    model = _identity_model((8, 8, 3))
    model.compile(optimizer="sgd", loss=L.DiceLoss("multiclass", from_logits=True),
                  metrics=[M.ConfusionMatrixIoU(3)], jit_compile=True)
    history = model.fit(logits, labels, batch_size=2, epochs=3, verbose=0,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    assert model.stop_training
    assert len(history.history["loss"]) == 1  # stopped in the first epoch
    assert np.isnan(history.history["loss"][0])


def test_faulty_label_in_a_tensorflow_graph_raises_the_message():
    labels = np.zeros((2, 4, 4), "int32")
    labels[0, 0, 0] = 3
    model = _identity_model((4, 4, 3))
    model.compile(optimizer="sgd", loss=L.LovaszSoftmaxLoss(), jit_compile=False)
    with pytest.raises(Exception, match=r"LovaszSoftmaxLoss: integer labels must lie in \[0, 3\)"):
        model.train_on_batch(np.zeros((2, 4, 4, 3), "float32"), labels)


def test_nan_prediction_never_scores_as_a_perfect_empty_mask():
    """Binary Dice/Jaccard used to read a NaN as "empty class": loss 0, gradient 0."""
    empty = np.zeros((1, 4, 4, 1), "float32")
    nan = np.full((1, 4, 4, 1), np.nan, "float32")
    for loss in (L.DiceLoss("binary", smooth=0.0), L.JaccardLoss("binary", per_image=True)):
        assert float(loss(empty, empty)) == 0.0
        assert np.isnan(float(loss(empty, nan)))
    for metric in (M.DiceCoefficient(), M.IoUScore(per_image=False)):
        metric.update_state(empty, nan)
        assert np.isnan(float(metric.result()))


def test_shape_mismatch_names_the_object_and_both_shapes():
    with pytest.raises(ValueError, match=r"DiceLoss: `y_true` must match dimensions \(0, 1, 2\) "
                                         r"of the shape of y_pred \(2, 4, 4, 3\); received "
                                         r"'tensor of shape \(2, 4, 3\)'"):
        L.DiceLoss("multiclass")(np.zeros((2, 4, 3), "int32"), np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match=r"IoUScore: `y_true` must match the shape of y_pred "
                                         r"\(2, 4, 4, 1\); received 'tensor of shape \(2, 4, 5, 1\)'"):
        M.IoUScore().update_state(np.zeros((2, 4, 5, 1)), np.zeros((2, 4, 4, 1)))


def test_one_hot_targets_outside_zero_one_are_rejected():
    targets = np.eye(3, dtype="float32")[np.zeros((1, 2, 2), "int32")]
    targets[0, 0, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"TiltedCrossEntropy: one-hot/soft targets must lie in "
                                         r"\[0, 1\]; received target values \[1.5\]"):
        L.TiltedCrossEntropy()(targets, np.zeros((1, 2, 2, 3), "float32"))
    targets[0, 0, 0, 0] = -0.5
    with pytest.raises(ValueError, match=r"ConfusionMatrixIoU: one-hot/soft targets .*-0.5"):
        M.ConfusionMatrixIoU(3).update_state(targets, np.zeros((1, 2, 2, 3), "float32"))


def test_combined_loss_errors_name_the_combined_loss_and_the_member():
    loss = L.CombinedLoss([keras.losses.BinaryCrossentropy(), L.DiceLoss("binary")])
    with pytest.raises(ValueError, match=r"CombinedLoss: member `losses\[1\]` \(DiceLoss\) failed: "
                                         r"DiceLoss: binary/multi-label targets must lie in"):
        loss(np.full((1, 2, 2, 1), 2.0, "float32"), np.full((1, 2, 2, 1), 0.5, "float32"))


def test_drop_worst_errors_name_the_wrapper_and_the_wrapped_loss():
    loss = L.DropWorst(L.SoftFocalLoss(), k=1)
    with pytest.raises(ValueError, match=r"DropWorst: member `loss` \(SoftFocalLoss\) failed: "
                                         r"SoftFocalLoss: `y_true` must match the shape of y_pred "
                                         r"\(4, 3\); received 'tensor of shape \(4, 2\)'"):
        loss(np.zeros((4, 2), "float32"), np.full((4, 3), 0.5, "float32"))
