"""Checks of the image and mask files a tf.data pipeline reads, before and during training.

A corrupt, truncated or empty file makes TensorFlow's decoders fail with messages such as
"Invalid PNG data, size 2938" that name no file. The pipelines of this package therefore
(1) check every file before the first epoch, in parallel, and report every problem at once
(or leave the bad pairs out), and (2) name the file when one changes on disk after the
check (the size recorded at the check no longer matches).

The pre-check (``mode="structure"``, the default) reads each file whole (no pixel decoding)
and walks its structure to the end:

- PNG: signature, ``IHDR`` fields, every chunk's length and the CRC-32 of every critical
  chunk (``IHDR``, ``PLTE``, ``IDAT``, ``IEND``; libpng rejects a bad one, as TensorFlow
  does), at least one ``IDAT`` and the final ``IEND``. A truncated file loses ``IEND`` or
  ends inside a chunk; a flipped bit fails a CRC.
- JPEG: start-of-image marker, the segments up to the first scan (a frame header with
  positive sizes), and an end-of-image marker after the scan (a truncated file has none).
- GIF: signature, screen size and the final trailer byte; BMP: signature, header sizes and
  enough bytes for the rows the header declares.

It also rejects what TensorFlow would read *wrongly* for the role of the file: a mask must
be a PNG (a JPEG mask is lossy; GIF and BMP do not decode to one channel), a 16-bit mask is
rejected by ``segmentation_dataset`` (``decode_image`` divides it by 257, so label 1 becomes
0), and label maps that keep their ids must be grey PNGs of 8 or 16 bits (a palette or colour
PNG decodes to grey levels, not to its indices). The file extension is never used:
TensorFlow detects the format from the bytes, and so does the check.

``mode="decode"`` adds a full decode of every file that passed (slower: the cost of one
epoch of decoding) and catches what only decompression shows (a PNG whose compressed data
is corrupt under valid CRCs, damaged JPEG entropy data).

Results are cached per process by (path, size, modification time), so pipelines rebuilt for
every stage of a :class:`~keras_seg_extras.training.ProgressiveTrainer` check each file once.
"""

import concurrent.futures
import dataclasses
import logging
import os
import threading

import numpy as np

from keras_seg_extras._common import check_choice
from keras_seg_extras.data.image_formats import (  # noqa: F401  (public through kse.data)
    BadFile,
    FileRole,
    inspect_image_bytes,
    inspect_image_file,
)

_LOGGER = logging.getLogger("keras_seg_extras.data")
_MODES = ("structure", "decode", "off")
_ON_BAD_FILE = ("raise", "skip")
_PROGRESS_THRESHOLD = 1000  # files; larger checks show a progress bar by default


@dataclasses.dataclass
class FileCheckReport:
    """What a pipeline's file check found.

    Attributes:
        mode: the check mode (``"structure"``, ``"decode"`` or ``"off"``).
        checked: number of distinct files checked.
        bad_files: ``[(path, reason), ...]`` in input order.
        skipped: indices (in the input order) of the pairs left out with
            ``on_bad_file="skip"``; empty otherwise.

    Example:
        >>> from keras_seg_extras.data import FileCheckReport
        >>> report = FileCheckReport("structure", checked=2, bad_files=[("a.png", "empty file")])
        >>> report.lines()
        ['  a.png: empty file']
    """

    mode: str
    checked: int = 0
    bad_files: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)

    def lines(self):
        return [f"  {path}: {reason}" for path, reason in self.bad_files]


# ----------------------------------------------------------------------------- checks

_CACHE = {}
_CACHE_LOCK = threading.Lock()


def _stamp(path):
    try:
        stat = os.stat(path)
        return stat.st_size, stat.st_mtime_ns
    except OSError:
        return None


def _structure_reason(path, role):
    """The reason ``path`` is bad for ``role`` (None if good), cached by size and mtime."""
    stamp = _stamp(path)
    key = (path, role)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        inspect_image_file(path, role)
        reason = None
    except BadFile as error:
        reason = str(error)
    if stamp is not None:
        with _CACHE_LOCK:
            _CACHE[key] = (stamp, reason)
    return reason


