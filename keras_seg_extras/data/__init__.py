"""keras_seg_extras.data: RLE, splits, augmentation and tf.data pipelines (TensorFlow-only parts)."""

from keras_seg_extras.data import augment  # noqa: F401
from keras_seg_extras.data import pipeline  # noqa: F401
from keras_seg_extras.data import rle  # noqa: F401
from keras_seg_extras.data import split  # noqa: F401
