"""Fluorescence microscopy nuclei (2018 Data Science Bowl, BBBC038, CC0): binary segmentation.

One real 512x512 image with 125 nuclei (about 20% foreground), shipped as ``nuclei.npz`` next to
this module (built by ``tools/build_sample_data.py``; provenance in ``PROVENANCE.md``). It has
the shape of the pneumothorax problem at small scale: binary masks with class imbalance.

Spatial split: the bottom-right quadrant (rows 256:512, columns 256:512, 25% of the image) is
validation, the other three quadrants are training. Tiles never straddle the two parts, so no
pixel of a validation tile is ever seen in training. ``tile_size`` must divide 256.
"""

import functools
import os

import numpy as np

from keras_seg_extras._common import check_number, fail

_HERE = os.path.dirname(os.path.abspath(__file__))
_QUADRANT = 256


@functools.lru_cache(maxsize=1)
def _arrays():
    with np.load(os.path.join(_HERE, "nuclei.npz")) as data:
        return {key: data[key] for key in ("image", "mask", "instances")}


def load_image():
    """The whole sample.

    Returns:
        ``(image, mask, instances)``: image (512, 512) uint8 (grey), mask (512, 512) uint8 in
        {0, 1}, instances (512, 512) uint8 with 0 = background and one id per nucleus.

    Example:
        >>> from keras_seg_extras.datasets import load_nuclei_image
        >>> image, mask, instances = load_nuclei_image()
        >>> image.shape, image.dtype, int(mask.max())
        ((512, 512), dtype('uint8'), 1)
    """
    arrays = _arrays()
    return arrays["image"].copy(), arrays["mask"].copy(), arrays["instances"].copy()


def _tiles(array, tile_size):
    rows, cols = array.shape[:2]
    tiles = array.reshape(rows // tile_size, tile_size, cols // tile_size, tile_size)
    return tiles.transpose(0, 2, 1, 3).reshape(-1, tile_size, tile_size)


def load_data(tile_size=128):
    """Tiles of the nuclei image with a spatial train/validation split.

    The three quadrants top-left, top-right and bottom-left are cut into training tiles, the
    bottom-right quadrant into validation tiles (row-major order within each quadrant).

    Args:
        tile_size: side of the square tiles; must divide 256 (e.g. 32, 64, 128, 256).

    Returns:
        ``((x_train, y_train), (x_val, y_val))``: x uint8 (N, t, t, 3) (the grey image repeated
        to three channels), y uint8 (N, t, t, 1) in {0, 1}. With ``tile_size=128``: 12 training
        and 4 validation tiles; 64: 48 and 16; 256: 3 and 1.

    Raises:
        ValueError: if ``tile_size`` is not a positive integer dividing 256.

    Example:
        >>> from keras_seg_extras.datasets import load_nuclei
        >>> (x_train, y_train), (x_val, y_val) = load_nuclei(tile_size=128)
        >>> x_train.shape, y_val.shape
        ((12, 128, 128, 3), (4, 128, 128, 1))
    """
    owner = "kse.datasets.nuclei.load_data"
    tile_size = check_number(owner, "tile_size", tile_size, minimum=1, integer=True)
    if _QUADRANT % tile_size:
        fail(owner, "tile_size", tile_size,
             "must divide 256 (the side of the validation quadrant), e.g. 64, 128 or 256")
    image, mask, _ = load_image()
    half = _QUADRANT
    quadrants = {
        "train": [(slice(0, half), slice(0, half)), (slice(0, half), slice(half, None)),
                  (slice(half, None), slice(0, half))],
        "val": [(slice(half, None), slice(half, None))],
    }
    out = []
    for part in ("train", "val"):
        x = np.concatenate([_tiles(image[q], tile_size) for q in quadrants[part]])
        y = np.concatenate([_tiles(mask[q], tile_size) for q in quadrants[part]])
        x = np.repeat(x[..., None], 3, axis=-1)
        out.append((np.ascontiguousarray(x), np.ascontiguousarray(y[..., None])))
    return tuple(out)
