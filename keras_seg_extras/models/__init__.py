"""Segmentation models."""

from keras_seg_extras.models.small_unet import small_unet  # noqa: F401
