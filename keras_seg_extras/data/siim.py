"""The SIIM-ACR Pneumothorax competition's files: ``train-rle.csv``, masks, submissions, a demo.

The competition ("SIIM-ACR Pneumothorax Segmentation", work report of SIIM's Kaggle
competition, 2019) gives DICOMs under ``dicom-images-train/<study>/<series>/<uid>.dcm`` and
``dicom-images-test/...``, and ``train-rle.csv``: rows ``ImageId, EncodedPixels`` where the id
is the DICOM's SOPInstanceUID and the mask is in SIIM's relative run-length encoding
(:func:`keras_seg_extras.data.rle.decode_siim`), ``-1`` for an image without pneumothorax,
and one row per separate region of an image. The header of the published file reads
``ImageId, EncodedPixels`` (a space before the second name), and values may carry spaces.

- :func:`read_siim_rle_csv` reads that file into ``{image_id: [rle, ...]}``;
- :func:`write_siim_masks` unions each image's rows into one PNG mask at the DICOM size;
- :func:`prepare_siim` converts both DICOM folders to PNG and writes the masks: the records
  a training run needs;
- :func:`write_siim_submission` writes ``submission.csv``: one row per image, every
  component of its mask in one RLE string, ``-1`` for an empty mask;
- :func:`build_siim_demo_dataset` writes a small SIIM-shaped dataset from the shipped
  nuclei sample, so every step runs on a CPU in minutes.
"""

import csv
import dataclasses
import os

import numpy as np

from keras_seg_extras._common import fail
from keras_seg_extras.data.dicom import convert_dicom_folder, write_dicom, write_png
from keras_seg_extras.data.rle import decode_siim, encode_siim

_COLUMNS = ["ImageId", "EncodedPixels"]
_DEMO_TILE = 128
_DEMO_VARIANTS = {
    "id": lambda a: a,
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1, :],
    "rot180": lambda a: a[::-1, ::-1],
}
_DEMO_UID_ROOT = "1.2.826.0.1.3680043.10.1201"  # a fixed private root: reproducible demo UIDs


def siim_paths(data_dir):
    """The competition's layout under ``data_dir``.

    Returns:
        ``{"train_dir", "test_dir", "rle_csv"}``: ``dicom-images-train``,
        ``dicom-images-test`` and ``train-rle.csv`` under ``data_dir``.

    Example:
        >>> sorted(siim_paths("siim"))
        ['rle_csv', 'test_dir', 'train_dir']
        >>> siim_paths("siim")["rle_csv"].replace(os.sep, "/")
        'siim/train-rle.csv'
    """
    data_dir = os.fspath(data_dir)
    return {"train_dir": os.path.join(data_dir, "dicom-images-train"),
            "test_dir": os.path.join(data_dir, "dicom-images-test"),
            "rle_csv": os.path.join(data_dir, "train-rle.csv")}


def read_siim_rle_csv(path):
    """``{ImageId: [rle, ...]}`` from SIIM's ``train-rle.csv``, rows of one image kept together.

    Header names and values are stripped of spaces (the published header is
    ``ImageId, EncodedPixels``); an image with several regions has several rows, listed in
    file order; ``"-1"`` (no pneumothorax) is kept as it is, which
    :func:`~keras_seg_extras.data.rle.decode_siim` decodes to an empty mask.

    Args:
        path: the CSV file.

    Returns:
        A dict from image id to its list of RLE strings, in the order ids first appear.

    Raises:
        ValueError: naming the file when its columns are not ``ImageId, EncodedPixels`` or
            a row does not have two fields.

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "train-rle.csv")
        >>> with open(path, "w") as f:
        ...     _ = f.write("ImageId, EncodedPixels\\n1.2.3, 5 2 10 1\\n1.2.4, -1\\n"
        ...                 "1.2.3, 30 4\\n")
        >>> read_siim_rle_csv(path)
        {'1.2.3': ['5 2 10 1', '30 4'], '1.2.4': ['-1']}
    """
    owner = "read_siim_rle_csv"
    path = os.fspath(path)
    rows = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if header != _COLUMNS:
            fail(owner, "path", path, f"must be a CSV with the columns {_COLUMNS}; its header "
                 f"is {header}")
        for line, row in enumerate(reader, 2):
            if len(row) != 2:
                fail(owner, "path", path, f"must have two fields a row; line {line} is {row}")
            rows.setdefault(row[0].strip(), []).append(row[1].strip())
    return rows


