import numpy as np
import pytest

from keras_seg_extras import _common


def test_integer_labels_become_one_hot_with_ignored_pixels_zeroed():
    labels = np.array([[[0, 2], [255, 1]]], dtype="int32")
    targets, valid = _common.segmentation_targets("Owner", labels, 3, ignore_index=255)
    targets, valid = np.asarray(targets), np.asarray(valid)
    assert targets.shape == (1, 2, 2, 3) and valid.shape == (1, 2, 2, 1)
    np.testing.assert_array_equal(valid[..., 0], [[[1, 1], [0, 1]]])
    np.testing.assert_array_equal(targets[0, 0, 1], [0, 0, 1])
    np.testing.assert_array_equal(targets[0, 1, 0], [0, 0, 0])


def test_labels_out_of_range_name_the_owner_and_values():
    labels = np.array([[[0, 7], [3, 1]]], dtype="int32")
    with pytest.raises(ValueError, match=r"DiceLoss: integer labels .* \[3, 7\]"):
        _common.segmentation_targets("DiceLoss", labels, 3)


def test_one_hot_with_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match="Owner: `y_true`"):
        _common.segmentation_targets("Owner", np.zeros((1, 2, 2, 4)), 3)


def test_number_checks_name_argument_and_value():
    with pytest.raises(ValueError, match=r"Loss: `gamma` must be >= 0; received -1"):
        _common.check_number("Loss", "gamma", -1, minimum=0)
    with pytest.raises(ValueError, match="must be one of"):
        _common.check_choice("Loss", "mode", "binaryy", ("binary", "multiclass"))
