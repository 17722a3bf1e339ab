"""Build the sample data shipped inside ``keras_seg_extras/datasets`` from the raw files.

Usage::

    python tools/build_sample_data.py [SOURCE_DIR]

``SOURCE_DIR`` defaults to ``../shared/data`` relative to the repository root and must hold
``nuclei/img2d.tif``, ``nuclei/mask2d.tif``, ``brain/ch2.nii.gz``, ``brain/aal.nii.gz``,
``brain/aal.nii.txt`` and ``brain/DEBIAN-COPYRIGHT.txt`` (see that folder's SOURCES.md).

Writes, next to the loaders:

- ``nuclei.npz``: ``image`` (512, 512) uint8 (the uint16 microscopy image scaled linearly so
  that its maximum becomes 255), ``mask`` (512, 512) uint8 in {0, 1} (instance map > 0) and
  ``instances`` (512, 512) uint8 (the instance ids, 0 = background; the source has 183 at most).
- ``brain.npz``: ``image`` and ``labels``, both (181, 217, 181) uint8 in the NIfTI voxel order
  (x = left to right, y = posterior to anterior, z = inferior to superior; 1 mm voxels).
- ``aal_regions.txt``: the AAL region index, short name and code, copied from ``aal.nii.txt``.
- ``MRICRON-DATA-COPYRIGHT.txt``: the Debian copyright file of mricron-data (BSD-3-Clause).
- ``PROVENANCE.md``: where every file comes from, its licence and how it was transformed.

Needs ``tifffile`` and ``nibabel`` (the ``recipes`` extra); the loaders themselves read only
the ``.npz`` files.
"""

import argparse
import hashlib
import os
import shutil
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(REPO, "keras_seg_extras", "datasets")

PROVENANCE = """# Provenance of the shipped sample data

Built by `tools/build_sample_data.py` from the raw files listed below; run it again to
regenerate every file here byte for byte from the same sources.

## `nuclei.npz`: fluorescence microscopy nuclei (binary and instance masks)

- Source: `img2d.tif` (512x512 uint16 image) and `mask2d.tif` (512x512 instance labels,
  {nuclei} nuclei, {fg:.1%} foreground) from the `stardist` 0.9.2 wheel on PyPI,
  `stardist/data/images/` (the package is BSD-3-Clause).
- Origin: the 2018 Data Science Bowl, BBBC038 (Caicedo et al., "Nucleus segmentation across
  imaging experiments: the 2018 Data Science Bowl", Nature Methods 16, 2019), stage-1 data,
  released under **CC0 1.0** (public domain dedication) by the Broad Bioimage Benchmark
  Collection.
- Transformation: `image = round(img2d * 255 / max(img2d))` as uint8 (the source maximum is
  {img_max}, so no information is lost beyond rounding); `mask = (mask2d > 0)` as uint8;
  `instances = mask2d` as uint8.
- SHA-256 of the sources: img2d.tif `{sha_img}`, mask2d.tif `{sha_mask}`.

## `brain.npz`, `aal_regions.txt`: T1 MRI with the 116-region AAL atlas

- Source: `ch2.nii.gz` (Colin27 single-subject T1 MRI, 181x217x181 at 1 mm, uint8),
  `aal.nii.gz` (Automated Anatomical Labeling atlas on the same grid, labels 0 to 116) and
  `aal.nii.txt` (index, short name and code of each region), from the Debian package
  `mricron-data` 1.2.20211006+dfsg-4, `/usr/share/mricron/templates/`.
- Licence: **BSD-3-Clause**, Copyright 2006-2010 Chris Rorden, according to the package's
  Debian copyright file, shipped here unchanged as `MRICRON-DATA-COPYRIGHT.txt` (its
  BSD-3-Clause text requires the notice to travel with redistributions).
- Transformation: none; the voxel arrays are stored as they are in the NIfTI files (voxel
  order x, y, z; the affine is the identity with origin (-90, -125, -71) mm). `aal_regions.txt`
  is `aal.nii.txt` copied unchanged.
- SHA-256 of the sources: ch2.nii.gz `{sha_ch2}`, aal.nii.gz `{sha_aal}`,
  aal.nii.txt `{sha_txt}`.
"""


