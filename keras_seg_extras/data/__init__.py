"""keras_seg_extras.data: DICOM conversion, RLE, splits, soft labels, augmentation, tf.data.

Loaded lazily by ``keras_seg_extras`` (``kse.data``); the pipeline and class-sampler parts
use TensorFlow.
"""

from keras_seg_extras.data import augment, dicom, file_check, pipeline, rle, split  # noqa: F401
from keras_seg_extras.data.augment import dihedral_copies  # noqa: F401
from keras_seg_extras.data.cityscapes import cityscapes_files  # noqa: F401
from keras_seg_extras.data.class_sampler import (  # noqa: F401
    class_pixel_counts,
    class_sampled_dataset,
    index_class_presence,
    indexed_dataset,
    indexed_loader,
    majority_class_confusion,
    resize_and_flip,
)
from keras_seg_extras.data.dicom import convert_dicom_folder, dicom_to_uint8, write_dicom  # noqa: F401
from keras_seg_extras.data.pipeline import read_images, segmentation_dataset  # noqa: F401
from keras_seg_extras.data.soft_labels import (  # noqa: F401
    class_presence_counts,
    constant_prior_scores,
    none_class_weights,
    region_soft_labels,
    soft_labels_from_csv,
    soft_labels_from_votes,
)
