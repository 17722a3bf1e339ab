"""keras_seg_extras.losses"""

from keras_seg_extras.losses.tilted import TiltedCrossEntropy, tilted_cross_entropy  # noqa: E402,F401
