"""``export_model``: one serving graph written as a SavedModel, an ONNX graph or a LiteRT model,
then run by that format's own runtime on a probe and compared with Keras before it is returned.
"""

import numbers
import os
import warnings

import keras
import numpy as np

from keras_seg_extras._common import check_number, fail
from keras_seg_extras.export.formats import FORMATS
from keras_seg_extras.export.serving import (ENDPOINTS, check_servable, input_spec,
                                             keras_reference, serving_function, tta_model)

#: Height and width of the verification probe when the image size is dynamic: odd, unequal
#: (a transposition shows), and not multiples of 32 (the padding and cropping run).
PROBE_SIZE = (37, 53)


class ExportVerificationError(RuntimeError):
    """The written artifact, run by its own runtime, differs from the Keras model."""


def _check_input_dtypes(owner, fmt, input_dtypes):
    if input_dtypes is None:
        # An ONNX graph has one entry point, so one input type: uint8, as images arrive.
        return ("uint8",) if fmt == "onnx" else ("float32", "uint8")
    if isinstance(input_dtypes, str):
        input_dtypes = (input_dtypes,)
    try:
        dtypes = tuple(input_dtypes)
    except TypeError:
        fail(owner, "input_dtypes", input_dtypes, "must be a tuple of 'float32' and/or 'uint8'")
    if not dtypes or any(d not in ENDPOINTS for d in dtypes) or len(set(dtypes)) != len(dtypes):
        fail(owner, "input_dtypes", input_dtypes,
             "must be a non-empty tuple of distinct entries from 'float32', 'uint8'")
    if fmt == "onnx" and len(dtypes) > 1:
        fail(owner, "input_dtypes", input_dtypes,
             "must hold one dtype for format='onnx' (an ONNX graph has one input type); export "
             "once per dtype to two paths")
    return dtypes


def _check_image_size(owner, image_size):
    if image_size is None:
        return None
    try:
        height, width = image_size
    except (TypeError, ValueError):
        fail(owner, "image_size", image_size, "must be None (any size) or (height, width)")
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            fail(owner, "image_size", image_size, "must hold two positive integers")
    return (int(height), int(width))


def _check_path(owner, fmt, path):
    path = os.fspath(path)
    suffix = FORMATS[fmt].suffix
    if suffix is None:
        if os.path.isfile(path):
            fail(owner, "path", path, f"must be a directory for format={fmt!r}; it is a file")
    else:
        if not path.endswith(suffix):
            fail(owner, "path", path, f"must end with {suffix!r} for format={fmt!r}")
        if os.path.isdir(path):
            fail(owner, "path", path, f"must be a file path for format={fmt!r}; it is a directory")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def verify_artifact(owner, fmt, path, model, *, input_dtypes, image_size, threshold, multiple,
                    uint8_scale, tolerance):
    """Run the artifact at ``path`` with its format's runtime on a uint8 probe and its float32
    twin, and compare with ``model`` (Keras, NumPy padding); raise past ``tolerance``.

    The probe is a batch of 2 random images of ``image_size`` (or :data:`PROBE_SIZE`).
    Probabilities must agree within ``tolerance`` (absolute); masks must equal Keras
    probabilities > ``threshold`` wherever those lie more than ``tolerance`` from it.

    Returns:
        The largest absolute probability difference over the endpoints.
    """
    height, width = image_size or PROBE_SIZE
    channels = model.input_shape[-1]
    images = np.random.default_rng(0).integers(0, 256, (2, height, width, channels), np.uint8)
    scaled = images.astype(np.float32)
    if uint8_scale != 1.0:
        scaled = scaled * np.float32(uint8_scale)
    expected = keras_reference(model, scaled, multiple)
    worst = 0.0
    for dtype in input_dtypes:
        where = f"the {fmt} artifact at {path} (endpoint {ENDPOINTS[dtype]!r}, input {dtype} " \
                f"{images.shape})"
        outputs = FORMATS[fmt].run(owner, path, dtype, images if dtype == "uint8" else scaled)
        wanted = {"probabilities"} | ({"mask"} if threshold is not None else set())
        if set(outputs) != wanted:
            raise ExportVerificationError(
                f"{owner}: {where} returns outputs {sorted(outputs)}; expected {sorted(wanted)}")
        probabilities = outputs["probabilities"]
        if probabilities.shape != expected.shape:
            raise ExportVerificationError(
                f"{owner}: {where} returns probabilities of shape {probabilities.shape}; the "
                f"Keras model gives {expected.shape}")
        difference = float(np.max(np.abs(probabilities.astype(np.float64) - expected)))
        if not difference <= tolerance:
            raise ExportVerificationError(
                f"{owner}: {where} differs from the Keras model by up to {difference:.3g} in "
                f"probability, more than the tolerance {tolerance:g}; the artifact was left "
                f"there for inspection: do not serve it")
        worst = max(worst, difference)
        if threshold is not None:
            mask = outputs["mask"]
            decided = np.abs(expected - threshold) > tolerance
            wrong = int(np.sum((mask != (expected > threshold)) & decided))
            if mask.dtype != np.uint8 or wrong:
                raise ExportVerificationError(
                    f"{owner}: {where} returns a {mask.dtype} mask with {wrong} pixel(s) unlike "
                    f"the Keras probabilities > {threshold} (pixels within the tolerance of "
                    f"the threshold not counted); expected uint8 and 0")
    return worst


