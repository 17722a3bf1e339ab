"""What TensorFlow's image decoders accept, read from the bytes without decoding pixels.

:func:`inspect_image_bytes` walks a PNG, JPEG, GIF or BMP file to its end (PNG chunk lengths
and critical-chunk CRCs, JPEG segments to the end-of-image marker, the GIF trailer, the BMP
row data) and raises :class:`BadFile` with the reason; ``_role_problem`` says why a
well-formed file would still be read wrongly as an image, a mask or a label map. Used by
:mod:`keras_seg_extras.data.file_check`.
"""

import dataclasses
import zlib

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_PNG_COLOURS = {0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA"}
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclasses.dataclass(frozen=True)
class FileRole:
    """How a pipeline decodes one kind of file: what counts as bad for it.

    Attributes:
        name: ``"image"``, ``"mask"`` or ``"label"`` (named in reports).
        channels: channels the pipeline decodes to (0: the file's own).
        keep_values: the pixel values are label ids to keep (no binarisation), so a file
            decoded to other values (palette, colour, bit depth below 8) is bad.
        png_only: only PNG is read correctly (masks and label maps).
        allow_16_bit: 16-bit PNGs keep their values (``decode_png(dtype=uint16)``);
            False where ``decode_image`` scales them to 8 bits.
        decoder: ``"image"`` (``tf.io.decode_image``, uint8) or ``"png"``
            (``tf.io.decode_png``, uint16): the decode of ``mode="decode"`` and of the
            re-check after a failure during an epoch.

    Example:
        The role of a binary mask in :func:`~keras_seg_extras.data.segmentation_dataset`:

        >>> from keras_seg_extras.data import FileRole
        >>> role = FileRole("mask", channels=1, png_only=True, allow_16_bit=False)
        >>> role.name, role.keep_values, role.decoder
        ('mask', False, 'image')
    """

    name: str
    channels: int = 0
    keep_values: bool = False
    png_only: bool = False
    allow_16_bit: bool = True
    decoder: str = "image"


class BadFile(Exception):
    """Raised by :func:`inspect_image_file` with the reason as its message.

    Example:
        >>> from keras_seg_extras.data import BadFile, inspect_image_bytes
        >>> try:
        ...     inspect_image_bytes(b"")
        ... except BadFile as error:
        ...     print(error)
        empty file (0 bytes)
    """


# ----------------------------------------------------------------------------- formats


def _u32(data, at):
    return int.from_bytes(data[at:at + 4], "big")


def _png(data):
    size = len(data)
    view = memoryview(data)
    pos, header, has_data = 8, None, False
    while True:
        if pos + 8 > size:
            raise BadFile(f"truncated PNG: {size} bytes, ends before the IEND chunk")
        length, kind = _u32(data, pos), bytes(data[pos + 4:pos + 8])
        end = pos + 12 + length
        if length >= 2 ** 31 or not kind.isalpha():
            raise BadFile(f"corrupt PNG: invalid chunk header at byte {pos}")
        if end > size:
            raise BadFile(f"truncated PNG: the {kind.decode()} chunk at byte {pos} needs "
                          f"{end} bytes, the file has {size}")
        if header is None and kind != b"IHDR":
            raise BadFile("corrupt PNG: the first chunk is not IHDR")
        if kind[0] < 97 and zlib.crc32(view[pos + 4:pos + 8 + length]) != _u32(data, end - 4):
            raise BadFile(f"corrupt PNG: CRC mismatch in the {kind.decode()} chunk at byte {pos}")
        if kind == b"IHDR":
            if length != 13:
                raise BadFile("corrupt PNG: IHDR is not 13 bytes")
            width, height = _u32(data, pos + 8), _u32(data, pos + 12)
            depth, colour = data[pos + 16], data[pos + 17]
            if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31):
                raise BadFile(f"corrupt PNG: size {width}x{height}")
            if depth not in _PNG_DEPTHS.get(colour, ()):
                raise BadFile(f"corrupt PNG: bit depth {depth} with colour type {colour}")
            header = {"format": "PNG", "height": height, "width": width, "depth": depth,
                      "colour": _PNG_COLOURS[colour]}
        has_data |= kind == b"IDAT"
        if kind == b"IEND":
            if not has_data:
                raise BadFile("corrupt PNG: no IDAT (image data) chunk")
            return header
        pos = end


def _jpeg(data):
    size, pos, frame = len(data), 2, None
    while True:
        while pos < size and data[pos] == 0xFF and pos + 1 < size and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > size:
            raise BadFile(f"truncated JPEG: {size} bytes, ends in the headers")
        if data[pos] != 0xFF:
            raise BadFile(f"corrupt JPEG: no segment marker at byte {pos}")
        marker = data[pos + 1]
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if marker == 0xD9:
            raise BadFile("corrupt JPEG: end-of-image marker before any image data")
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if length < 2 or pos + 2 + length > size:
            raise BadFile(f"truncated JPEG: the segment at byte {pos} runs past the end "
                          f"of the {size}-byte file")
        if marker in _JPEG_FRAMES:
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            if height == 0 or width == 0:
                raise BadFile(f"corrupt JPEG: frame size {width}x{height}")
            frame = {"format": "JPEG", "height": height, "width": width, "depth": 8,
                     "colour": "grey" if data[pos + 9] == 1 else "colour"}
        if marker == 0xDA:
            if frame is None:
                raise BadFile("corrupt JPEG: image data before a frame header")
            if data.rfind(b"\xff\xd9", pos) < 0:
                raise BadFile(f"truncated JPEG: {size} bytes, no end-of-image marker")
            return frame
        pos += 2 + length


