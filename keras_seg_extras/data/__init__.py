"""keras_seg_extras.data"""

from keras_seg_extras.data import dicom  # noqa: F401
from keras_seg_extras.data.dicom import convert_dicom_folder, dicom_to_uint8, write_dicom  # noqa: F401
from keras_seg_extras.data.soft_labels import (  # noqa: F401
    soft_labels_from_csv,
    soft_labels_from_votes,
)
