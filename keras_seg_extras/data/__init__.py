"""keras_seg_extras.data"""

from keras_seg_extras.data import dicom  # noqa: F401
from keras_seg_extras.data.dicom import convert_dicom_folder, dicom_to_uint8, write_dicom  # noqa: F401
