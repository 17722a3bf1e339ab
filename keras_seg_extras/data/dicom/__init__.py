"""DICOM files: reading and contrast correction, folder conversion to PNG, writing DICOMs.

Three modules, one job each:

- ``reading.py``: :func:`read_dicom`, :func:`header_fields` and :func:`dicom_to_uint8`
  (modality LUT, VOI window, MONOCHROME1 inversion, CLAHE, resize) with its
  :class:`ConversionOptions`;
- ``conversion.py``: :func:`convert_dicom_folder` (a process pool, a progress line, resumable
  atomic outputs, a header CSV and a failure log) and its :class:`ConversionSummary`;
- ``writing.py``: :func:`write_dicom` (a NumPy image as a Secondary Capture DICOM file) and
  :func:`write_png` (atomic PNG writing).

Every name here is also flat in :mod:`keras_seg_extras.data` (``kse.data.write_dicom``), the
documented path; ``kse.data.dicom.write_dicom`` keeps working for code written before the
split. pydicom and OpenCV are imported inside the functions.
"""

from keras_seg_extras.data.dicom.conversion import (CSV_COLUMNS, ConversionSummary,
                                                    convert_dicom_folder, find_dicom_files)
from keras_seg_extras.data.dicom.reading import (HEADER_FIELDS, ConversionOptions,
                                                 dicom_to_uint8, header_fields, read_dicom)
from keras_seg_extras.data.dicom.writing import write_dicom, write_png

__all__ = [
    "CSV_COLUMNS", "ConversionOptions", "ConversionSummary", "HEADER_FIELDS",
    "convert_dicom_folder", "dicom_to_uint8", "find_dicom_files", "header_fields",
    "read_dicom", "write_dicom", "write_png",
]
