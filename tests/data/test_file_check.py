"""Bad image and mask files: named before training (all at once) or skipped, and mid-epoch."""

import io
import logging
import struct
import zlib

import albumentations as A
import numpy as np
import pytest
import tensorflow as tf

from keras_seg_extras.data import file_check, pipeline
from keras_seg_extras.data.class_sampler import class_sampled_dataset, index_class_presence
from keras_seg_extras.data.file_check import BadFile, FileRole, inspect_image_bytes

SIZE = 16
IMAGE = FileRole("image", 3)


def _png(array):
    return tf.io.encode_png(array).numpy()


def _jpeg(array):
    return tf.io.encode_jpeg(array).numpy()


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)


def _mask(seed):
    mask = np.zeros((SIZE, SIZE, 1), np.uint8)
    mask[seed % SIZE, :] = 1
    return mask


def _gif_bytes():
    """A 1x1 GIF89a written by hand (global palette of 2 colours, one image block)."""
    return (b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
            + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b";")


def _bmp_bytes(width=2, height=2):
    """A 24-bit BMP written by hand."""
    stride = (24 * width + 31) // 32 * 4
    pixels = bytes(stride * height)
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 0, 0, 0, 0)
    return header + info + pixels


def _flip_idat_bit(data):
    """Flip one bit inside the compressed data of the first IDAT chunk (its CRC then fails)."""
    at = data.index(b"IDAT") + 8
    out = bytearray(data)
    out[at] ^= 0x10
    return bytes(out)


# ----------------------------------------------------------------------------- the check


def test_good_files_of_every_format_pass_and_report_their_header():
    header = inspect_image_bytes(_png(_rgb(0)))
    assert (header["format"], header["height"], header["width"], header["colour"]) == (
        "PNG", SIZE, SIZE, "RGB")
    assert inspect_image_bytes(_jpeg(_rgb(0)))["format"] == "JPEG"
    assert inspect_image_bytes(_gif_bytes())["height"] == 1
    assert inspect_image_bytes(_bmp_bytes())["width"] == 2
    # TensorFlow reads the hand-written GIF and BMP too: the references are valid files.
    assert tf.io.decode_image(_gif_bytes(), channels=3, expand_animations=False).shape == (1, 1, 3)
    assert tf.io.decode_image(_bmp_bytes(), channels=3).shape == (2, 2, 3)


