"""keras_seg_extras.data: DICOM conversion, RLE, splits, soft labels, augmentation, tf.data.

Loaded lazily by ``keras_seg_extras`` (``kse.data``); the pipeline and class-sampler parts
use TensorFlow.
"""

from keras_seg_extras.data import augment, dicom, file_check, pipeline, rle, split  # noqa: F401
from keras_seg_extras.data.class_sampler import (  # noqa: F401
    class_sampled_dataset,
    index_class_presence,
    indexed_loader,
)
from keras_seg_extras.data.dicom import convert_dicom_folder, dicom_to_uint8, write_dicom  # noqa: F401
from keras_seg_extras.data.siim import (  # noqa: F401
    SiimData,
    build_siim_demo_dataset,
    prepare_siim,
    read_grayscale_png,
    read_siim_rle_csv,
    siim_paths,
    write_siim_masks,
    write_siim_submission,
)
from keras_seg_extras.data.soft_labels import (  # noqa: F401
    soft_labels_from_csv,
    soft_labels_from_votes,
)

# The SIIM competition's formats (data/siim.py); the other modules' names are listed by the
# branch that adds __all__ to the whole package.
__all__ = [
    "SiimData",
    "build_siim_demo_dataset",
    "prepare_siim",
    "read_grayscale_png",
    "read_siim_rle_csv",
    "siim_paths",
    "write_siim_masks",
    "write_siim_submission",
]
