"""Run-length encoding of binary masks: the SIIM pneumothorax format and the usual Kaggle one.

Both formats list runs of foreground pixels of the flattened mask as ``"start length"`` pairs
separated by spaces; they differ in how a start is counted:

- **SIIM** ("SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle competition
  (2019), section 2.1): pixels in column-major order (down the first column, then the next;
  the competition's ``rle2mask(...).T``), and each start is *relative*: the number of
  background pixels between the end of the previous run (or the first pixel, for the first
  run) and the start of this one. An empty mask is ``"-1"``. An image with several objects may
  appear on several rows; their masks are unioned.
- **Kaggle** (Carvana, Airbus, most others): absolute 1-based starts, pairs sorted and not
  overlapping, pixel order row-major (``order="C"``) or column-major (``order="F"``, e.g.
  Airbus ship detection). An empty mask is ``""``.

Example: the 3x3 mask with foreground at (row 0, col 0), (row 1, col 0) and (row 2, col 2)
is ``"0 2 6 1"`` in SIIM format (column-major pixels 0, 1 and 8), ``"1 2 9 1"`` in Kaggle
column-major and ``"1 1 4 1 9 1"`` in Kaggle row-major.

Encoding and decoding are vectorised NumPy (a 1024x1024 mask in milliseconds); any mask
round-trips exactly. A malformed string raises ``ValueError`` naming the image id.
"""

import math

import numpy as np

from keras_seg_extras._common import check_choice, fail

_MODULE = "kse.data.rle"


def _mask_2d(owner, mask):
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        fail(owner, "mask", mask.shape, "must be a 2-D (H, W) or (H, W, 1) array")
    return mask


def _runs(mask, order):
    """0-based starts and exclusive ends of the foreground runs of ``mask`` flattened in ``order``."""
    flat = np.asarray(mask).ravel(order=order) != 0
    padded = np.zeros(flat.size + 2, dtype=np.int8)
    padded[1:-1] = flat
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    return changes[0::2], changes[1::2]


def _join(starts, lengths):
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2] = starts
    pairs[1::2] = lengths
    return " ".join(map(str, pairs.tolist()))


def encode_siim(mask):
    """Encode a binary mask in the SIIM format.

    Args:
        mask: (H, W) or (H, W, 1) array; any non-zero value is foreground (SIIM used 255).

    Returns:
        The RLE string, ``"-1"`` for an empty mask.

    Example:
        >>> encode_siim(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]]))
        '0 2 6 1'
    """
    mask = _mask_2d(f"{_MODULE}.encode_siim", mask)
    starts, ends = _runs(mask, "F")
    if starts.size == 0:
        return "-1"
    previous_end = np.concatenate([[0], ends[:-1]])
    return _join(starts - previous_end, ends - starts)


def encode_kaggle(mask, order="C"):
    """Encode a binary mask in the Kaggle format (absolute 1-based starts).

    Args:
        mask: (H, W) or (H, W, 1) array; any non-zero value is foreground.
        order: ``"C"`` for row-major pixel order, ``"F"`` for column-major.

    Returns:
        The RLE string, ``""`` for an empty mask.

    Example:
        >>> encode_kaggle(np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]]), order="C")
        '1 1 4 1 9 1'
    """
    owner = f"{_MODULE}.encode_kaggle"
    check_choice(owner, "order", order, ("C", "F"))
    mask = _mask_2d(owner, mask)
    starts, ends = _runs(mask, order)
    return _join(starts + 1, ends - starts)


def _check_shape(owner, shape):
    try:
        height, width = (int(v) for v in shape)
        valid = height >= 1 and width >= 1 and all(float(v) == int(v) for v in shape)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        fail(owner, "shape", shape, "must be (height, width) with two positive integers")
    return height, width


def _strings(rle):
    if isinstance(rle, (list, tuple, np.ndarray)):
        return list(rle)
    return [rle]


_MAX_DIGITS = 18  # any longer integer exceeds every image (and int64)


def _malformed(owner, image_id, text, why):
    raise ValueError(f"{owner}: image {image_id!r}: malformed RLE, {why}; "
                     f"received {_preview(text)}.")


def _token(tokens, k):
    return f"token {k + 1} ({tokens[k]!r})"


