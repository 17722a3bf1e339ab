"""keras_seg_extras.losses"""

from keras_seg_extras.losses.local_adaptive import LocallyAdaptiveLoss  # noqa: F401
from keras_seg_extras.losses.local_adaptive import locally_adaptive_loss  # noqa: F401