def read_grayscale_png(path):
    """A PNG (or any image OpenCV reads) as a 2-D uint8 array.

    Raises:
        ValueError: naming the path when the file is missing or not an image.

    Example:
        >>> import tempfile
        >>> path = write_png(os.path.join(tempfile.mkdtemp(), "a.png"),
        ...                  np.array([[0, 255]], np.uint8))
        >>> read_grayscale_png(path)
        array([[  0, 255]], dtype=uint8)
    """
    import cv2

    image = cv2.imread(os.fspath(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        fail("read_grayscale_png", "path", os.fspath(path), "must be a readable image file")
    return image


def write_siim_masks(rles, shapes, folder):
    """Decode each image's RLE rows (unioned) to a 0/255 PNG mask at its original size.

    A mask already in ``folder`` is not decoded again (a resumed run reads it back for
    ``has_mask``); PNGs are written atomically.

    Args:
        rles: ``{image_id: [rle, ...]}`` as :func:`read_siim_rle_csv` returns.
        shapes: ``{image_id: (height, width)}``, the DICOM sizes. Ids of ``rles`` absent from
            it (no converted DICOM) are left out of the result: the caller lists them as
            ``set(rles) - set(result)``.
        folder: output folder, created; the mask of ``id`` is ``folder/id.png``.

    Returns:
        ``{image_id: {"mask": path, "has_mask": bool}}`` in the order of ``rles``.

    Example:
        >>> import tempfile
        >>> masks = write_siim_masks({"a": ["1 2", "4 1"], "b": ["-1"]},
        ...                          {"a": (3, 3), "b": (3, 3)}, tempfile.mkdtemp())
        >>> [(k, v["has_mask"]) for k, v in masks.items()]
        [('a', True), ('b', False)]
        >>> read_grayscale_png(masks["a"]["mask"]) // 255
        array([[0, 0, 0],
               [1, 1, 0],
               [1, 0, 0]], dtype=uint8)
    """
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for image_id, strings in rles.items():
        if image_id not in shapes:
            continue
        path = os.path.join(folder, f"{image_id}.png")
        if os.path.exists(path):
            has_mask = bool(read_grayscale_png(path).any())
        else:
            mask = decode_siim(strings, tuple(shapes[image_id]), image_id=image_id)
            write_png(path, (mask > 0).astype(np.uint8) * 255)
            has_mask = bool(mask.any())
        written[image_id] = {"mask": path, "has_mask": has_mask}
    return written


@dataclasses.dataclass
class SiimData:
    """What :func:`prepare_siim` found and wrote.

    Attributes:
        train: one dict per training image with a converted DICOM and a row in
            ``train-rle.csv``: ``id``, ``image`` (PNG path), ``patient`` (PatientID, or the
            image id when the header has none), ``shape`` (original (H, W)), ``mask`` (PNG
            path) and ``has_mask``.
        test: one dict per converted test image (``id``, ``image``, ``patient``, ``shape``).
        conversions: ``{"train": ConversionSummary, "test": ...}`` of the folders present.
        unmatched: ids of ``train-rle.csv`` without a converted DICOM (left out of ``train``).

    Example:
        >>> data = SiimData(train=[{"id": "a", "has_mask": True}], test=[], conversions={},
        ...                 unmatched=["b"])
        >>> len(data.train), data.unmatched
        (1, ['b'])
    """

    train: list
    test: list
    conversions: dict
    unmatched: list


def _record(image_id, row):
    return {"id": image_id, "image": row["png"], "patient": row["PatientID"] or image_id,
            "shape": (int(row["Rows"]), int(row["Columns"]))}


def prepare_siim(data_dir, output_dir, *, workers=None, image_size=None, clahe=False,
                 progress=False):
    """Convert a SIIM folder's DICOMs to PNG and its ``train-rle.csv`` to PNG masks.

    PNGs go to ``output_dir/png/{train,test}`` (header CSVs
    ``output_dir/{train,test}_headers.csv``), masks to ``output_dir/png/masks`` at each
    DICOM's size. Resumable: files already written are kept (:func:`~keras_seg_extras.data.dicom.convert_dicom_folder`,
    :func:`write_siim_masks`). A DICOM that fails to convert is reported in ``conversions``
    and left out.

    Args:
        data_dir: the competition's folder (see :func:`siim_paths`); a missing test folder
            gives no test records.
        output_dir: where the PNGs, masks and header CSVs go.
        workers: DICOM conversion processes (None: the CPU count).
        image_size: side of the converted PNGs (None keeps the DICOM size; masks always
            keep it).
        clahe: CLAHE after windowing.
        progress: show the conversion's progress line on stderr.

    Returns:
        A :class:`SiimData`.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> _ = build_siim_demo_dataset(os.path.join(root, "siim"))
        >>> data = prepare_siim(os.path.join(root, "siim"), root, workers=1)
        >>> len(data.train), len(data.test), sum(r["has_mask"] for r in data.train)
        (48, 16, 24)
    """
    paths = siim_paths(data_dir)
    output_dir = os.fspath(output_dir)
    headers, conversions = {}, {}
    for part in ("train", "test"):
        if not os.path.isdir(paths[f"{part}_dir"]):
            continue
        summary = convert_dicom_folder(
            paths[f"{part}_dir"], os.path.join(output_dir, "png", part), workers=workers,
            size=image_size, clahe=clahe, progress=progress,
            csv_path=os.path.join(output_dir, f"{part}_headers.csv"))
        conversions[part] = summary
        headers[part] = {row["SOPInstanceUID"]: row for row in summary.rows
                         if row["status"] != "failed"}
    train_headers = headers.get("train", {})
    rles = read_siim_rle_csv(paths["rle_csv"])
    shapes = {uid: (int(row["Rows"]), int(row["Columns"])) for uid, row in train_headers.items()}
    masks = write_siim_masks(rles, shapes, os.path.join(output_dir, "png", "masks"))
    train = [dict(_record(uid, train_headers[uid]), **masks[uid]) for uid in masks]
    test = [_record(uid, row) for uid, row in headers.get("test", {}).items()]
    return SiimData(train=train, test=test, conversions=conversions,
                    unmatched=[uid for uid in rles if uid not in masks])


def write_siim_submission(path, masks):
    """Write a SIIM ``submission.csv``: one row per image, ``-1`` for an empty mask.

    Every component of a mask goes in one RLE string (SIIM's relative encoding,
    :func:`~keras_seg_extras.data.rle.encode_siim`), which decodes back to the whole mask.
    The empty rule is the caller's: a mask that is all zero after post-processing is
    written ``-1``.

    Args:
        path: the CSV file to write (its folder must exist).
        masks: an iterable of ``(image_id, mask)`` with ``mask`` a binary (H, W) array at the
            image's original size; consumed one at a time (a generator streams a test set).

    Returns:
        The number of rows written.

    Raises:
        ValueError: when an image id repeats (a submission holds one row per image).

    Example:
        >>> import tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "submission.csv")
        >>> two_regions = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]])
        >>> write_siim_submission(path, [("a", two_regions), ("b", np.zeros((3, 3)))])
        2
        >>> print(open(path).read().strip())
        ImageId,EncodedPixels
        a,0 1 7 1
        b,-1
    """
    seen = set()
    with open(os.fspath(path), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        for image_id, mask in masks:
            if image_id in seen:
                fail("write_siim_submission", "masks", image_id,
                     "must hold each image id once")
            seen.add(image_id)
            writer.writerow([image_id, encode_siim(np.asarray(mask))])
    return len(seen)


def _demo_tiles(array):
    rows, cols = array.shape[:2]
    return [(r, c, array[r:r + _DEMO_TILE, c:c + _DEMO_TILE])
            for r in range(0, rows, _DEMO_TILE) for c in range(0, cols, _DEMO_TILE)]


def build_siim_demo_dataset(root, seed=0, size=_DEMO_TILE):
    """Write a SIIM-shaped dataset from the shipped nuclei sample (skipped if already there).

    The layout and formats are the competition's (see the module docstring), from real
    microscopy data:

    - the 512 x 512 nuclei image is cut into 128 x 128 tiles; each tile is one "patient" and
      its four variants (identity, horizontal flip, vertical flip, 180-degree rotation) that
      patient's studies, so a split must group them as real patient ids must be grouped;
    - every other patient has its nuclei painted out (OpenCV inpainting): an empty mask, like
      the healthy majority of SIIM;
    - the bottom-right quadrant's tiles form the test set (no rows in the CSV);
    - each nucleus is its own CSV row, so a reader has to union several rows;
    - images are 12-bit MONOCHROME2 DICOMs with a window in the header and the patients'
      sex, age (seeded) and view position.

    Args:
        root: output folder; nothing is written when ``root/train-rle.csv`` exists.
        seed: seed of the patients' sex, age and view position.
        size: side of the DICOMs (tiles resized bilinear, masks nearest; 1024 gives
            SIIM-sized files).

    Returns:
        ``{"train_dir", "test_dir", "rle_csv", "train_images", "train_positive",
        "test_images"}``.

    Example:
        >>> import tempfile
        >>> demo = build_siim_demo_dataset(tempfile.mkdtemp(), size=32)
        >>> demo["train_images"], demo["train_positive"], demo["test_images"]
        (48, 24, 16)
    """
    import cv2

    from keras_seg_extras.datasets import nuclei

    paths = siim_paths(root)
    if os.path.exists(paths["rle_csv"]):
        return dict(paths, **_demo_counts(paths))
    rng = np.random.default_rng(seed)
    image, _, instances = nuclei.load_image()
    half = image.shape[0] // 2
    rows = []
    for patient, ((r, c, tile), (_, _, ids)) in enumerate(zip(_demo_tiles(image),
                                                              _demo_tiles(instances))):
        is_test = r >= half and c >= half
        healthy = (not is_test and patient % 2 == 1) or (is_test and patient % 2 == 0)
        if healthy:
            tile = cv2.inpaint(tile, cv2.dilate((ids > 0).astype("uint8"), np.ones((5, 5))),
                               5, cv2.INPAINT_TELEA)
            ids = np.zeros_like(ids)
        sex = "MF"[int(rng.integers(2))]
        age = int(rng.integers(18, 90))
        view = ("PA", "AP")[int(rng.integers(2))]
        if size != _DEMO_TILE:
            tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_LINEAR)
            ids = cv2.resize(ids.astype("float32"), (size, size),
                             interpolation=cv2.INTER_NEAREST).astype(ids.dtype)
        for v, (variant, transform) in enumerate(_DEMO_VARIANTS.items()):
            pixels = transform(tile).astype("uint16") * 16  # 8-bit -> 12-bit range
            uid = f"{_DEMO_UID_ROOT}.{patient}.{v}"
            folder = os.path.join(paths["test_dir" if is_test else "train_dir"],
                                  f"{uid}.9", f"{uid}.8")
            os.makedirs(folder, exist_ok=True)
            write_dicom(os.path.join(folder, f"{uid}.dcm"), pixels,
                        patient_id=f"demo-{patient:02d}", sex=sex, age=age, view_position=view,
                        sop_instance_uid=uid, study_instance_uid=f"{uid}.9",
                        series_instance_uid=f"{uid}.8", window=(2048, 4096), bits_stored=12)
            if is_test:
                continue
            variant_ids = transform(ids)
            nuclei_ids = [n for n in np.unique(variant_ids) if n]
            if not nuclei_ids:
                rows.append((uid, "-1"))
            for n in nuclei_ids:
                rows.append((uid, encode_siim((variant_ids == n).astype("uint8"))))
    with open(paths["rle_csv"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_COLUMNS)
        writer.writerows(rows)
    return dict(paths, **_demo_counts(paths))


def _demo_counts(paths):
    rles = read_siim_rle_csv(paths["rle_csv"])
    test = sum(len(files) for _, _, files in os.walk(paths["test_dir"]))
    return {"train_images": len(rles),
            "train_positive": sum(any(r != "-1" for r in v) for v in rles.values()),
            "test_images": test}
