"""The three artifact formats: how each writes the serving graph and how its own runtime runs it.

Every writer receives the same ``serve`` function (:func:`.serving.serving_function`) and one
``images`` TensorSpec per input dtype; every runner loads the written artifact with the
format's runtime alone (TensorFlow's SavedModel loader, ONNX Runtime, the LiteRT interpreter)
and returns its outputs as NumPy arrays, which is what the export-time verification compares
with Keras.
"""

import logging
import os
import tempfile

import keras
import numpy as np

from keras_seg_extras._common import OptionalModule
from keras_seg_extras.export.serving import ENDPOINTS

tf = OptionalModule("tensorflow", "tf")

#: ONNX operator set of the exported graphs: supported by ONNX Runtime >= 1.12, TensorRT >= 8.4
#: and OpenVINO >= 2022.1.
ONNX_OPSET = 17


def _needs(owner, fmt, *modules):
    """Import the optional converter/runtime modules of a format, or say how to install them."""
    imported = []
    for module in modules:
        try:
            imported.append(__import__(module, fromlist=["_"]))
        except ImportError as error:
            raise ImportError(
                f"{owner}: format={fmt!r} needs the package of module {module!r}, which is not "
                f"installed ({error}); install the export extra: "
                f"pip install 'keras-seg-extras[export]'") from error
    return imported


class _SavedModelFormat:
    """A SavedModel directory with one endpoint per input dtype (TensorFlow or TF-Serving)."""

    name = "tf_saved_model"
    suffix = None  # a directory

    def write(self, owner, model, serve, specs, path, verbose=False):
        archive = keras.export.ExportArchive()
        archive.track(model)
        for dtype, spec in specs.items():  # the first endpoint is also serving_default
            archive.add_endpoint(ENDPOINTS[dtype], tf.function(serve), input_signature=[spec])
        archive.write_out(str(path), verbose=False)

    def run(self, owner, path, dtype, images):
        served = tf.saved_model.load(str(path))
        outputs = getattr(served, ENDPOINTS[dtype])(tf.constant(images))
        return {key: value.numpy() for key, value in outputs.items()}


class _OnnxFormat:
    """One ``.onnx`` graph (tf2onnx), input ``images``, outputs ``probabilities`` and ``mask``.

    An ONNX graph has a single entry point, so an ONNX file takes one input dtype. Dynamic axes
    are named ``batch``, ``height`` and ``width``.
    """

    name = "onnx"
    suffix = ".onnx"

    def write(self, owner, model, serve, specs, path, verbose=False):
        tf2onnx, onnx = _needs(owner, self.name, "tf2onnx", "onnx")
        (spec,) = specs.values()
        if not verbose:
            logging.getLogger("tf2onnx").setLevel(logging.ERROR)
        # Frozen here rather than by tf2onnx.convert.from_function, which makes tensors the
        # graph captures (keras' Normalization mean and variance in EfficientNets) extra graph
        # inputs instead of constants, and runs TensorFlow's graph optimiser twice.
        # TensorFlow's freezing of a concrete function (what tf2onnx and the TFLite converter
        # use); it has no public name.
        from tensorflow.python.framework.convert_to_constants import (
            convert_variables_to_constants_v2)

        function = tf.function(serve).get_concrete_function(spec)
        images = function.inputs[0].name
        outputs = {tensor.name: key for key, tensor in function.structured_outputs.items()}
        graph_def = convert_variables_to_constants_v2(
            function, lower_control_flow=False, aggressive_inlining=True
        ).graph.as_graph_def(add_shapes=True)
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def, input_names=[images], output_names=list(outputs), opset=ONNX_OPSET,
            tensors_to_rename={images: "images", **outputs})
        for value in list(proto.graph.input) + list(proto.graph.output):
            dims = value.type.tensor_type.shape.dim
            for dim, name in zip(dims, ("batch", "height", "width")):
                if not dim.HasField("dim_value"):
                    dim.dim_param = name
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))

    def run(self, owner, path, dtype, images):
        (onnxruntime,) = _needs(owner, self.name, "onnxruntime")
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, {"images": images})))


class _LiteRTFormat:
    """One ``.tflite`` flatbuffer with a signature per input dtype, TFLite builtin ops only
    (no Flex delegate needed), for the LiteRT interpreter (``ai_edge_litert``)."""

    name = "litert"
    suffix = ".tflite"

    def write(self, owner, model, serve, specs, path, verbose=False):
        with tempfile.TemporaryDirectory() as saved_model:
            # Not an ExportArchive: the converter keeps only `serving_default` of a SavedModel
            # with a `serve` attribute (what Keras' model.export writes). The module tracks the
            # tf.Variables under the Keras variables: tracked as Keras variables, they are not
            # frozen and the converted graph reads uninitialised resources (NaN outputs).
            module = tf.Module()
            module.variables_to_freeze = [variable.value for variable in model.variables]
            function = tf.function(serve)
            tf.saved_model.save(module, saved_model, signatures={
                ENDPOINTS[dtype]: function.get_concrete_function(spec)
                for dtype, spec in specs.items()})
            converter = tf.lite.TFLiteConverter.from_saved_model(
                saved_model, signature_keys=[ENDPOINTS[dtype] for dtype in specs])
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            flatbuffer = converter.convert()
        with open(path, "wb") as file:
            file.write(flatbuffer)

    def run(self, owner, path, dtype, images):
        (interpreter,) = _needs(owner, self.name, "ai_edge_litert.interpreter")
        runner = interpreter.Interpreter(model_path=str(path)).get_signature_runner(
            ENDPOINTS[dtype])
        return {key: np.asarray(value) for key, value in runner(images=images).items()}


FORMATS = {f.name: f for f in (_SavedModelFormat(), _OnnxFormat(), _LiteRTFormat())}

