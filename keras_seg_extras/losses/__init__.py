"""keras_seg_extras.losses"""

from keras_seg_extras.losses.overlap import (  # noqa: F401
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
from keras_seg_extras.losses.combine import BCEDiceLoss, CombinedLoss, bce_dice_loss  # noqa: F401