def _decode_error(path, role):
    """TensorFlow's own error for decoding ``path`` as the pipeline does, or None."""
    import tensorflow as tf

    try:
        data = tf.io.read_file(path)
        if role.decoder == "png":
            tf.io.decode_png(data, channels=role.channels, dtype=tf.uint16)
        else:
            tf.io.decode_image(data, channels=role.channels, expand_animations=False)
    except tf.errors.OpError as error:
        message = str(error.message).split("}}")[-1].strip()
        return f"TensorFlow cannot decode it ({message.split(' [Op:')[0]})"
    return None


def _decode_reasons(paths, role):
    """Full TensorFlow decode of ``paths`` in parallel; reasons of the failures."""
    import tensorflow as tf

    def decode(position, path):
        data = tf.io.read_file(path)
        if role.decoder == "png":
            image = tf.io.decode_png(data, channels=role.channels, dtype=tf.uint16)
        else:
            image = tf.io.decode_image(data, channels=role.channels, expand_animations=False)
        return position, tf.shape(image)[0]

    decoded = (tf.data.Dataset.from_tensor_slices(paths).enumerate()
               .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .ignore_errors())
    good = np.zeros(len(paths), bool)
    for position, _ in decoded.as_numpy_iterator():
        good[position] = True
    return {paths[i]: _decode_error(paths[i], role) or "TensorFlow cannot decode it"
            for i in np.flatnonzero(~good)}


def _progress_bar(total, progress):
    show = total >= _PROGRESS_THRESHOLD if progress is None else bool(progress)
    if not show:
        return None
    import keras

    return keras.utils.Progbar(total, unit_name="file")