def _mask_output_only(owner, model):
    """A model with a dict of outputs holding ``"mask"`` (``UNetPlusPlus(classification_head=K)``)
    is served by its mask alone, with a warning: the zero padding of the serving graph would
    change what a global pooling head sees, so its image-level outputs are not exported."""
    if not isinstance(model, keras.Model) or not isinstance(model.output, dict) \
            or "mask" not in model.output:
        return model
    warnings.warn(f"{owner}: model {model.name!r} has outputs {sorted(model.output)}; the "
                  f"export serves the 'mask' output only (the padding to a multiple would "
                  f"change the image-level outputs). Export "
                  f"keras.Model(model.inputs, model.output['mask']) to silence this.",
                  UserWarning, stacklevel=3)
    return keras.Model(model.input, model.output["mask"], name=model.name)


def _export(owner, model, path, format, tta, threshold, multiple, uint8_scale, input_dtypes,
            image_size, verify, tolerance, verbose):
    if format not in FORMATS:
        fail(owner, "format", format, f"must be one of {', '.join(map(repr, FORMATS))}")
    model = _mask_output_only(owner, model)
    check_servable(owner, model)
    if threshold is not None:
        threshold = check_number(owner, "threshold", threshold, minimum=0.0, maximum=1.0)
    multiple = check_number(owner, "multiple", multiple, minimum=1, integer=True)
    uint8_scale = check_number(owner, "uint8_scale", uint8_scale, minimum=0.0,
                               min_inclusive=False)
    tolerance = check_number(owner, "tolerance", tolerance, minimum=0.0, min_inclusive=False)
    if tta is not None and not isinstance(tta, (str, tuple, list, dict)):
        fail(owner, "tta", tta, "must be None, a TestTimeAugmentation preset or tuple, or a dict")
    input_dtypes = _check_input_dtypes(owner, format, input_dtypes)
    image_size = _check_image_size(owner, image_size)
    path = _check_path(owner, format, path)

    served = tta_model(model, tta)
    channels = served.input_shape[-1]
    specs = {dtype: input_spec(dtype, channels, image_size) for dtype in input_dtypes}
    serve = serving_function(served, threshold, multiple, uint8_scale)
    FORMATS[format].write(owner, served, serve, specs, path, verbose=verbose)
    if verbose:
        print(f"{owner}: wrote {format} to {path} "
              f"(endpoints: {', '.join(ENDPOINTS[d] for d in input_dtypes)})")
    if verify:
        difference = verify_artifact(owner, format, path, served, input_dtypes=input_dtypes,
                                     image_size=image_size, threshold=threshold,
                                     multiple=multiple, uint8_scale=uint8_scale,
                                     tolerance=tolerance)
        if verbose:
            print(f"{owner}: verified with its runtime: max |probability difference| from "
                  f"Keras = {difference:.3g} (tolerance {tolerance:g})")
    return path


