"""Segmentation models."""

from keras_seg_extras.models.small_unet import small_unet  # noqa: F401
from keras_seg_extras.models.encoders import ENCODERS, build_encoder, encoder_names  # noqa: F401
from keras_seg_extras.models.unet_plus_plus import (  # noqa: F401
    DROPOUT_PLACES,
    InputSizeCheck,
    UNetPlusPlus,
    fig5_dropout_rates,
)