def _sha256(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def _require(path):
    if not os.path.isfile(path):
        sys.exit(f"build_sample_data: missing source file {path!r}")
    return path


def build(source, target=TARGET):
    import nibabel
    import tifffile

    nuclei_img = _require(os.path.join(source, "nuclei", "img2d.tif"))
    nuclei_mask = _require(os.path.join(source, "nuclei", "mask2d.tif"))
    ch2 = _require(os.path.join(source, "brain", "ch2.nii.gz"))
    aal = _require(os.path.join(source, "brain", "aal.nii.gz"))
    aal_txt = _require(os.path.join(source, "brain", "aal.nii.txt"))
    copyright_file = _require(os.path.join(source, "brain", "DEBIAN-COPYRIGHT.txt"))

    image = tifffile.imread(nuclei_img)
    instances = tifffile.imread(nuclei_mask)
    if image.shape != (512, 512) or instances.shape != (512, 512):
        sys.exit(f"build_sample_data: nuclei shapes {image.shape}, {instances.shape} != (512, 512)")
    if instances.max() > 255 or instances.min() < 0:
        sys.exit("build_sample_data: nuclei instance ids do not fit in uint8")
    img_max = float(image.max())
    image8 = np.round(image.astype("float64") * 255.0 / img_max).astype("uint8")
    mask = (instances > 0).astype("uint8")
    np.savez_compressed(os.path.join(target, "nuclei.npz"), image=image8, mask=mask,
                        instances=instances.astype("uint8"))

    volume = np.asarray(nibabel.load(ch2).dataobj)
    labels = np.asarray(nibabel.load(aal).dataobj)
    if volume.shape != labels.shape or volume.dtype != np.uint8 or labels.dtype != np.uint8:
        sys.exit("build_sample_data: ch2/aal must be uint8 volumes of the same shape")
    if labels.max() != 116:
        sys.exit(f"build_sample_data: AAL labels should reach 116, found {labels.max()}")
    np.savez_compressed(os.path.join(target, "brain.npz"), image=volume, labels=labels)

    with open(aal_txt, encoding="utf-8") as handle:
        rows = [line.split() for line in handle if line.strip()]
    if [int(row[0]) for row in rows] != list(range(1, 117)):
        sys.exit("build_sample_data: aal.nii.txt must list regions 1..116 in order")
    shutil.copyfile(aal_txt, os.path.join(target, "aal_regions.txt"))
    shutil.copyfile(copyright_file, os.path.join(target, "MRICRON-DATA-COPYRIGHT.txt"))

    text = PROVENANCE.format(
        nuclei=int(np.unique(instances[instances > 0]).size), fg=float(mask.mean()),
        img_max=int(img_max), sha_img=_sha256(nuclei_img), sha_mask=_sha256(nuclei_mask),
        sha_ch2=_sha256(ch2), sha_aal=_sha256(aal), sha_txt=_sha256(aal_txt))
    with open(os.path.join(target, "PROVENANCE.md"), "w", encoding="utf-8") as handle:
        handle.write(text)

    for name in ("nuclei.npz", "brain.npz", "aal_regions.txt", "MRICRON-DATA-COPYRIGHT.txt",
                 "PROVENANCE.md"):
        size = os.path.getsize(os.path.join(target, name))
        print(f"{name:32s} {size / 1e6:7.3f} MB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", default=os.path.join(REPO, "..", "shared", "data"),
                        help="folder holding nuclei/ and brain/ (default: ../shared/data)")
    parser.add_argument("--target", default=TARGET, help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    build(os.path.abspath(args.source), args.target)


if __name__ == "__main__":
    main()
