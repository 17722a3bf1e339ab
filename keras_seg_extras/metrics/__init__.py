"""keras_seg_extras.metrics"""

from keras_seg_extras.metrics.confusion import ConfusionMatrixIoU  # noqa: F401
