"""Reading a DICOM image and its contrast correction to 8 bits (pydicom; OpenCV for CLAHE/resize).

The SIIM-ACR pneumothorax work report (section 2.1) converts every DICOM file to a PNG with a
"contrast correction" before training. This module reads one file and does that correction:

- decoding with pydicom 3 (every transfer syntax its installed pixel handlers decode:
  uncompressed and RLE natively, JPEG 2000 and 8-bit JPEG baseline through Pillow,
  JPEG lossless and JPEG-LS through ``pylibjpeg`` + ``pylibjpeg-libjpeg``, which the
  ``recipes``/``test`` extras install);
- the modality LUT (rescale slope/intercept), then the VOI transform: the header's VOI LUT
  Sequence or Window Center/Width (DICOM PS3.3 C.11.2), an explicit window, or a min-max /
  percentile stretch where the header has none; MONOCHROME1 inversion; optional CLAHE
  (OpenCV); optional resize.

No TensorFlow is needed; pydicom and OpenCV are imported inside the functions.
"""

import dataclasses
import os

import numpy as np

from keras_seg_extras._common import check_choice, check_number, fail

HEADER_FIELDS = (
    "PatientID",
    "PatientSex",
    "PatientAge",
    "ViewPosition",
    "SOPInstanceUID",
    "Rows",
    "Columns",
    "PhotometricInterpretation",
    "BitsStored",
    "Modality",
    "TransferSyntaxUID",
)
"""Header fields written to the CSV, in this order, after ``dicom``, ``png``, ``status``."""


_WINDOWINGS = ("auto", "header", "minmax", "percentile")
_FALLBACKS = ("percentile", "minmax")


@dataclasses.dataclass(frozen=True)
class ConversionOptions:
    """How one DICOM image becomes an 8-bit image (see :func:`dicom_to_uint8`).

    Attributes:
        windowing: ``"auto"`` (header VOI LUT or window when present, else ``fallback``),
            ``"header"`` (the header's VOI LUT or window; an error when it has none),
            ``"minmax"`` or ``"percentile"`` (ignore the header's window).
        window: an explicit ``(center, width)`` (linear, DICOM C.11.2.1.2.1) that overrides
            ``windowing``; values are in modality units (after rescale slope/intercept).
        fallback: ``"percentile"`` or ``"minmax"``, used by ``"auto"`` without a header window.
        percentiles: ``(low, high)`` percentiles mapped to 0 and 255 by ``"percentile"``.
        invert_monochrome1: map MONOCHROME1 (bright = low values) to the usual
            MONOCHROME2 look (bright = high values).
        clahe: apply OpenCV's contrast-limited adaptive histogram equalisation to the 8-bit
            image (on the L channel of Lab for colour images).
        clahe_clip_limit: CLAHE's clip limit.
        clahe_tile_grid_size: CLAHE's ``(rows, columns)`` of tiles.
        size: None (keep), an int (square side) or ``(height, width)`` of the output.

    Example:
        >>> from keras_seg_extras.data import ConversionOptions
        >>> options = ConversionOptions(windowing="percentile", percentiles=(1, 99), size=256)
        >>> options.percentiles, options.size
        ((1, 99), 256)
        >>> ConversionOptions(window=(40, 0))
        Traceback (most recent call last):
        ...
        ValueError: ConversionOptions: `window width` must be > 0; received 0.
    """

    windowing: str = "auto"
    window: tuple = None
    fallback: str = "percentile"
    percentiles: tuple = (0.5, 99.5)
    invert_monochrome1: bool = True
    clahe: bool = False
    clahe_clip_limit: float = 2.0
    clahe_tile_grid_size: tuple = (8, 8)
    size: object = None

    def __post_init__(self):
        owner = "ConversionOptions"
        check_choice(owner, "windowing", self.windowing, _WINDOWINGS)
        check_choice(owner, "fallback", self.fallback, _FALLBACKS)
        if self.window is not None:
            if len(tuple(self.window)) != 2:
                fail(owner, "window", self.window, "must be None or (center, width)")
            check_number(owner, "window width", self.window[1], minimum=0, min_inclusive=False)
            check_number(owner, "window center", self.window[0])
        low, high = _pair(owner, "percentiles", self.percentiles)
        check_number(owner, "percentiles", low, minimum=0, maximum=100)
        check_number(owner, "percentiles", high, minimum=0, maximum=100)
        if not low < high:
            fail(owner, "percentiles", self.percentiles, "must be (low, high) with low < high")
        check_number(owner, "clahe_clip_limit", self.clahe_clip_limit, minimum=0,
                     min_inclusive=False)
        rows, cols = _pair(owner, "clahe_tile_grid_size", self.clahe_tile_grid_size)
        check_number(owner, "clahe_tile_grid_size", rows, minimum=1, integer=True)
        check_number(owner, "clahe_tile_grid_size", cols, minimum=1, integer=True)
        _output_size(self.size)