def _first_bad_token(tokens, size):
    """Index and reason of the first token that is not an integer of at most ``size``."""
    for k, token in enumerate(tokens):
        digits = token[1:] if token[:1] in "+-" else token
        if not (digits.isascii() and digits.isdigit()):
            return k, "is not an integer"
        if len(digits) > _MAX_DIGITS or int(digits) > size:
            return k, f"exceeds the {size} pixels of the image"
    return None


def _parse(owner, image_id, text, empty_tokens, size):
    """Tokens and int64 values of one RLE string; None for an empty mask.

    Every value must be an ASCII integer of magnitude at most ``size`` (no offset, start or
    length can exceed the number of pixels), so nothing overflows int64 later.
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    if isinstance(text, bytes):
        text = text.decode("ascii", errors="replace")
    if not isinstance(text, str):
        raise ValueError(f"{owner}: image {image_id!r}: the RLE must be a string; "
                         f"received {type(text).__name__} {text!r}.")
    stripped = text.strip()
    if stripped in empty_tokens:
        return None
    tokens = stripped.split()
    values = None
    if stripped.isascii() and "_" not in stripped:  # int() accepts '1_000' and other digits
        try:
            values = np.array(tokens).astype(np.int64)
        except (ValueError, OverflowError):
            values = None
    if values is None or np.any(np.abs(values) > size):
        k, why = _first_bad_token(tokens, size)
        _malformed(owner, image_id, text, f"{_token(tokens, k)} {why}")
    if values.size % 2:
        _malformed(owner, image_id, text, f"an odd number of values ({values.size}): the last, "
                   f"{_token(tokens, values.size - 1)}, has no run length")
    return tokens, values


def _preview(text, limit=80):
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _paint(starts, ends, size):
    """Union of the runs [start, end) on a flat mask of ``size`` pixels."""
    change = (np.bincount(starts, minlength=size + 1)
              - np.bincount(ends, minlength=size + 1))
    return np.cumsum(change[:size]) > 0


def _check_runs(owner, image_id, tokens, lengths, ends, size, shape, text):
    """Lengths >= 1 and runs inside the image; token 2j + 1 is the length of run j."""
    short = np.flatnonzero(lengths < 1)
    if short.size:
        _malformed(owner, image_id, text,
                   f"{_token(tokens, 2 * short[0] + 1)}: a run length must be >= 1")
    beyond = np.flatnonzero(ends > size)
    if beyond.size:
        j = beyond[0]
        _malformed(owner, image_id, text,
                   f"{_token(tokens, 2 * j + 1)}: the run ends at pixel {int(ends[j])}, beyond "
                   f"the {size} pixels of a {shape[0]}x{shape[1]} mask")


def decode_siim(rle, shape, image_id=None):
    """Decode SIIM RLE string(s) into a binary mask.

    Args:
        rle: one string, or a list of strings (the rows of one image, unioned). ``"-1"``, an
            empty string, None or NaN (a missing CSV cell) mean an empty mask.
        shape: (height, width) of the image (1024, 1024 in SIIM).
        image_id: named in error messages.

    Returns:
        uint8 (height, width) mask with values in {0, 1}.

    Raises:
        ValueError: naming ``image_id`` for a non-integer token, an odd number of values, a
            negative offset, a length < 1 or a run past the end of the image.

    Example:
        >>> decode_siim("0 2 6 1", (3, 3))
        array([[1, 0, 0],
               [1, 0, 0],
               [0, 0, 1]], dtype=uint8)
    """
    owner = f"{_MODULE}.decode_siim"
    height, width = _check_shape(owner, shape)
    size = height * width
    all_starts, all_ends = [], []
    for text in _strings(rle):
        parsed = _parse(owner, image_id, text, ("", "-1"), size)
        if parsed is None:
            continue
        tokens, values = parsed
        offsets, lengths = values[0::2], values[1::2]
        negative = np.flatnonzero(offsets < 0)
        if negative.size:
            _malformed(owner, image_id, text, f"{_token(tokens, 2 * negative[0])}: an offset "
                       "must be >= 0 (\"-1\" alone marks an empty mask)")
        # Each value is <= size; only a string of billions of values could overflow the
        # int64 running sum, and it ends past the image anyway: clip it (float64) instead.
        if float(np.sum(values, dtype=np.float64)) > 2.0 ** 62:
            positions = np.minimum(np.cumsum(values, dtype=np.float64), size + 1).astype(np.int64)
        else:
            positions = np.cumsum(values)
        starts, ends = positions[0::2], positions[1::2]
        _check_runs(owner, image_id, tokens, lengths, ends, size, (height, width), text)
        all_starts.append(starts)
        all_ends.append(ends)
    if not all_starts:
        return np.zeros((height, width), dtype=np.uint8)
    flat = _paint(np.concatenate(all_starts), np.concatenate(all_ends), size)
    return flat.reshape((height, width), order="F").astype(np.uint8)


def decode_kaggle(rle, shape, order="C", image_id=None):
    """Decode Kaggle RLE string(s) (absolute 1-based starts) into a binary mask.

    Args:
        rle: one string or a list of strings (unioned). ``""``, None or NaN mean empty.
        shape: (height, width) of the image.
        order: ``"C"`` (row-major) or ``"F"`` (column-major) pixel order.
        image_id: named in error messages.

    Returns:
        uint8 (height, width) mask with values in {0, 1}.

    Raises:
        ValueError: naming ``image_id`` for a non-integer token, an odd number of values, a
            start < 1, a length < 1, a run past the end of the image, or pairs that are not
            sorted or overlap (Kaggle's evaluators reject those too).

    Example:
        >>> decode_kaggle("1 1 4 1 9 1", (3, 3), order="C")[0]
        array([1, 0, 0], dtype=uint8)
    """
    owner = f"{_MODULE}.decode_kaggle"
    check_choice(owner, "order", order, ("C", "F"))
    height, width = _check_shape(owner, shape)
    size = height * width
    all_starts, all_ends = [], []
    for text in _strings(rle):
        parsed = _parse(owner, image_id, text, ("",), size)
        if parsed is None:
            continue
        tokens, values = parsed
        starts, lengths = values[0::2] - 1, values[1::2]
        early = np.flatnonzero(starts < 0)
        if early.size:
            _malformed(owner, image_id, text, f"{_token(tokens, 2 * early[0])}: a start must "
                       "be >= 1 (starts are 1-based)")
        ends = starts + lengths
        _check_runs(owner, image_id, tokens, lengths, ends, size, (height, width), text)
        overlapping = np.flatnonzero(starts[1:] < ends[:-1])
        if overlapping.size:
            k = overlapping[0]
            _malformed(owner, image_id, text, f"{_token(tokens, 2 * k + 2)}: the run starting "
                       f"there is not after the previous run (ending at {int(ends[k])}); pairs "
                       "must be sorted and must not overlap")
        all_starts.append(starts)
        all_ends.append(ends)
    if not all_starts:
        return np.zeros((height, width), dtype=np.uint8)
    flat = _paint(np.concatenate(all_starts), np.concatenate(all_ends), size)
    return flat.reshape((height, width), order=order).astype(np.uint8)


def decode_rows(image_ids, rles, shape, format="siim", order="C"):
    """Decode a CSV's (image id, RLE) rows into one mask per image, unioning repeated ids.

    Args:
        image_ids: sequence of ids, one per row (e.g. SIIM's ``ImageId`` column).
        rles: sequence of RLE strings, one per row (SIIM's ``EncodedPixels``).
        shape: (height, width) shared by all images.
        format: ``"siim"`` or ``"kaggle"``.
        order: pixel order for ``format="kaggle"``.

    Returns:
        dict mapping each image id (in first-seen order) to its uint8 {0, 1} mask.

    Example:
        Image ``a`` has two rows (two objects), ``b`` one empty row (``-1``):

        >>> from keras_seg_extras.data import decode_rows
        >>> masks = decode_rows(["a", "b", "a"], ["0 2", "-1", "8 1"], (3, 3))
        >>> masks["a"].tolist(), int(masks["b"].sum())
        ([[1, 0, 0], [1, 0, 0], [0, 0, 1]], 0)
    """
    owner = f"{_MODULE}.decode_rows"
    check_choice(owner, "format", format, ("siim", "kaggle"))
    image_ids, rles = list(image_ids), list(rles)
    if len(image_ids) != len(rles):
        fail(owner, "rles", len(rles), f"must have one entry per image id ({len(image_ids)})")
    grouped = {}
    for image_id, text in zip(image_ids, rles):
        grouped.setdefault(image_id, []).append(text)
    if format == "siim":
        return {k: decode_siim(v, shape, image_id=k) for k, v in grouped.items()}
    return {k: decode_kaggle(v, shape, order=order, image_id=k) for k, v in grouped.items()}
