"""Segmentation models."""

from keras_seg_extras.models.small_unet import small_unet
from keras_seg_extras.models.encoders import ENCODERS, build_encoder, encoder_names
from keras_seg_extras.models.unet_plus_plus import (
    DROPOUT_PLACES,
    InputSizeCheck,
    UNetPlusPlus,
    fig5_dropout_rates,
)

__all__ = [
    "DROPOUT_PLACES", "ENCODERS", "InputSizeCheck", "UNetPlusPlus", "build_encoder",
    "encoder_names", "fig5_dropout_rates", "small_unet",
]
