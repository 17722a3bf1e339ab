"""keras_seg_extras.losses"""

from keras_seg_extras.losses.focal import (  # noqa: F401
    ClassBalancedFocalLoss,
    ReducedFocalLoss,
    SoftFocalLoss,
    class_balanced_focal_loss,
    class_balanced_weights,
    reduced_focal_loss,
    soft_focal_loss,
)
from keras_seg_extras.losses.wrappers import DropWorst  # noqa: F401
