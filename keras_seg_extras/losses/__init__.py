"""keras_seg_extras.losses"""

from keras_seg_extras.losses.auxiliary import AuxiliaryClassLoss, auxiliary_class_labels  # noqa: F401