def _gif(data):
    if len(data) < 13:
        raise BadFile(f"truncated GIF: {len(data)} bytes")
    width, height = (int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little"))
    if width == 0 or height == 0:
        raise BadFile(f"corrupt GIF: size {width}x{height}")
    if not data.rstrip(b"\x00").endswith(b";"):
        raise BadFile(f"truncated GIF: {len(data)} bytes, no trailer")
    return {"format": "GIF", "height": height, "width": width, "depth": 8, "colour": "colour"}


def _bmp(data):
    if len(data) < 30:
        raise BadFile(f"truncated BMP: {len(data)} bytes")
    offset = int.from_bytes(data[10:14], "little")
    width = int.from_bytes(data[18:22], "little", signed=True)
    height = int.from_bytes(data[22:26], "little", signed=True)
    bits = int.from_bytes(data[28:30], "little")
    if width <= 0 or height == 0:
        raise BadFile(f"corrupt BMP: size {width}x{height}")
    if bits not in (8, 24, 32):
        raise BadFile(f"BMP with {bits} bits per pixel: TensorFlow reads 8, 24 or 32")
    needed = offset + ((bits * width + 31) // 32) * 4 * abs(height)
    if len(data) < needed:
        raise BadFile(f"truncated BMP: {len(data)} bytes, its header declares {needed}")
    return {"format": "BMP", "height": abs(height), "width": width, "depth": 8,
            "colour": "grey" if bits == 8 else "colour"}


def inspect_image_bytes(data):
    """Format and header of an encoded image; raises :class:`BadFile` with the reason.

    Example:
        >>> import cv2, numpy as np
        >>> png = cv2.imencode(".png", np.zeros((4, 6), "uint8"))[1].tobytes()
        >>> from keras_seg_extras.data import inspect_image_bytes
        >>> inspect_image_bytes(png)
        {'format': 'PNG', 'height': 4, 'width': 6, 'depth': 8, 'colour': 'grey'}
        >>> inspect_image_bytes(png[:-12])  # the IEND chunk cut off
        Traceback (most recent call last):
        ...
        keras_seg_extras.data.image_formats.BadFile: truncated PNG: 67 bytes, ends before the
        IEND chunk
    """
    if len(data) == 0:
        raise BadFile("empty file (0 bytes)")
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _gif(data)
    if data.startswith(b"BM"):
        return _bmp(data)
    raise BadFile(f"not an image TensorFlow reads (PNG, JPEG, GIF or BMP): the file starts "
                  f"with {bytes(data[:8])!r}")


def _role_problem(header, role):
    """Why a well-formed file would still be read wrongly in ``role``, or None."""
    kind = header["format"]
    if role.png_only and kind != "PNG":
        why = ("JPEG is lossy and changes label values" if kind == "JPEG"
               else f"TensorFlow decodes {kind} only to 3 or 4 channels")
        return f"a {role.name} must be a PNG; this is a {kind} ({why})"
    if kind == "GIF" and role.channels not in (0, 3):
        return f"a GIF decodes only to 3 channels, the pipeline asks for {role.channels}"
    if kind == "BMP" and role.channels == 1:
        return "a BMP does not decode to 1 channel"
    if kind == "PNG" and header["depth"] == 16 and not role.allow_16_bit:
        return (f"a 16-bit PNG {role.name} is decoded to 8 bits (values divided by 257, "
                "so small label ids become 0); save it as an 8-bit PNG")
    if role.keep_values and kind == "PNG":
        if header["colour"] not in ("grey", "grey+alpha"):
            return (f"a {header['colour']} PNG {role.name} decodes to grey levels, not to its "
                    "label ids; save the ids as a grey PNG")
        if header["depth"] < 8:
            return (f"a {header['depth']}-bit PNG {role.name} is expanded to 8 bits "
                    "(values scaled to 0..255); save it as an 8-bit PNG")
    return None


def inspect_image_file(path, role):
    """Header of the file at ``path``; raises :class:`BadFile` if ``role`` cannot use it.

    Example:
        >>> import os, tempfile
        >>> import cv2, numpy as np
        >>> folder = tempfile.TemporaryDirectory()
        >>> path = os.path.join(folder.name, "mask.jpg")
        >>> _ = cv2.imwrite(path, np.zeros((4, 6), "uint8"))
        >>> from keras_seg_extras.data import FileRole, inspect_image_file
        >>> inspect_image_file(path, FileRole("image"))["format"]
        'JPEG'
        >>> inspect_image_file(path, FileRole("mask", 1, png_only=True))
        Traceback (most recent call last):
        ...
        keras_seg_extras.data.image_formats.BadFile: a mask must be a PNG; this is a JPEG (JPEG
        is lossy and changes label values)
        >>> folder.cleanup()
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise BadFile("missing (no such file)") from None
    except IsADirectoryError:
        raise BadFile("a directory, not a file") from None
    except OSError as error:
        raise BadFile(f"cannot be read ({type(error).__name__}: {error.strerror or error})") \
            from None
    header = inspect_image_bytes(data)
    problem = _role_problem(header, role)
    if problem:
        raise BadFile(problem)
    return header