def check_files(paths, role, mode="structure", num_workers=None, progress=None):
    """Check image files for ``role`` in parallel: ``{path: reason}`` of the bad ones.

    Args:
        paths: file paths (str); duplicates are checked once.
        role: a :class:`FileRole`.
        mode: ``"structure"`` (read and walk every file, no pixel decoding), ``"decode"``
            (also decode every file with TensorFlow) or ``"off"``.
        num_workers: threads (default: 4 per CPU, at most 32).
        progress: show a progress bar (default: for 1,000 files or more).

    Returns:
        dict mapping each bad path to the reason, in the order of ``paths``.

    Example:
        >>> import os, tempfile
        >>> import cv2, numpy as np
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "mask.jpg")
        >>> _ = cv2.imwrite(path, np.zeros((4, 6), "uint8"))
        >>> from keras_seg_extras.data import FileRole, check_files
        >>> found = check_files([path, os.path.join(folder.name, "gone.png")],
        ...                     FileRole("mask", 1, png_only=True))
        >>> [(os.path.basename(p), reason) for p, reason in found.items()]
        [('mask.jpg', 'a mask must be a PNG; this is a JPEG (JPEG is lossy and changes label
        values)'), ('gone.png', 'missing (no such file)')]
        >>> folder.cleanup()
    """
    check_choice("check_files", "mode", mode, _MODES)
    if mode == "off":
        return {}
    unique = list(dict.fromkeys(paths))
    workers = num_workers or min(32, 4 * (os.cpu_count() or 1))
    bar = _progress_bar(len(unique), progress)
    reasons = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        chunk = max(1, min(256, len(unique) // (4 * workers) or 1))
        pieces = [unique[i:i + chunk] for i in range(0, len(unique), chunk)]
        work = lambda piece: [(p, _structure_reason(p, role)) for p in piece]  # noqa: E731
        for done, results in enumerate(pool.map(work, pieces)):
            reasons.update((p, r) for p, r in results if r is not None)
            if bar is not None:
                bar.update(min(len(unique), (done + 1) * chunk))
    if mode == "decode":
        reasons.update(_decode_reasons([p for p in unique if p not in reasons], role))
    return {p: reasons[p] for p in unique if p in reasons}


def _screen_pairs(owner, sources, mode, on_bad_file, progress=None, skippable=True):
    """Check the file columns of a paired dataset; raise or choose the pairs to keep.

    Args:
        owner: the pipeline's name, for messages.
        sources: ``[(argument, paths or None, role), ...]``; None for an in-memory array.
        mode: check mode (see :func:`check_files`).
        on_bad_file: ``"raise"``: one ``ValueError`` listing every bad file and why;
            ``"skip"``: leave out every pair with a bad file, log them and report them.
        progress: progress bar (None: automatic).
        skippable: the owner offers ``on_bad_file="skip"`` (said in the error).

    Returns:
        ``(keep, report)``: the indices of the pairs to use and a :class:`FileCheckReport`.
    """
    check_choice(owner, "check_files", mode, _MODES)
    check_choice(owner, "on_bad_file", on_bad_file, _ON_BAD_FILE)
    count = max(len(paths) for _, paths, _ in sources if paths is not None)
    report = FileCheckReport(mode)
    bad_pair = np.zeros(count, bool)
    for argument, paths, role in sources:
        if paths is None:
            continue
        reasons = check_files(paths, role, mode, progress=progress)
        report.checked += len(set(paths))
        for i, path in enumerate(paths):
            if path in reasons:
                bad_pair[i] = True
                report.bad_files.append((path, f"{argument} {role.name}: {reasons[path]}"))
    seen = set()
    report.bad_files = [item for item in report.bad_files
                        if not (item in seen or seen.add(item))]
    if report.bad_files and on_bad_file == "raise":
        hint = " (pass on_bad_file='skip' to leave them out)" if skippable else ""
        raise ValueError(f"{owner}: {len(report.bad_files)} unreadable file(s){hint}:\n"
                         + "\n".join(report.lines()))
    report.skipped = np.flatnonzero(bad_pair).tolist()
    if report.skipped:
        if len(report.skipped) == count:
            raise ValueError(f"{owner}: every one of the {count} pairs has a bad file:\n"
                             + "\n".join(report.lines()))
        _LOGGER.warning("%s: left out %d of %d pairs for %d bad file(s):\n%s", owner,
                       len(report.skipped), count, len(report.bad_files),
                       "\n".join(report.lines()))
    return np.flatnonzero(~bad_pair), report


# ----------------------------------------------------------------------------- during epochs


def _explain_failure(owner, index, sources):
    """Message for element ``index`` whose decoding failed (its files are inspected again).

    ``sources``: ``[(argument, paths or None, role), ...]`` as for ``_screen_pairs``.
    """
    found = []
    for argument, paths, role in sources:
        if paths is None:
            continue
        try:
            inspect_image_file(paths[index], role)
            reason = _decode_error(paths[index], role)
        except BadFile as error:
            reason = str(error)
        if reason:
            found.append(f"{paths[index]}: {argument} {role.name}: {reason}")
    if not found:
        names = ", ".join(paths[index] for _, paths, _ in sources if paths is not None)
        found = [f"element {index} ({names}) failed, but its files read and decode now "
                 "(a transient read error, or a file being rewritten?)"]
    return f"{owner}: " + "; ".join(found)


def _file_sizes(paths):
    """Byte sizes of ``paths`` now (-1 for a file that cannot be stat'ed), int64."""
    sizes = np.empty(len(paths), np.int64)
    for i, path in enumerate(paths):
        stamp = _stamp(path)
        sizes[i] = -1 if stamp is None else stamp[0]
    return sizes


def _read_checked(owner, paths, sizes, index):
    """``tf.io.read_file(paths[index])`` that fails naming the file if its size changed.

    The pipelines record each file's size when they are built (after the check). A file
    truncated, emptied or rewritten since then stops the epoch with an
    ``InvalidArgumentError`` that names it and both sizes, before the decoder can fail with
    a message that names no file. The cost is a gather and a comparison per file. A missing
    file is named by ``read_file`` itself; a corruption that keeps the size (bit flips in
    place) reaches the decoder unnamed: ``check_files="decode"`` finds it before training.

    Args:
        owner: the pipeline's name, for the message.
        paths: string tensor of the paths.
        sizes: int64 tensor of their sizes from ``_file_sizes``.
        index: scalar int64 tensor.
    """
    import tensorflow as tf

    path = tf.gather(paths, index)
    data = tf.io.read_file(path)
    size = tf.cast(tf.strings.length(data), tf.int64)
    expected = tf.gather(sizes, index)
    message = tf.strings.join([
        f"{owner}: a file changed on disk after the check (truncated or rewritten?): ", path,
        ": now ", tf.strings.as_string(size), " bytes, ", tf.strings.as_string(expected),
        " when the dataset was built"])
    check = tf.debugging.Assert(tf.equal(size, expected), [message])
    with tf.control_dependencies([check]):
        return tf.identity(data)
