"""A folder of DICOM files to 8-bit PNGs: a process pool, a progress line, a CSV and a log.

Robust for a whole competition folder: several processes with a progress line on stderr;
outputs written to a temporary name and renamed atomically, so a killed run never leaves a
half-written PNG and a new run skips what is done; corrupt or unsupported files listed in
the summary, a log file and the CSV without stopping the others; a CSV of the header fields
(:data:`~keras_seg_extras.data.HEADER_FIELDS`) of every input file.
"""

import csv
import dataclasses
import datetime
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.data.dicom.reading import (HEADER_FIELDS, ConversionOptions,
                                                 dicom_to_uint8, header_fields, read_dicom)
from keras_seg_extras.data.dicom.writing import write_png

CSV_COLUMNS = ("dicom", "png", "status") + HEADER_FIELDS + ("error",)
"""Columns of the header CSV: ``dicom``, ``png``, ``status``, the header fields, ``error``."""


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

    Example:
        >>> from keras_seg_extras.data import ConversionSummary
        >>> summary = ConversionSummary(converted=2, skipped=1, failed=[("b.dcm", "not DICOM")])
        >>> print(summary)
        DICOM conversion: 2 converted, 1 skipped (already done), 1 failed
          FAILED b.dcm: not DICOM
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
    """Every file under ``input_dir`` (recursively) matching ``pattern``, sorted.

    Example:
        >>> import os, tempfile
        >>> from keras_seg_extras.data import find_dicom_files
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     for name in ("b.dcm", "a.dcm", "notes.txt"):
        ...         open(os.path.join(folder, name), "w").close()
        ...     found = [os.path.basename(path) for path in find_dicom_files(folder)]
        >>> found
        ['a.dcm', 'b.dcm']
    """
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
        A folder with one DICOM file and one file that is not DICOM:

        >>> import os, tempfile
        >>> import numpy as np
        >>> from keras_seg_extras.data import convert_dicom_folder, write_dicom
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     os.makedirs(os.path.join(folder, "in", "p1"))
        ...     _ = write_dicom(os.path.join(folder, "in", "p1", "a.dcm"), np.eye(8, dtype="uint8"))
        ...     with open(os.path.join(folder, "in", "broken.dcm"), "w") as handle:
        ...         _ = handle.write("not a DICOM file")
        ...     summary = convert_dicom_folder(os.path.join(folder, "in"),
        ...                                    os.path.join(folder, "png"), size=16, workers=1,
        ...                                    progress=False)
        ...     written = sorted(os.listdir(os.path.join(folder, "png", "p1")))
        >>> summary.converted, summary.skipped, len(summary.failed), written
        (1, 0, 1, ['a.png'])
        >>> [row["status"] for row in summary.rows]
        ['failed', 'converted']
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
