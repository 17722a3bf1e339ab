import numpy as np
import pytest

from keras_seg_extras.models import small_unet


def test_small_unet_shapes_and_sizes():
    model = small_unet((None, None, 1), num_classes=3, activation="softmax", filters=(4, 8, 16))
    out = model.predict(np.zeros((2, 32, 48, 1), "float32"), verbose=0)
    assert out.shape == (2, 32, 48, 3)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)


def test_small_unet_rejects_indivisible_size():
    with pytest.raises(ValueError, match=r"small_unet: `input_shape`.*divisible by 4"):
        small_unet((30, 32, 3), filters=(4, 8, 16))
