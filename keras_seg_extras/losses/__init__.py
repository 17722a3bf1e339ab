"""keras_seg_extras.losses: overlap, focal, tilted, locally adaptive losses and wrappers."""

from keras_seg_extras.losses.auxiliary import AuxiliaryClassLoss, auxiliary_class_labels
from keras_seg_extras.losses.overlap import (
    DiceLoss,
    JaccardLoss,
    LovaszHingeLoss,
    LovaszSoftmaxLoss,
    SymmetricLovaszLoss,
    dice_loss,
    jaccard_loss,
    lovasz_hinge,
    lovasz_softmax,
    symmetric_lovasz,
)
from keras_seg_extras.losses.combine import BCEDiceLoss, CombinedLoss, bce_dice_loss
from keras_seg_extras.losses.focal import (
    ClassBalancedFocalLoss,
    ReducedFocalLoss,
    SoftFocalLoss,
    class_balanced_focal_loss,
    class_balanced_weights,
    reduced_focal_loss,
    soft_focal_loss,
)
from keras_seg_extras.losses.wrappers import DropWorst  # noqa: F401
from keras_seg_extras.losses.local_adaptive import (  # noqa: F401
    LocallyAdaptiveLoss,
    chessboard_weights,
    locally_adaptive_loss,
)
from keras_seg_extras.losses.tilted import TiltedCrossEntropy, tilted_cross_entropy  # noqa: F401

__all__ = [
    "AuxiliaryClassLoss",
    "BCEDiceLoss",
    "ClassBalancedFocalLoss",
    "CombinedLoss",
    "DiceLoss",
    "DropWorst",
    "JaccardLoss",
    "LocallyAdaptiveLoss",
    "LovaszHingeLoss",
    "LovaszSoftmaxLoss",
    "ReducedFocalLoss",
    "SoftFocalLoss",
    "SymmetricLovaszLoss",
    "TiltedCrossEntropy",
    "auxiliary_class_labels",
    "bce_dice_loss",
    "chessboard_weights",
    "class_balanced_focal_loss",
    "class_balanced_weights",
    "dice_loss",
    "jaccard_loss",
    "locally_adaptive_loss",
    "lovasz_hinge",
    "lovasz_softmax",
    "reduced_focal_loss",
    "soft_focal_loss",
    "symmetric_lovasz",
    "tilted_cross_entropy",
]
