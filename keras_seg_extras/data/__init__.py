"""keras_seg_extras.data: DICOM conversion, RLE, splits, augmentation and tf.data pipelines.

Loaded lazily by ``keras_seg_extras`` (``kse.data``); the pipeline parts use TensorFlow.
"""

from keras_seg_extras.data import augment  # noqa: F401
from keras_seg_extras.data import dicom  # noqa: F401
from keras_seg_extras.data import pipeline  # noqa: F401
from keras_seg_extras.data import rle  # noqa: F401
from keras_seg_extras.data import split  # noqa: F401
from keras_seg_extras.data.dicom import convert_dicom_folder, dicom_to_uint8, write_dicom  # noqa: F401
from keras_seg_extras.data.soft_labels import (  # noqa: F401
    soft_labels_from_csv,
    soft_labels_from_votes,
"""keras_seg_extras.data"""

from keras_seg_extras.data.class_sampler import (  # noqa: E402,F401
    class_sampled_dataset,
    index_class_presence,
    indexed_loader,
)
