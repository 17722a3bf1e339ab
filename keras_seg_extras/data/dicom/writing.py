"""Writing a NumPy image as a DICOM file (pydicom) and an 8-bit image as PNG, atomically (OpenCV).

``write_dicom`` makes Secondary Capture files like SIIM's (it builds the package's demo data
and the DICOM tests); ``write_png`` is how the folder conversion writes its outputs.
"""

import os
import re

import numpy as np

from keras_seg_extras._common import check_choice, check_number, fail
from keras_seg_extras.data.dicom.reading import _pair


def write_png(path, image):
    """Write an 8-bit image as PNG atomically: a temporary file in the same folder, renamed.

    A run killed while writing leaves at most ``<name>.partial``, never a truncated PNG.

    Example:
        >>> import os, tempfile
        >>> import cv2, numpy as np
        >>> from keras_seg_extras.data import write_png
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = write_png(os.path.join(folder, "masks", "a.png"), np.eye(3, dtype="uint8"))
        ...     read = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        >>> read.tolist()
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    import cv2

    path = os.fspath(path)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the image as PNG")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = path + ".partial"
    try:
        with open(partial, "wb") as handle:
            handle.write(encoded.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


_AGE = re.compile(r"^\d{3}[DWMY]$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def write_dicom(path, array, *, patient_id="ANONYMOUS", sex=None, age=None, view_position=None,
                sop_instance_uid=None, study_instance_uid=None, series_instance_uid=None,
                photometric_interpretation=None, modality="CR", window=None, bits_stored=None,
                compression=None):
    """Write a NumPy image as a DICOM file with pydicom (Secondary Capture, like SIIM's files).

    Args:
        path: output file.
        array: uint8 or uint16 (H, W) grayscale, or uint8 (H, W, 3) RGB. Written as is:
            the pixel values are the stored values.
        patient_id: PatientID (and PatientName).
        sex: None, ``"M"``, ``"F"`` or ``"O"`` (PatientSex).
        age: None, an int of years (0-999, written ``"038Y"``) or a DICOM age string
            such as ``"038Y"`` / ``"006M"`` (PatientAge).
        view_position: None or a string such as ``"PA"`` or ``"AP"`` (ViewPosition).
        sop_instance_uid: SOPInstanceUID; None generates one.
        study_instance_uid, series_instance_uid: None generates them.
        photometric_interpretation: ``"MONOCHROME2"`` (default for grayscale; high values
            bright), ``"MONOCHROME1"`` (high values dark) or ``"RGB"`` (3 channels).
        modality: Modality (``"CR"`` as in SIIM).
        window: None or ``(center, width)`` written as Window Center/Width.
        bits_stored: BitsStored (default 8 or 16 from the dtype; e.g. 12 for 12-bit data,
            whose values must then fit).
        compression: None (Explicit VR Little Endian) or ``"rle"`` (RLE Lossless, encoded by
            pydicom itself).

    Returns:
        The SOPInstanceUID written.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import pydicom
        >>> from keras_seg_extras.data import write_dicom
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "scan.dcm")
        ...     uid = write_dicom(path, np.zeros((4, 4), "uint8"), patient_id="17", sex="F",
        ...                       age=38, view_position="PA")
        ...     written = pydicom.dcmread(path)
        >>> written.PatientAge, written.ViewPosition, written.SOPInstanceUID == uid
        ('038Y', 'PA', True)
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import (UID, ExplicitVRLittleEndian, RLELossless,
                             SecondaryCaptureImageStorage, generate_uid)

    owner = "write_dicom"
    array = np.asarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        fail(owner, "array", f"array of dtype {array.dtype}", "must have dtype uint8 or uint16")
    colour = array.ndim == 3
    if not (array.ndim == 2 or (colour and array.shape[-1] == 3 and array.dtype == np.uint8)):
        fail(owner, "array", f"array of shape {array.shape} and dtype {array.dtype}",
             "must be (H, W) uint8/uint16 or (H, W, 3) uint8")
    if min(array.shape[:2]) < 1:
        fail(owner, "array", f"array of shape {array.shape}", "must not be empty")
    if photometric_interpretation is None:
        photometric_interpretation = "RGB" if colour else "MONOCHROME2"
    check_choice(owner, "photometric_interpretation", photometric_interpretation,
                 ("RGB",) if colour else ("MONOCHROME1", "MONOCHROME2"))
    if sex is not None:
        check_choice(owner, "sex", sex, ("M", "F", "O"))
    if age is not None:
        if isinstance(age, str):
            if not _AGE.match(age):
                fail(owner, "age", age, "must be years as an int or a DICOM age string "
                                        "such as '038Y'")
        else:
            age = f"{check_number(owner, 'age', age, minimum=0, maximum=999, integer=True):03d}Y"
    if view_position is not None and (not isinstance(view_position, str)
                                      or len(view_position) > 16):
        fail(owner, "view_position", view_position, "must be a short string such as 'PA'")
    check_choice(owner, "compression", compression, (None, "rle"))
    bits_allocated = 8 * array.dtype.itemsize
    if bits_stored is None:
        bits_stored = bits_allocated
    bits_stored = check_number(owner, "bits_stored", bits_stored, minimum=1,
                               maximum=bits_allocated, integer=True)
    if array.size and int(array.max()) >= 2**bits_stored:
        fail(owner, "array", f"maximum value {int(array.max())}",
             f"must fit in bits_stored={bits_stored}")
    uids = {}
    for name, value in (("sop_instance_uid", sop_instance_uid),
                        ("study_instance_uid", study_instance_uid),
                        ("series_instance_uid", series_instance_uid)):
        if value is not None and not (isinstance(value, str) and len(value) <= 64
                                      and _UID.match(value)):
            fail(owner, name, value, "must be a valid DICOM UID (digits and dots, <= 64 chars)")
        uids[name] = UID(value) if value is not None else generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = uids["sop_instance_uid"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = uids["sop_instance_uid"]
    dataset.StudyInstanceUID = uids["study_instance_uid"]
    dataset.SeriesInstanceUID = uids["series_instance_uid"]
    dataset.PatientID = str(patient_id)
    dataset.PatientName = str(patient_id)
    if sex is not None:
        dataset.PatientSex = sex
    if age is not None:
        dataset.PatientAge = age
    if view_position is not None:
        dataset.ViewPosition = view_position
    dataset.Modality = str(modality)
    dataset.ConversionType = "WSD"
    dataset.Rows, dataset.Columns = int(array.shape[0]), int(array.shape[1])
    dataset.SamplesPerPixel = 3 if colour else 1
    if colour:
        dataset.PlanarConfiguration = 0
    dataset.PhotometricInterpretation = photometric_interpretation
    dataset.BitsAllocated = bits_allocated
    dataset.BitsStored = bits_stored
    dataset.HighBit = bits_stored - 1
    dataset.PixelRepresentation = 0
    if window is not None:
        center, width = _pair(owner, "window", window)
        dataset.WindowCenter = check_number(owner, "window", center)
        dataset.WindowWidth = check_number(owner, "window", width, minimum=1)
    dataset.PixelData = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    if compression == "rle":
        dataset.compress(RLELossless, generate_instance_uid=False)
    dataset.save_as(os.fspath(path), enforce_file_format=True)
    return str(uids["sop_instance_uid"])