def export_model(model, path, format="tf_saved_model", tta=None, threshold=None, multiple=32,
                 uint8_scale=1.0, input_dtypes=None, image_size=None, verify=True,
                 tolerance=1e-4, verbose=False):
    """Export ``model`` for serving as a SavedModel, an ONNX graph or a LiteRT model.

    Every format serves the same graph (:func:`~keras_seg_extras.export.serving_function`):
    uint8 or float32 images (B, H, W, C) of any height and width, zero-padded bottom/right to
    ``multiple`` and cropped back, TTA inside, outputs ``probabilities`` float32 (B, H, W, K)
    and, with a ``threshold``, ``mask`` uint8 = probabilities > threshold.

    ===================  ========================  ==========================================
    format               artifact                  entry points (input ``images``)
    ===================  ========================  ==========================================
    ``tf_saved_model``   directory                 ``serve`` (float32, ``serving_default``),
                                                   ``serve_uint8``
    ``onnx``             ``*.onnx`` file           the graph; one dtype, default uint8
    ``litert``           ``*.tflite`` file         signatures ``serve``, ``serve_uint8``
    ===================  ========================  ==========================================

    Args:
        model: a ``keras.Model`` with input shape (None, None, C) and one output of
            probabilities (B, H, W, K), e.g. ``UNetPlusPlus(...)``, ``with_tta(...)``,
            ``ensemble(...)``. The TensorFlow backend. A model with a dict of outputs holding
            ``"mask"`` (``UNetPlusPlus(classification_head=K)``) is served by its mask alone,
            with a warning.
        path: the directory (``tf_saved_model``) or file (``.onnx``, ``.tflite``) to write.
        format: ``"tf_saved_model"``, ``"onnx"`` or ``"litert"``.
        tta: None, or a :class:`~keras_seg_extras.inference.TestTimeAugmentation` ``transforms``
            preset/tuple ("hflip" is the report's), or a dict of its arguments
            (``{"transforms": "flips", "scales": (1.0, 1.5)}``), applied inside the export.
        threshold: None, or a number in [0, 1]: the export also returns ``"mask"``.
        multiple: height and width are zero-padded to a multiple of this (32), and cropped back.
        uint8_scale: uint8 images are cast to float32 and multiplied by this (1.0 keeps
            [0, 255], which UNetPlusPlus expects; 1/255 for models trained on [0, 1]). Float
            images are passed unchanged.
        input_dtypes: the input dtypes to serve, from "float32" and "uint8". Default both
            (one endpoint each) for ``tf_saved_model`` and ``litert``; ``("uint8",)`` for
            ``onnx``, whose graph takes one.
        image_size: None (any height and width, every format) or a fixed (height, width), for
            runtimes or accelerators that need static shapes (LiteRT GPU delegates, TensorRT
            engines built without profiles); the batch stays dynamic.
        verify: run the written artifact with the format's own runtime (TensorFlow, ONNX Runtime,
            the LiteRT interpreter) on a batch of two random uint8 images of an odd size
            (:data:`PROBE_SIZE`, or ``image_size``) and their float32 twin, and compare with the
            Keras model; raise :class:`ExportVerificationError` with the figure when
            probabilities differ by more than ``tolerance`` or masks differ (pixels within
            ``tolerance`` of the threshold excepted).
        tolerance: absolute probability tolerance of the verification (1e-4).
        verbose: print what was written and the verification figure.

    Returns:
        ``path``.

    Raises:
        ValueError: a bad argument, named with its value.
        ImportError: the converter or runtime of ``format`` is missing (the ``export`` extra).
        ExportVerificationError: the artifact does not reproduce the Keras model.

    Example (serving without keras_seg_extras)::

        kse.export_model(model, "export/siim.onnx", format="onnx", tta="hflip", threshold=0.5)
        # elsewhere, ONNX Runtime only:
        session = onnxruntime.InferenceSession("export/siim.onnx")
        probabilities, mask = session.run(["probabilities", "mask"], {"images": images_uint8})
    """
    return _export("export_model", model, path, format, tta, threshold, multiple, uint8_scale,
                   input_dtypes, image_size, verify, tolerance, verbose)


def export_saved_model(model, path, tta=None, threshold=None, multiple=32, uint8_scale=1.0,
                       input_dtypes=None, image_size=None, verify=True, tolerance=1e-4,
                       verbose=False):
    """``export_model(..., format="tf_saved_model")``, kept under its first name: a SavedModel
    with endpoints ``serve`` (float32, also ``serving_default``) and ``serve_uint8``; the
    arguments are :func:`export_model`'s.

    Example (serving without keras_seg_extras)::

        kse.export_saved_model(model, "export/siim", tta="hflip", threshold=0.5)
        # elsewhere, TensorFlow only:
        served = tf.saved_model.load("export/siim")
        out = served.serve_uint8(images_uint8)  # {"probabilities": ..., "mask": ...}
    """
    return _export("export_saved_model", model, path, "tf_saved_model", tta, threshold,
                   multiple, uint8_scale, input_dtypes, image_size, verify, tolerance, verbose)
