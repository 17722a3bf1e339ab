"""DICOM to 8-bit PNG conversion with contrast correction, and writing DICOM files from arrays.

The SIIM-ACR pneumothorax report (paper 003, section 2.1) converts every DICOM file to a
PNG with a "contrast correction" before training and keeps the patient fields (sex, age,
view position) next to the images. This module does that, for a whole folder, robustly:

- decoding with pydicom 3 (every transfer syntax its installed pixel handlers decode:
  uncompressed and RLE natively, JPEG 2000 and 8-bit JPEG baseline through Pillow,
  JPEG lossless and JPEG-LS through ``pylibjpeg`` + ``pylibjpeg-libjpeg``, which the
  ``recipes``/``test`` extras install); a file no handler decodes is reported, not fatal;
- the modality LUT (rescale slope/intercept), then the VOI transform: the header's VOI LUT
  Sequence or Window Center/Width (DICOM PS3.3 C.11.2), an explicit window, or a min-max /
  percentile stretch where the header has none; MONOCHROME1 inversion; optional CLAHE
  (OpenCV); optional resize;
- several processes with a progress line on stderr; outputs written to a temporary name and
  renamed atomically, so a killed run never leaves a half-written PNG and a new run skips
  what is done; corrupt or unsupported files listed in the summary, a log file and the CSV
  without stopping the others;
- a CSV of header fields (PatientID, PatientSex, PatientAge, ViewPosition, SOPInstanceUID,
  Rows, Columns, PhotometricInterpretation, ...) for every input file.

No TensorFlow is needed. pydicom and OpenCV are imported inside the functions.

Example:
    >>> from keras_seg_extras.data import dicom
    >>> summary = dicom.convert_dicom_folder("dicom-images-train", "png-train",
    ...                                      size=512, clahe=True, workers=4)
    >>> summary.converted, summary.skipped, len(summary.failed)
"""

import csv
import dataclasses
import datetime
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

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

CSV_COLUMNS = ("dicom", "png", "status") + HEADER_FIELDS + ("error",)

WINDOWINGS = ("auto", "header", "minmax", "percentile")
FALLBACKS = ("percentile", "minmax")


# ----------------------------------------------------------------------------- options


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
        check_choice(owner, "windowing", self.windowing, WINDOWINGS)
        check_choice(owner, "fallback", self.fallback, FALLBACKS)
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
        output_size(self.size)


def _pair(owner, argument, value):
    try:
        pair = tuple(value)
    except TypeError:
        fail(owner, argument, value, "must be a pair of numbers")
    if len(pair) != 2:
        fail(owner, argument, value, "must be a pair of numbers")
    return pair


def output_size(size):
    """Normalise ``size`` (None, int or (height, width)) to None or (height, width)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    height, width = _pair("dicom conversion", "size", size)
    for value in (height, width):
        check_number("dicom conversion", "size", value, minimum=1, integer=True)
    return int(height), int(width)


# ----------------------------------------------------------------------------- one image


def read_dicom(path, stop_before_pixels=False):
    """Read a DICOM file with pydicom; raise ``ValueError`` naming the file if it is not one."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=stop_before_pixels)
    except InvalidDicomError as error:
        raise ValueError(f"{path}: not a DICOM file ({error})") from error


def header_fields(dataset):
    """The :data:`HEADER_FIELDS` of a dataset as a dict of strings ('' when absent)."""
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
    size = output_size(options.size)
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
        >>> image = dicom_to_uint8("chest.dcm", clahe=True, size=512)
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


