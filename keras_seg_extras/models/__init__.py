"""Segmentation models: U-Net++ on keras.applications encoders, and a small U-Net."""

from keras_seg_extras.models.encoders import (ENCODERS, SKIP_STRIDES, CaffePreprocessing,
                                              build_encoder, encoder_names,
                                              imagenet_cache_path)
from keras_seg_extras.models.small_unet import small_unet
from keras_seg_extras.models.unet_plus_plus import (DROPOUT_PLACES, InputSizeCheck,
                                                    UNetPlusPlus, fig5_dropout_rates)

__all__ = ["DROPOUT_PLACES", "ENCODERS", "SKIP_STRIDES", "CaffePreprocessing", "InputSizeCheck",
           "UNetPlusPlus", "build_encoder", "encoder_names", "fig5_dropout_rates",
           "imagenet_cache_path", "small_unet"]