def _pair(owner, argument, value):
    try:
        pair = tuple(value)
    except TypeError:
        fail(owner, argument, value, "must be a pair of numbers")
    if len(pair) != 2:
        fail(owner, argument, value, "must be a pair of numbers")
    return pair


def _output_size(size):
    """Normalise ``size`` (None, int or (height, width)) to None or (height, width)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    height, width = _pair("dicom conversion", "size", size)
    for value in (height, width):
        check_number("dicom conversion", "size", value, minimum=1, integer=True)
    return int(height), int(width)


def read_dicom(path, stop_before_pixels=False):
    """Read a DICOM file with pydicom; raise ``ValueError`` naming the file if it is not one.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_seg_extras.data import write_dicom
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "scan.dcm")
        >>> pixels = (np.arange(16, dtype="uint16") * 100).reshape(4, 4)  # 12-bit values
        >>> _ = write_dicom(path, pixels, patient_id="17", sex="F", age=38, window=(750, 1000),
        ...                 bits_stored=12)
        >>> from keras_seg_extras.data import read_dicom
        >>> dataset = read_dicom(path)
        >>> dataset.PatientAge, dataset.Rows, dataset.BitsStored
        ('038Y', 4, 12)
        >>> folder.cleanup()
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as error:
        raise ValueError(f"{path}: not a DICOM file ({error})") from error


def header_fields(dataset):
    """The :data:`HEADER_FIELDS` of a dataset as a dict of strings ('' when absent).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_seg_extras.data import write_dicom
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "scan.dcm")
        >>> pixels = (np.arange(16, dtype="uint16") * 100).reshape(4, 4)  # 12-bit values
        >>> _ = write_dicom(path, pixels, patient_id="17", sex="F", age=38, window=(750, 1000),
        ...                 bits_stored=12)
        >>> from keras_seg_extras.data import header_fields, read_dicom
        >>> fields = header_fields(read_dicom(path, stop_before_pixels=True))
        >>> fields["PatientID"], fields["PatientSex"], fields["BitsStored"], fields["ViewPosition"]
        ('17', 'F', '12', '')
        >>> folder.cleanup()
    """
    row = {}
    for name in HEADER_FIELDS:
        if name == "TransferSyntaxUID":
            meta = getattr(dataset, "file_meta", None)
            value = meta.get("TransferSyntaxUID", "") if meta is not None else ""
        else:
            value = dataset.get(name, "")
        row[name] = "" if value is None else str(value)
    return row


