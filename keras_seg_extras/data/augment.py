"""Image + mask augmentation with albumentations 2.0.x, reproducible per element.

:func:`siim_preset` is the augmentation list of "SIIM-ACR Pneumothorax Segmentation", work
report of SIIM's Kaggle competition (2019), section 4.1.4: horizontal flip; random contrast,
gamma and brightness; a random crop with a zoom of about 0.8; and, because the images are
medical, elastic transform, grid distortion and optical distortion.

:class:`Augmenter` applies any albumentations transform to an (image, mask) pair with a seed
given per call, so the result depends only on that seed, not on which thread runs it or in
which order: each thread keeps its own copy of the transform (albumentations transforms carry
their random generator as state, and OpenCV releases the GIL, so sharing one copy between
the parallel calls of ``tf.data`` would interleave their random draws).
:func:`keras_seg_extras.data.pipeline.segmentation_dataset` derives each element's seed from
the dataset seed and the element's position in the stream.

Masks are warped with nearest-neighbour interpolation and zero fill, so a {0, 1} (or integer
label) mask keeps its values.
"""

import copy
import os
import threading

import numpy as np

from keras_seg_extras._common import check_number, fail

_MODULE = "kse.data.augment"

# albumentations asks PyPI for its latest version when it is first imported; the package
# never reaches the network at run time, so that check is switched off (a user's own
# setting of the variable wins).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def siim_preset(image_size, flip_p=0.5, intensity_p=0.3, distortion_p=0.3, crop_p=0.25,
                zoom=0.8):
    """The SIIM-ACR work report's augmentation list (2019, section 4.1.4) as a ``Compose``.

    Pipeline (each step independently with its probability):

    1. ``HorizontalFlip`` (``flip_p``; a chest film mirrored is still a plausible film);
    2. one of random contrast (+-20%), random gamma (80-120) and random brightness (+-20%)
       (``intensity_p``);
    3. one of ``ElasticTransform`` (alpha and sigma scaled with the image: 120 and 6 at 256
       px; sigma at least 1; the approximate, faster smoothing), ``GridDistortion`` (5 steps,
       +-0.3) and ``OpticalDistortion`` (+-0.2) (``distortion_p``);
    4. ``RandomResizedCrop`` back to ``image_size`` from a square crop whose side is ``zoom``
       to 1 times the image side (area ``zoom**2`` to 1) (``crop_p``).

    The probabilities follow the public SIIM Keras kernels the report reused (flip 0.5, the
    two ``OneOf`` groups 0.3, the crop 0.25). Inputs must already be ``image_size`` square
    (:func:`segmentation_dataset` resizes before augmenting); the output has the same size.

    Args:
        image_size: side of the (square) images, >= 8.
        flip_p, intensity_p, distortion_p, crop_p: probabilities in [0, 1].
        zoom: smallest crop side as a fraction of the image side, in (0, 1].

    Returns:
        ``albumentations.Compose``.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.data import siim_preset
        >>> augment = siim_preset(64)  # or pass it to segmentation_dataset(augment=...)
        >>> out = augment(image=np.zeros((64, 64, 3), "uint8"), mask=np.zeros((64, 64), "uint8"))
        >>> out["image"].shape, out["mask"].shape
        ((64, 64, 3), (64, 64))
    """
    import albumentations as A

    owner = f"{_MODULE}.siim_preset"
    size = check_number(owner, "image_size", image_size, minimum=8, integer=True)
    for name, value in (("flip_p", flip_p), ("intensity_p", intensity_p),
                        ("distortion_p", distortion_p), ("crop_p", crop_p)):
        check_number(owner, name, value, minimum=0.0, maximum=1.0)
    zoom = check_number(owner, "zoom", zoom, minimum=0.0, maximum=1.0, min_inclusive=False)
    scale = size / 256.0
    return A.Compose([
        A.HorizontalFlip(p=flip_p),
        A.OneOf([
            A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.2, p=1.0),
            A.RandomGamma(gamma_limit=(80, 120), p=1.0),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, p=1.0),
        ], p=intensity_p),
        A.OneOf([
            A.ElasticTransform(alpha=120.0 * scale, sigma=max(6.0 * scale, 1.0),
                               approximate=True, p=1.0),
            A.GridDistortion(num_steps=5, distort_limit=0.3, p=1.0),
            A.OpticalDistortion(distort_limit=0.2, p=1.0),
        ], p=distortion_p),
        A.RandomResizedCrop(size=(size, size), scale=(zoom * zoom, 1.0), ratio=(1.0, 1.0),
                            p=crop_p),
    ])