BAD_BYTES = {
    "empty": (b"", "empty file"),
    "png truncated in IDAT": (_png(_rgb(1))[:-30], "truncated PNG"),
    "png without IEND": (_png(_rgb(1))[:-12], "truncated PNG"),
    "png bit flip": (_flip_idat_bit(_png(_rgb(1))), "CRC mismatch in the IDAT chunk"),
    "png signature then garbage": (b"\x89PNG\r\n\x1a\n" + bytes(40), "corrupt PNG"),
    "jpeg truncated": (_jpeg(_rgb(2))[: len(_jpeg(_rgb(2))) // 2], "truncated JPEG"),
    "jpeg without EOI": (_jpeg(_rgb(2))[:-2], "no end-of-image marker"),
    "jpeg headers only": (_jpeg(_rgb(2))[:20], "truncated JPEG"),
    "gif truncated": (_gif_bytes()[:-3], "truncated GIF"),
    "bmp truncated": (_bmp_bytes()[:-4], "truncated BMP"),
    "text renamed .png": (b"patient,label\n1,0\n", "not an image TensorFlow reads"),
    "numpy file renamed .png": (b"\x93NUMPY\x01\x00", "not an image TensorFlow reads"),
}


@pytest.mark.parametrize("name", list(BAD_BYTES))
def test_each_kind_of_bad_file_is_caught_and_tensorflow_agrees(name):
    data, reason = BAD_BYTES[name]
    with pytest.raises(BadFile, match=reason):
        inspect_image_bytes(data)
    if name != "gif truncated":  # TensorFlow reads a GIF missing its trailer: stricter here
        with pytest.raises(tf.errors.InvalidArgumentError):
            tf.io.decode_image(data, channels=3, expand_animations=False)


def _folder(tmp_path, n=6, writer=_png):
    images, masks = [], []
    for i in range(n):
        image, mask = tmp_path / f"img_{i}.png", tmp_path / f"mask_{i}.png"
        image.write_bytes(writer(_rgb(i)))
        mask.write_bytes(_png(_mask(i)))
        images.append(str(image))
        masks.append(str(mask))
    return images, masks


def _break_files(images, masks, tmp_path):
    """Every kind of bad file, placed in both columns; returns {path: expected reason}."""
    png = open(images[0], "rb").read()
    faults = {
        images[1]: (b"", "empty file"),
        images[2]: (png[:len(png) // 2], "truncated PNG"),
        masks[3]: (b"GIF89a" + bytes(4), "truncated GIF"),
        masks[4]: (_jpeg(np.repeat(_mask(4) * 255, 3, axis=-1)), "must be a PNG; this is a JPEG"),
        images[5]: (b"not an image at all", "not an image TensorFlow reads"),
    }
    for path, (data, _) in faults.items():
        open(path, "wb").write(data)
    missing = str(tmp_path / "gone.png")
    images.append(missing)
    masks.append(masks[0])
    faults[missing] = (None, "missing")
    return {path: reason for path, (_, reason) in faults.items()}


def test_one_error_lists_every_bad_file_and_why(tmp_path):
    images, masks = _folder(tmp_path)
    expected = _break_files(images, masks, tmp_path)
    with pytest.raises(ValueError) as raised:
        pipeline.segmentation_dataset(images, masks, batch_size=2, image_size=SIZE)
    message = str(raised.value)
    assert message.startswith("kse.data.pipeline.segmentation_dataset: 6 unreadable file(s)")
    for path, reason in expected.items():
        line = next(line for line in message.splitlines() if line.strip().startswith(path))
        assert reason in line, line
    assert images[0] not in message


def test_skip_leaves_out_the_bad_pairs_logs_and_reports_them(tmp_path, caplog):
    images, masks = _folder(tmp_path)
    expected = _break_files(images, masks, tmp_path)
    with caplog.at_level(logging.WARNING, logger="keras_seg_extras.data"):
        ds = pipeline.segmentation_dataset(images, masks, batch_size=1, image_size=SIZE,
                                           shuffle=False, on_bad_file="skip")
    report = ds.file_report
    assert sorted(report.skipped) == [1, 2, 3, 4, 5, 6]
    assert {path for path, _ in report.bad_files} == set(expected)
    assert report.checked == 13  # 7 images (one missing) + 6 distinct masks
    assert all(path in caplog.text for path in expected)
    batches = list(ds)
    assert len(batches) == 1 and int(ds.cardinality()) == 1
    np.testing.assert_array_equal(batches[0][0][0].numpy(), _rgb(0))


def _png_with_bad_zlib(array):
    """Corrupt compressed data under valid CRCs: only a full decode can tell."""
    data = bytearray(_png(array))
    at = data.index(b"IDAT")
    length = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at + 4 + length] = bytes(length)  # zeros: not a valid zlib stream
    data[at + 4 + length:at + 8 + length] = struct.pack(
        ">I", zlib.crc32(bytes(data[at:at + 4 + length])))
    return bytes(data)


def test_modes_decode_catches_what_only_decompression_shows(tmp_path):
    images, masks = _folder(tmp_path, n=2)
    open(images[1], "wb").write(_png_with_bad_zlib(_rgb(3)))
    assert file_check.check_files(images, IMAGE, mode="structure") == {}
    found = file_check.check_files(images, IMAGE, mode="decode")
    assert list(found) == [images[1]] and "TensorFlow cannot decode it" in found[images[1]]
    assert file_check.check_files(images + ["nowhere.png"], IMAGE, mode="off") == {}
    with pytest.raises(ValueError, match="`check_files` must be one of"):
        pipeline.segmentation_dataset(images, masks, 1, SIZE, check_files="fast")
    with pytest.raises(ValueError, match="`on_bad_file` must be one of"):
        pipeline.segmentation_dataset(images, masks, 1, SIZE, on_bad_file="ignore")


def test_formats_read_wrongly_for_their_role_are_bad(tmp_path):
    paths = {}
    for name, data in {"rgb.png": _png(_rgb(0)), "jpeg_as.png": _jpeg(_rgb(0)),
                       "grey16.png": tf.io.encode_png(np.ones((4, 4, 1), np.uint16)).numpy(),
                       "grey.png": _png(_mask(1)), "gif.gif": _gif_bytes(),
                       "bmp.bmp": _bmp_bytes()}.items():
        paths[name] = str(tmp_path / name)
        open(paths[name], "wb").write(data)
    mask = FileRole("mask", 1, png_only=True, allow_16_bit=False)
    label = FileRole("label", 1, keep_values=True, png_only=True, decoder="png")
    assert set(file_check.check_files(list(paths.values()), mask)) == {
        paths["jpeg_as.png"], paths["grey16.png"], paths["gif.gif"], paths["bmp.bmp"]}
    bad_labels = file_check.check_files(list(paths.values()), label)
    assert "RGB PNG label decodes to grey levels" in bad_labels[paths["rgb.png"]]
    assert paths["grey16.png"] not in bad_labels and paths["grey.png"] not in bad_labels
    # Images: the format is read from the bytes, so a JPEG named .png is fine; GIF and BMP
    # decode to 3 channels only, not to 1.
    assert file_check.check_files(list(paths.values()), IMAGE) == {}
    grey = file_check.check_files(list(paths.values()), FileRole("image", 1))
    assert set(grey) == {paths["gif.gif"], paths["bmp.bmp"]}


def test_progress_bar_for_large_checks(tmp_path, capsys, monkeypatch):
    images, _ = _folder(tmp_path, n=3)
    monkeypatch.setattr(file_check, "_PROGRESS_THRESHOLD", 3)
    file_check.check_files(images, FileRole("image", 2))  # a new role: not cached
    assert "3/3" in capsys.readouterr().out
    file_check.check_files(images, IMAGE, progress=False)
    assert capsys.readouterr().out == ""


# ----------------------------------------------------------------------------- mid-epoch


@pytest.mark.parametrize("broken, repeat", [(2, False), (5, False), (0, True)],
                         ids=["middle", "last-element", "repeated"])
def test_a_file_that_breaks_after_the_check_is_named(tmp_path, broken, repeat):
    images, masks = _folder(tmp_path)
    ds = pipeline.segmentation_dataset(images, masks, batch_size=2, image_size=SIZE,
                                       shuffle=False, repeat=repeat)
    data = open(masks[broken], "rb").read()
    open(masks[broken], "wb").write(data[:len(data) // 2])
    with pytest.raises(tf.errors.OpError) as raised:
        for _ in ds.take(4):
            pass
    message = str(raised.value)
    assert "a file changed on disk after the check" in message
    assert f"{masks[broken]}: now {len(data) // 2} bytes, {len(data)} when" in message


def test_naming_keeps_the_stream_identical(tmp_path):
    images, masks = _folder(tmp_path)
    # Same order and same per-position augmentation seeds as the unchecked array pipeline.
    flip = A.HorizontalFlip(p=0.5)
    checked = pipeline.segmentation_dataset(images, masks, batch_size=4, image_size=SIZE,
                                            seed=3, augment=flip, repeat=True)
    arrays = pipeline.segmentation_dataset(
        np.stack([_rgb(i) for i in range(6)]), np.stack([_mask(i) for i in range(6)]),
        batch_size=4, image_size=SIZE, seed=3, augment=flip, repeat=True)
    assert checked.file_report.bad_files == [] and arrays.file_report is None
    for (a, b), (c, d) in zip(checked.take(4), arrays.take(4)):
        np.testing.assert_array_equal(a.numpy(), c.numpy())
        np.testing.assert_array_equal(b.numpy(), d.numpy())


# ----------------------------------------------------------------------------- class sampler


def _label_folder(tmp_path, n=6):
    images, labels = [], []
    for i in range(n):
        image, label = tmp_path / f"img_{i}.png", tmp_path / f"lab_{i}.png"
        image.write_bytes(_png(_rgb(i)))
        label.write_bytes(_png(np.full((SIZE, SIZE, 1), i % 3, np.uint8)))
        images.append(str(image))
        labels.append(str(label))
    return images, labels


def test_class_sampler_names_every_bad_file_or_skips_it(tmp_path, caplog):
    images, labels = _label_folder(tmp_path)
    open(labels[1], "wb").write(_jpeg(np.zeros((SIZE, SIZE, 3), np.uint8)))
    open(images[4], "wb").write(b"")
    open(labels[5], "wb").write(_png(np.zeros((SIZE, SIZE, 3), np.uint8)))  # colour label
    with pytest.raises(ValueError) as raised:
        class_sampled_dataset(images, labels, num_classes=3, batch_size=2, seed=0)
    message = str(raised.value)
    assert "class_sampled_dataset: 3 unreadable file(s)" in message
    assert f"{labels[1]}: labels label: a label must be a PNG; this is a JPEG" in message
    assert f"{images[4]}: images image: empty file" in message
    assert f"{labels[5]}: labels label: a RGB PNG label decodes to grey levels" in message
    with caplog.at_level(logging.WARNING, logger="keras_seg_extras.data"):
        ds = class_sampled_dataset(images, labels, num_classes=3, batch_size=2, seed=0,
                                   on_bad_file="skip")
    assert ds.file_report.skipped == [1, 4, 5] and labels[1] in caplog.text
    # The kept images 0, 2, 3 hold classes 0, 2, 0: class 1 (only in image 1 and 4) is gone.
    np.testing.assert_array_equal(ds.images_per_class, [2, 0, 1])
    features, _ = next(iter(ds))
    assert features["image"].shape == (2, SIZE, SIZE, 3)


def test_class_sampler_names_a_file_that_breaks_mid_epoch(tmp_path):
    images, labels = _label_folder(tmp_path, n=4)
    ds = class_sampled_dataset(images, labels, num_classes=3, batch_size=2, seed=0)
    for path in images:
        open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + bytes(30))
    with pytest.raises(tf.errors.OpError, match=r"(?s)class_sampled_dataset: a file changed on "
                                                r"disk after the check.*img_\d\.png"):
        for _ in ds.take(3):
            pass


def test_index_class_presence_names_labels_it_cannot_decode(tmp_path):
    _, labels = _label_folder(tmp_path, n=3)
    open(labels[2], "wb").write(b"")
    with pytest.raises(ValueError, match=r"(?s)index_class_presence: 1 unreadable file.*lab_2\.png: "
                                         r"labels label: empty file"):
        index_class_presence(labels, 3)
    # A file that passes the structure check but does not decode is named by the decode.
    open(labels[2], "wb").write(_png_with_bad_zlib(np.zeros((SIZE, SIZE, 1), np.uint8)))
    with pytest.raises(ValueError, match=r"index_class_presence: .*lab_2\.png: labels label: "
                                         r"TensorFlow cannot decode it"):
        index_class_presence(labels, 3)