def _first(value):
    """Window Center/Width may hold several values (alternative views): take the first."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])
    return float(value)


def _linear_window(values, center, width, exact=False):
    """DICOM PS3.3 C.11.2.1.2.1 (LINEAR) / C.11.2.1.3.2 (LINEAR_EXACT), output in [0, 1]."""
    if exact:
        if width <= 0:
            raise ValueError(f"window width must be > 0 for LINEAR_EXACT; received {width}")
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width < 1:
        raise ValueError(f"window width must be >= 1 for LINEAR; received {width}")
    if width == 1:
        return (values > center - 0.5).astype("float64")
    return np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)


def _sigmoid_window(values, center, width):
    """DICOM PS3.3 C.11.2.1.3.1 (SIGMOID), output in [0, 1]."""
    if width <= 0:
        raise ValueError(f"window width must be > 0 for SIGMOID; received {width}")
    return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))


def _stretch(values, low, high):
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        return np.zeros_like(values, dtype="float64")  # a constant image stays black
    return np.clip((values - low) / (high - low), 0.0, 1.0)


def _voi_unit(values, dataset, options):
    """Map modality values to [0, 1] with the configured VOI transform."""
    if options.window is not None:
        return _linear_window(values, float(options.window[0]), float(options.window[1]))
    mode = options.windowing
    if mode in ("auto", "header"):
        lut = dataset.get("VOILUTSequence")
        if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
            from pydicom.pixels import apply_voi

            integral = np.round(values)
            if np.array_equal(integral, values):
                values = integral.astype("int64")
            mapped = apply_voi(values, dataset).astype("float64")
            bits = int(lut[0].LUTDescriptor[2])
            return np.clip(mapped / float(2**bits - 1), 0.0, 1.0)
        if dataset.get("WindowCenter") is not None and dataset.get("WindowWidth") is not None:
            center = _first(dataset.WindowCenter)
            width = _first(dataset.WindowWidth)
            function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            if function == "SIGMOID":
                return _sigmoid_window(values, center, width)
            if function not in ("LINEAR", "LINEAR_EXACT"):
                raise ValueError(f"unsupported VOI LUT Function {function!r}")
            return _linear_window(values, center, width, exact=function == "LINEAR_EXACT")
        if mode == "header":
            raise ValueError("windowing='header' but the file has neither a VOI LUT Sequence "
                             "nor Window Center/Width")
        mode = options.fallback
    if mode == "minmax":
        return _stretch(values, float(values.min()), float(values.max()))
    low, high = np.percentile(values, options.percentiles)
    return _stretch(values, float(low), float(high))


def _finish(image, options):
    """CLAHE and resize on an 8-bit image (H, W) or (H, W, 3) RGB."""
    if not options.clahe and options.size is None:
        return image
    import cv2

    if options.clahe:
        clahe = cv2.createCLAHE(clipLimit=float(options.clahe_clip_limit),
                                tileGridSize=tuple(int(v) for v in options.clahe_tile_grid_size))
        if image.ndim == 2:
            image = clahe.apply(np.ascontiguousarray(image))
        else:
            lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
            lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
            image = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    size = _output_size(options.size)
    if size is not None and size != image.shape[:2]:
        height, width = size
        shrinking = height * width < image.shape[0] * image.shape[1]
        image = cv2.resize(image, (width, height),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


def dicom_to_uint8(source, options=None, **kwargs):
    """Decode a DICOM image and apply the contrast correction; return 8-bit pixels.

    Steps (grayscale): stored values -> modality LUT (Rescale Slope/Intercept or Modality
    LUT Sequence, pydicom's ``apply_modality_lut``) -> VOI transform to [0, 1] -> for
    MONOCHROME1, ``1 - v`` -> ``round(255 v)`` -> optional CLAHE -> optional resize.
    The VOI transform is, in order of precedence: ``window=(c, w)`` given by the caller
    (linear: ``clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)``, DICOM PS3.3 C.11.2.1.2.1);
    the header's VOI LUT Sequence (pydicom's ``apply_voi``, divided by 2^bits - 1 of its
    descriptor); the header's Window Center/Width with its VOI LUT Function (LINEAR,
    LINEAR_EXACT, SIGMOID; first value when several are given); the fallback, a min-max
    or percentile stretch ``clip((x - lo) / (hi - lo), 0, 1)``.

    Colour images (3 samples per pixel; pydicom converts YBR to RGB) are stretched min-max
    unless they are already 8-bit, and CLAHE works on the L channel of Lab.

    Args:
        source: a path or a ``pydicom.Dataset``.
        options: a :class:`ConversionOptions`; or give its fields as keyword arguments.

    Returns:
        uint8 array (H, W) for grayscale or (H, W, 3) RGB.

    Raises:
        ValueError: not a DICOM file, no pixel data, several frames, or a window the
            header or caller gives that the DICOM rules reject.
        RuntimeError / NotImplementedError: pydicom has no handler that decodes the
            transfer syntax (its message names the packages that would).

    Example:
        The header's window (center 750, width 1000) maps 250..1250 to 0..255:

        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_seg_extras.data import write_dicom
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "scan.dcm")
        >>> pixels = (np.arange(16, dtype="uint16") * 100).reshape(4, 4)  # 12-bit values
        >>> _ = write_dicom(path, pixels, patient_id="17", sex="F", age=38, window=(750, 1000),
        ...                 bits_stored=12)
        >>> from keras_seg_extras.data import dicom_to_uint8
        >>> dicom_to_uint8(path)
        array([[  0,   0,   0,  13],
               [ 38,  64,  89, 115],
               [140, 166, 191, 217],
               [242, 255, 255, 255]], dtype=uint8)
        >>> dicom_to_uint8(path, windowing="minmax")[0]  # ignore the header's window
        array([ 0, 17, 34, 51], dtype=uint8)
        >>> folder.cleanup()
    """
    if options is None:
        options = ConversionOptions(**kwargs)
    elif kwargs:
        options = dataclasses.replace(options, **kwargs)
    dataset = read_dicom(source) if isinstance(source, (str, os.PathLike)) else source
    if "PixelData" not in dataset:
        raise ValueError("the file has no Pixel Data element")
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"multi-frame images ({frames} frames) are not converted to PNG")
    pixels = dataset.pixel_array
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)

    if samples == 1 and pixels.ndim == 2:
        from pydicom.pixels import apply_modality_lut

        values = np.asarray(apply_modality_lut(pixels, dataset), dtype="float64")
        unit = _voi_unit(values, dataset, options)
        if photometric == "MONOCHROME1" and options.invert_monochrome1:
            unit = 1.0 - unit
        image = np.round(unit * 255.0).astype("uint8")
    elif samples == 3 and pixels.ndim == 3 and pixels.shape[-1] == 3:
        if pixels.dtype == np.uint8:
            image = pixels
        else:
            values = pixels.astype("float64")
            image = np.round(_stretch(values, values.min(), values.max()) * 255.0)
            image = image.astype("uint8")
    else:
        raise ValueError(f"unsupported pixel layout: SamplesPerPixel={samples}, "
                         f"array shape {pixels.shape}, {photometric}")
    return _finish(image, options)

