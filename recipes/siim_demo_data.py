"""A SIIM-shaped pneumothorax dataset built from the shipped nuclei sample, for ``--demo``.

The SIIM-ACR competition gives DICOM files under ``dicom-images-train/<study>/<series>/<uid>.dcm``
and ``dicom-images-test/...``, and ``train-rle.csv`` with ``ImageId,EncodedPixels`` rows: the
SOPInstanceUID, then the mask in SIIM's relative run-length encoding, ``-1`` for no
pneumothorax, and one row per separate region of an image. This module writes the same
layout from real microscopy data, so every step of the recipe (conversion, RLE decoding,
stratified and grouped split, training, submission) runs on it:

- the 512x512 nuclei image is cut into 128x128 tiles; each tile is one "patient", and its
  four variants (identity, horizontal flip, vertical flip, 180-degree rotation) are that
  patient's "studies" (so the split must group them, as real patient ids must be grouped);
- in every other patient the nuclei are painted out (OpenCV inpainting): those images
  have an empty mask, like the healthy majority of the SIIM data;
- the bottom-right quadrant's tiles form the test set (no masks in the CSV), the rest the
  training set, so no test pixel is ever trained on;
- each nucleus becomes its own CSV row, so the decoder has to union several rows;
- images are written as 12-bit MONOCHROME2 DICOMs with a window in the header, and the
  patients' sex, age and view position are filled in;
- ``size`` (default 128, the tile itself) upsamples each tile (bilinear, masks nearest) to
  SIIM-sized files, e.g. 1024 px to measure the memory of a run on real-sized DICOMs.
"""

import csv
import os

import numpy as np

TILE = 128
VARIANTS = {
    "id": lambda a: a,
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1, :],
    "rot180": lambda a: a[::-1, ::-1],
}
_UID_ROOT = "1.2.826.0.1.3680043.10.1201"  # a fixed private root: reproducible demo UIDs


def _tiles(array):
    rows, cols = array.shape[:2]
    return [(r, c, array[r:r + TILE, c:c + TILE])
            for r in range(0, rows, TILE) for c in range(0, cols, TILE)]


def build_demo_dataset(root, seed=0, size=TILE):
    """Write the demo dataset under ``root`` (skipped when ``root/train-rle.csv`` exists).

    Args:
        root: output folder.
        seed: seed of the patients' sex, age and view position.
        size: side of the written DICOMs (the 128 px tiles are resized to it).

    Returns:
        A dict with the paths: ``train_dir``, ``test_dir``, ``rle_csv``, and the counts
        ``train_images``, ``train_positive``, ``test_images``.
    """
    import cv2

    import keras_seg_extras as kse

    root = os.fspath(root)
    paths = {"train_dir": os.path.join(root, "dicom-images-train"),
             "test_dir": os.path.join(root, "dicom-images-test"),
             "rle_csv": os.path.join(root, "train-rle.csv")}
    if os.path.exists(paths["rle_csv"]):
        return dict(paths, **_count(paths))
    rng = np.random.default_rng(seed)
    image, _, instances = kse.datasets.nuclei.load_image()
    half = image.shape[0] // 2
    rows = []
    for patient, ((r, c, tile), (_, _, ids)) in enumerate(zip(_tiles(image), _tiles(instances))):
        is_test = r >= half and c >= half
        healthy = (not is_test and patient % 2 == 1) or (is_test and patient % 2 == 0)
        if healthy:
            tile = cv2.inpaint(tile, cv2.dilate((ids > 0).astype("uint8"), np.ones((5, 5))),
                               5, cv2.INPAINT_TELEA)
            ids = np.zeros_like(ids)
        sex = "MF"[int(rng.integers(2))]
        age = int(rng.integers(18, 90))
        view = ("PA", "AP")[int(rng.integers(2))]
        if size != TILE:
            tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_LINEAR)
            ids = cv2.resize(ids.astype("float32"), (size, size),
                             interpolation=cv2.INTER_NEAREST).astype(ids.dtype)
        for v, (variant, transform) in enumerate(VARIANTS.items()):
            pixels = (transform(tile).astype("uint16") * 16)  # 8-bit -> 12-bit range
            uid = f"{_UID_ROOT}.{patient}.{v}"
            folder = os.path.join(paths["test_dir" if is_test else "train_dir"],
                                  f"{uid}.9", f"{uid}.8")
            os.makedirs(folder, exist_ok=True)
            kse.data.dicom.write_dicom(
                os.path.join(folder, f"{uid}.dcm"), pixels, patient_id=f"demo-{patient:02d}",
                sex=sex, age=age, view_position=view, sop_instance_uid=uid,
                study_instance_uid=f"{uid}.9", series_instance_uid=f"{uid}.8",
                window=(2048, 4096), bits_stored=12)
            if is_test:
                continue
            variant_ids = transform(ids)
            nuclei = [n for n in np.unique(variant_ids) if n]
            if not nuclei:
                rows.append((uid, "-1"))
            for n in nuclei:
                rows.append((uid, kse.data.rle.encode_siim((variant_ids == n).astype("uint8"))))
    with open(paths["rle_csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "EncodedPixels"])
        writer.writerows(rows)
    return dict(paths, **_count(paths))


def _count(paths):
    with open(paths["rle_csv"]) as f:
        rows = list(csv.reader(f))[1:]
    positive = {r[0] for r in rows if r[1].strip() != "-1"}
    test = sum(len(files) for _, _, files in os.walk(paths["test_dir"]))
    return {"train_images": len({r[0] for r in rows}), "train_positive": len(positive),
            "test_images": test}
