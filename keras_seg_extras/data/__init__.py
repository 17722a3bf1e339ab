"""keras_seg_extras.data: DICOM, run-length encoding, splits, file checks, augmentation, tf.data.

- DICOM (``dicom/``: reading, folder conversion, writing): :func:`dicom_to_uint8`,
  :func:`convert_dicom_folder`, :func:`write_dicom`, ...;
- run-length encoding (``rle.py``): SIIM's relative and Kaggle's absolute formats;
- splits (``split.py``): stratified, patient-grouped splits and k folds;
- file checks (``file_check.py``, ``image_formats.py``): corrupt or misread image files found
  before training;
- augmentation (``augment.py``), soft labels (``soft_labels.py``), the ``tf.data`` pipelines
  (``pipeline.py``, ``class_sampler.py``; TensorFlow-only, imported at their first use).

Every public name is flat here (``kse.data.decode_siim``); the modules stay importable.
"""

from keras_seg_extras.data.augment import Augmenter, dihedral_copies, element_seed, siim_preset
from keras_seg_extras.data.cityscapes import cityscapes_files
from keras_seg_extras.data.class_sampler import (class_pixel_counts, class_sampled_dataset,
                                                 index_class_presence, indexed_dataset,
                                                 indexed_loader, majority_class_confusion,
                                                 resize_and_flip)
from keras_seg_extras.data.dicom import (CSV_COLUMNS, HEADER_FIELDS, ConversionOptions,
                                         ConversionSummary, convert_dicom_folder, dicom_to_uint8,
                                         find_dicom_files, header_fields, read_dicom,
                                         write_dicom, write_png)
from keras_seg_extras.data.file_check import FileCheckReport, check_files
from keras_seg_extras.data.image_formats import (BadFile, FileRole, inspect_image_bytes,
                                                 inspect_image_file)
from keras_seg_extras.data.pipeline import read_images, segmentation_dataset
from keras_seg_extras.data.rle import (decode_kaggle, decode_rows, decode_siim, encode_kaggle,
                                       encode_siim)
from keras_seg_extras.data.siim import (SiimData, build_siim_demo_dataset, prepare_siim,
                                       read_grayscale_png, read_siim_rle_csv, siim_paths,
                                       write_siim_masks, write_siim_submission)
from keras_seg_extras.data.soft_labels import (class_presence_counts, constant_prior_scores,
                                               none_class_weights, region_soft_labels,
                                               soft_labels_from_csv, soft_labels_from_votes)
from keras_seg_extras.data.split import stratified_kfold, stratified_split

__all__ = [
    "Augmenter", "BadFile", "build_siim_demo_dataset", "check_files", "cityscapes_files",
    "class_pixel_counts", "class_presence_counts", "class_sampled_dataset",
    "constant_prior_scores", "ConversionOptions", "ConversionSummary", "convert_dicom_folder",
    "CSV_COLUMNS", "decode_kaggle", "decode_rows", "decode_siim", "dicom_to_uint8",
    "dihedral_copies", "element_seed", "encode_kaggle", "encode_siim", "FileCheckReport",
    "FileRole", "find_dicom_files", "HEADER_FIELDS", "header_fields", "index_class_presence",
    "indexed_dataset", "indexed_loader", "inspect_image_bytes", "inspect_image_file",
    "majority_class_confusion", "none_class_weights", "prepare_siim", "read_dicom",
    "read_grayscale_png", "read_images", "read_siim_rle_csv", "region_soft_labels",
    "resize_and_flip", "segmentation_dataset", "siim_paths", "siim_preset", "SiimData",
    "soft_labels_from_csv", "soft_labels_from_votes", "stratified_kfold", "stratified_split",
    "write_dicom", "write_png", "write_siim_masks", "write_siim_submission",
]