class Augmenter:
    """Apply an albumentations transform to (image, mask) pairs with a seed per call.

    Args:
        transform: an albumentations transform or ``Compose`` (a bare transform is wrapped in
            a ``Compose``).

    Call:
        ``augmenter(image, mask, seed)`` -> ``(image, mask)``; image (H, W, C), mask (H, W) or
        (H, W, 1) (the channel axis is kept); equal seeds give equal results.

    Example:
        >>> import numpy as np
        >>> from keras_seg_extras.data import Augmenter, siim_preset
        >>> augmenter = Augmenter(siim_preset(32))
        >>> rng = np.random.default_rng(0)
        >>> image = rng.integers(0, 256, (32, 32, 3), dtype="uint8")
        >>> mask = (rng.random((32, 32, 1)) > 0.5).astype("uint8")
        >>> first, second = augmenter(image, mask, seed=17), augmenter(image, mask, seed=17)
        >>> first[1].shape, all(np.array_equal(a, b) for a, b in zip(first, second))
        ((32, 32, 1), True)
    """

    def __init__(self, transform):
        import albumentations as A

        if isinstance(transform, A.BaseCompose):
            template = transform
        elif isinstance(transform, A.BasicTransform):
            template = A.Compose([transform])
        else:
            fail("kse.data.augment.Augmenter", "transform", transform,
                 "must be an albumentations transform or Compose")
        self.transform = template
        self._local = threading.local()

    def _copy(self):
        transform = getattr(self._local, "transform", None)
        if transform is None:
            transform = copy.deepcopy(self.transform)
            self._local.transform = transform
        return transform

    def __call__(self, image, mask, seed):
        transform = self._copy()
        transform.set_random_seed(int(seed) % (2 ** 32))
        mask = np.asarray(mask)
        squeeze = mask.ndim == 3 and mask.shape[-1] == 1
        out = transform(image=np.asarray(image), mask=mask[..., 0] if squeeze else mask)
        out_mask = out["mask"]
        if squeeze:
            out_mask = out_mask[..., None]
        return out["image"], out_mask


def element_seed(seed, position):
    """The seed of the element at ``position`` of a stream seeded with ``seed`` (uint32).

    Example:
        The seed depends on the stream's seed and the position only (not on threads or timing):

        >>> from keras_seg_extras.data import element_seed
        >>> element_seed(7, 3), element_seed(7, 4), element_seed(7, 3) == element_seed(7, 3)
        (3466196061, 3335713882, True)
    """
    return int(np.random.SeedSequence([int(seed) % (2 ** 63), int(position)]).generate_state(1)[0])


def dihedral_copies(images, masks):
    """Every image and mask under the 8 symmetries of the square (the dihedral group D4).

    Returns the 4 rotations by 90 degrees, then the same 4 each mirrored left-right, stacked
    along the batch axis: ``8 N`` samples. Flips and quarter turns move whole pixels, so the
    masks stay aligned and exact (no interpolation), which makes this the safe offline
    augmentation of small tile sets whose content has no preferred orientation (nuclei,
    satellite tiles); for random on-line transforms use :class:`Augmenter`.

    Args:
        images: (N, S, S[, C]) array (square tiles: a quarter turn keeps the shape).
        masks: (N, S, S[, K]) array of the same N, S.

    Returns:
        ``(images, masks)``, each (8 N, ...), contiguous.

    Example:
        >>> image = np.array([[[1, 2], [3, 4]]])
        >>> copies, _ = dihedral_copies(image, image)
        >>> copies.shape, copies[1].tolist(), copies[4].tolist()
        ((8, 2, 2), [[2, 4], [1, 3]], [[2, 1], [4, 3]])
    """
    owner = "dihedral_copies"
    images, masks = np.asarray(images), np.asarray(masks)
    for argument, array in (("images", images), ("masks", masks)):
        if array.ndim not in (3, 4) or array.shape[1] != array.shape[2]:
            fail(owner, argument, f"shape {array.shape}", "must be square tiles (N, S, S[, C])")
    if images.shape[:3] != masks.shape[:3]:
        fail(owner, "masks", f"shape {masks.shape}",
             f"must match the images' (N, S, S) = {images.shape[:3]}")
    turns = [(np.rot90(images, k, axes=(1, 2)), np.rot90(masks, k, axes=(1, 2)))
             for k in range(4)]
    mirrored = [(x[:, :, ::-1], y[:, :, ::-1]) for x, y in turns]
    pairs = turns + mirrored
    return (np.ascontiguousarray(np.concatenate([x for x, _ in pairs])),
            np.ascontiguousarray(np.concatenate([y for _, y in pairs])))