def write_png(path, image):
    """Write an 8-bit image as PNG atomically: a temporary file in the same folder, renamed.

    A run killed while writing leaves at most ``<name>.partial``, never a truncated PNG.
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


# ----------------------------------------------------------------------------- folders


@dataclasses.dataclass
class ConversionSummary:
    """What :func:`convert_dicom_folder` did.

    Attributes:
        converted: number of PNGs written in this run.
        skipped: number of inputs whose PNG already existed (not rewritten).
        failed: list of ``(dicom_path, reason)`` for corrupt or unsupported files.
        csv_path: the header CSV (one row per input, in input order).
        log_path: the log file (one line per failure, appended to across runs).
        rows: the CSV rows as dicts.
    """

    converted: int = 0
    skipped: int = 0
    failed: list = dataclasses.field(default_factory=list)
    csv_path: str = None
    log_path: str = None
    rows: list = dataclasses.field(default_factory=list)

    def __str__(self):
        lines = [f"DICOM conversion: {self.converted} converted, {self.skipped} skipped "
                 f"(already done), {len(self.failed)} failed"]
        for path, reason in self.failed:
            lines.append(f"  FAILED {path}: {reason}")
        if self.csv_path:
            lines.append(f"  header CSV: {self.csv_path}")
        if self.failed and self.log_path:
            lines.append(f"  log: {self.log_path}")
        return "\n".join(lines)


def find_dicom_files(input_dir, pattern="*.dcm"):
    """Every file under ``input_dir`` (recursively) matching ``pattern``, sorted."""
    import pathlib

    root = pathlib.Path(input_dir)
    if not root.is_dir():
        fail("convert_dicom_folder", "input_dir", os.fspath(input_dir), "must be a folder")
    return sorted(str(p) for p in root.rglob(pattern) if p.is_file())


def _png_path(dicom_path, input_dir, output_dir):
    relative = os.path.relpath(dicom_path, input_dir)
    stem, _ = os.path.splitext(relative)
    return os.path.join(output_dir, stem + ".png")


def _convert_one(task):
    """Worker: convert one file, never raise; return the CSV row."""
    dicom_path, png_path, options, overwrite = task
    row = {name: "" for name in CSV_COLUMNS}
    row["dicom"], row["png"] = dicom_path, png_path
    try:
        done = os.path.exists(png_path) and not overwrite
        dataset = read_dicom(dicom_path, stop_before_pixels=done)
        row.update(header_fields(dataset))
        if done:
            row["status"] = "skipped"
            return row
        write_png(png_path, dicom_to_uint8(dataset, options))
        row["status"] = "converted"
    except Exception as error:  # one bad file must not stop the others
        message = " ".join(str(error).split())
        row["status"] = "failed"
        row["error"] = f"{type(error).__name__}: {message}"
        row["png"] = ""
    return row


class _Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total, enabled, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = 0.0
        self.finished = False

    def update(self, done, failed, force=False):
        if not self.enabled or self.finished:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        width = 30
        filled = int(width * done / max(self.total, 1))
        rate = done / max(now - self.start, 1e-9)
        left = (self.total - done) / rate if rate > 0 else 0.0
        self.stream.write(f"\rDICOM -> PNG [{'#' * filled}{'.' * (width - filled)}] "
                          f"{done}/{self.total} {failed} failed, {rate:.1f} files/s, "
                          f"ETA {left:.0f}s ")
        if done >= self.total:
            self.finished = True
            self.stream.write("\n")
        self.stream.flush()


def _write_csv(path, rows):
    partial = path + ".partial"
    with open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(partial, path)


def convert_dicom_folder(input_dir, output_dir, *, csv_path=None, log_path=None, workers=None,
                         overwrite=False, progress=True, pattern="*.dcm", files=None,
                         **options):
    """Convert every DICOM file under ``input_dir`` to an 8-bit PNG under ``output_dir``.

    The PNG of ``input_dir/a/b.dcm`` is ``output_dir/a/b.png``. An existing PNG is skipped
    (its header is still read for the CSV) unless ``overwrite``: a run that was interrupted
    resumes where it stopped, and because each PNG is written under a temporary name and
    renamed, every PNG present is complete. A file that fails (not DICOM, truncated, no
    pixel data, a transfer syntax no installed pydicom handler decodes, several frames)
    is listed in the returned summary, appended to the log and marked ``failed`` in the
    CSV with the reason; the other files are converted all the same.

    Args:
        input_dir: folder searched recursively for ``pattern``.
        output_dir: folder for the PNGs (created).
        csv_path: header CSV; default ``output_dir/dicom_headers.csv``. Columns
            :data:`CSV_COLUMNS`: ``dicom``, ``png``, ``status`` (converted / skipped /
            failed), the :data:`HEADER_FIELDS`, ``error``.
        log_path: failure log; default ``output_dir/dicom_conversion.log``.
        workers: processes (``concurrent.futures.ProcessPoolExecutor``); None uses the CPU
            count, 1 converts in this process.
        overwrite: rewrite PNGs that exist.
        progress: show a progress line on stderr.
        pattern: glob for input files (``"*"`` for files without an extension).
        files: an explicit list of DICOM paths under ``input_dir`` instead of searching.
        **options: fields of :class:`ConversionOptions` (windowing, window, fallback,
            percentiles, invert_monochrome1, clahe, clahe_clip_limit,
            clahe_tile_grid_size, size).

    Returns:
        A :class:`ConversionSummary`; ``print(summary)`` lists the failures.

    Example:
        >>> summary = convert_dicom_folder("dicom-images-train", "png", size=256, workers=2)
        >>> print(summary)
    """
    conversion = ConversionOptions(**options)
    if workers is not None:
        workers = check_number("convert_dicom_folder", "workers", workers, minimum=1,
                               integer=True)
    input_dir, output_dir = os.fspath(input_dir), os.fspath(output_dir)
    if files is None:
        paths = find_dicom_files(input_dir, pattern)
    else:
        paths = [os.fspath(p) for p in files]
        root = os.path.abspath(input_dir)
        for path in paths:
            if os.path.commonpath([root, os.path.abspath(path)]) != root:
                fail("convert_dicom_folder", "files", path, f"must lie under input_dir {root}")
    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.fspath(csv_path) if csv_path else os.path.join(output_dir, "dicom_headers.csv")
    log_path = os.fspath(log_path) if log_path else os.path.join(output_dir,
                                                                  "dicom_conversion.log")
    tasks = [(p, _png_path(p, input_dir, output_dir), conversion, bool(overwrite))
             for p in paths]
    bar = _Progress(len(tasks), bool(progress))
    rows, failed_count = {}, 0
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            row = _convert_one(task)
            rows[task[0]] = row
            failed_count += row["status"] == "failed"
            bar.update(len(rows), failed_count)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            futures = [pool.submit(_convert_one, task) for task in tasks]
            for future in as_completed(futures):
                row = future.result()
                rows[row["dicom"]] = row
                failed_count += row["status"] == "failed"
                bar.update(len(rows), failed_count)
    bar.update(len(rows), failed_count, force=True)

    ordered = [rows[p] for p in paths]
    summary = ConversionSummary(csv_path=csv_path, log_path=log_path, rows=ordered)
    for row in ordered:
        if row["status"] == "converted":
            summary.converted += 1
        elif row["status"] == "skipped":
            summary.skipped += 1
        else:
            summary.failed.append((row["dicom"], row["error"]))
    _write_csv(csv_path, ordered)
    if summary.failed:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        with open(log_path, "a") as log:
            for path, reason in summary.failed:
                log.write(f"{stamp}\tFAILED\t{path}\t{reason}\n")
    return summary


# ----------------------------------------------------------------------------- writing


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
        >>> write_dicom("img.dcm", image_uint8, patient_id="17", sex="F", age=38,
        ...             view_position="PA")
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
