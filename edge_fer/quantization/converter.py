"""The TFLite converter: a Keras model (float or QAT) as a float32, float16, dynamic, int8 or int16x8
flatbuffer, layers kept in float (``--keep-float``), and the int8 bias-scale repair.

    from edge_fer.quantization.converter import to_tflite
    blob = to_tflite(model, "int8", calib=CalibrationSet.from_data(...))

``edgefer export`` writes its TFLite artefacts with :func:`to_tflite`, the range search of
``quantization.ranges`` judges each candidate by the same conversion, and ``edgefer inspect`` builds
its calibrated and partly-quantised models from :func:`calibrated_model` and :func:`quantise`.
Returns bytes; nothing here writes a file.
"""

from __future__ import annotations

import difflib
import logging
import re
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .._tf import quiet_native_stderr, tf as _tf
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..calibration import CalibrationSet

log = logging.getLogger(__name__)

IO_TYPES = ("int8", "uint8", "float")


# ------------------------------------------------------------------------------------- node names

def keras_layers(node: str) -> list[str]:
    """The Keras layer names a converter node was fused from, in graph order.

    TFLite names a fused node by its tensors, last op first: ``cnn/block1_relu1/Relu;cnn/block1_bn1/
    FusedBatchNormV3;cnn/block1_conv1/Conv2D`` → ``[block1_conv1, block1_bn1, block1_relu1]``."""
    names = []
    for part in reversed(node.split(";")):
        segs = part.split("/")
        name = segs[1].removeprefix("quant_") if len(segs) >= 3 else None  # a QAT model's layers: quant_LAYER
        if name and name not in names:
            names.append(name)
    return names


def layer_label(node: str) -> str:
    return "+".join(keras_layers(node)) or node


def layer_labels(nodes) -> list[str]:
    """The labels of ``nodes``, each once, in order: two nodes of one layer (a convolution and its
    activation) read as that layer once."""
    return list(dict.fromkeys(layer_label(n) for n in nodes))


def unknown_layer(name: str, choices: list[str], what: str) -> ConfigError:
    """The error for a --keep-float name that matches nothing: the close matches and where names are listed."""
    close = difflib.get_close_matches(name, choices, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(f"--keep-float {name!r}: {what}; {hint}`edgefer inspect RUN` lists them "
                       f"(e.g. {', '.join(choices[:4])})")

def resolve_keep_float(nodes: list[str], wanted: list[str]) -> list[str]:
    """The converter nodes for ``--keep-float`` names: a Keras layer name, a report label or a node name."""
    picked, choices = [], sorted({n for node in nodes for n in [*keras_layers(node), layer_label(node)]})
    for w in wanted:
        hit = [n for n in nodes if w == n or w == layer_label(n) or w in keras_layers(n)]
        if not hit:
            raise unknown_layer(w, choices, "no quantised layer of that name")
        picked += [n for n in hit if n not in picked]
    return picked


def keras_converter(model, batch: int | None = None):
    """A TFLiteConverter of ``model``'s inference function with a fixed (or dynamic) batch, frozen.

    It converts the graph ``TFLiteConverter.from_keras_model`` converts, into the same model (tests/
    test_qat_builders.py converts both ways), without first saving the whole tf_keras model as a SavedModel,
    which is most of that route's time. The frozen function has no SignatureDef: pass what it converts through
    :func:`with_signature`."""
    return _tf().lite.TFLiteConverter.from_concrete_functions([fixed_batch_function(model, batch)])


def with_signature(blob: bytes, model) -> bytes:
    """``blob`` (converted from ``model`` by :func:`keras_converter`) with the ``serving_default`` SignatureDef
    and the I/O tensor names ``from_keras_model`` writes: signature runners look a model up by it, and the
    ONNX file made from the TFLite one takes its input name from it. A model that has one is returned as is."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    if m.signatureDefs:
        return blob
    sg = m.subgraphs[0]
    key_in = (getattr(model, "input_names", None) or ["image"])[0]
    key_out = (getattr(model, "output_names", None) or ["output_0"])[0]
    sig = schema.SignatureDefT()
    sig.signatureKey, sig.subgraphIndex = "serving_default", 0
    sig.inputs, sig.outputs = [], []
    for maps, indices, key, name in ((sig.inputs, sg.inputs, key_in, f"serving_default_{key_in}:0"),
                                     (sig.outputs, sg.outputs, key_out, "StatefulPartitionedCall:0")):
        for n, index in enumerate(indices):  # one input and one output for edge_fer's models
            t = schema.TensorMapT()
            t.name, t.tensorIndex = (key if n == 0 else f"{key}_{n}"), int(index)
            maps.append(t)
            sg.tensors[index].name = name if n == 0 else f"{name[:-2]}:{n}"
    m.signatureDefs = [sig]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def tflite_converter(model, calib, *, batch=None, activations16=False):
    """A TFLiteConverter for ``model`` quantised with ``calib``'s faces (int16 activations with ``activations16``)."""
    tf = _tf()
    conv = keras_converter(model, batch)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calib.tflite_dataset
    if activations16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv


def calibrated_model(model, calib, *, batch=None) -> bytes:
    """The float model with the calibration set's ranges recorded, not yet quantised."""
    conv = tflite_converter(model, calib, batch=batch)
    conv.experimental_mlir_quantizer = True
    conv._experimental_calibrate_only = True
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        return conv.convert()


def quantised_nodes(calibrated: bytes) -> dict[str, str]:
    """Output tensor name → op type of the calibrated model's ops, in graph order (the denylist takes the names)."""
    tf = _tf()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_content=calibrated,
                                     experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    tensors = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return {tensors[o]: op["op_name"] for op in interp._get_ops_details() for o in op["outputs"] if o in tensors}


def quantise(calibrated: bytes, *, keep_float=(), io: str = "float", per_tensor: bool = False) -> bytes:
    """int8 model from a calibrated one with the nodes in ``keep_float`` left in float."""
    from tensorflow.lite.python import convert as tfl_convert

    tf = _tf()
    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float": tf.float32}[io]
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        return tfl_convert.mlir_quantize(calibrated, disable_per_channel=per_tensor, input_data_type=io_type,
                                         output_data_type=io_type, denylisted_nodes=list(keep_float) or None)


# ------------------------------------------------------------------------------------- conversion

def fixed_batch_function(model, batch: int | None):
    """A concrete function of ``model`` with a fixed (or dynamic) batch dimension."""
    tf = _tf()
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32, name="image")
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return fn.get_concrete_function()


def _convert_16x8(conv) -> bytes:
    """int16x8, or — where ops have no 16x8 kernel (TFLite has none for HARD_SWISH, for one) — int16x8
    with those ops in float, the converter's documented fallback (``TFLITE_BUILTINS`` beside the 16x8 set)."""
    tf = _tf()
    try:
        return conv.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises ConverterError / RuntimeError here
        ops = sorted(set(re.findall(r"16x8-bit not yet supported for op: '(\w+)'", str(e))))
        if not ops:
            raise
    log.info("int16x8 TFLite: no 16x8 kernel for %s; those ops compute in float", ", ".join(ops))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]
    return conv.convert()


def to_tflite(model, precision: str, *, calib: CalibrationSet | None = None, io: str = "int8",
              batch: int | None = None, per_tensor: bool = False, keep_float=()) -> bytes:
    """Convert a Keras (float or QAT) model. ``io`` applies to int8 models: their input/output type.
    ``per_tensor``: int8 kernels with one scale each instead of one per output channel. ``keep_float``:
    layers (Keras names or converter nodes, see ``edgefer inspect``) an int8 model computes in float."""
    tf = _tf()
    if io not in IO_TYPES:
        raise ConfigError(f"unknown int8 I/O type {io!r}; expected {', '.join(IO_TYPES)}")
    if keep_float and precision == "int8":
        if calib is None:
            raise ConfigError("int8 conversion needs a calibration set")
        calib.check_model_input(model.input_shape)
        calibrated = calibrated_model(model, calib, batch=batch)
        nodes = resolve_keep_float(list(quantised_nodes(calibrated)), list(keep_float))
        log.info("int8 TFLite: %d node(s) kept in float: %s", len(nodes), ", ".join(nodes))
        return with_signature(fix_bias_scales(quantise(calibrated, keep_float=nodes, io=io, per_tensor=per_tensor))[0],
                              model)
    conv = keras_converter(model, batch)
    if precision == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        # tflite-runtime 2.14 (common on Raspberry Pi) cannot run per-channel dense layers
        # ("FULLY_CONNECTED version 12") that TF 2.21 emits by default.
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif precision == "int8":
        if calib is None:
            raise ConfigError("int8 conversion needs a calibration set")
        calib.check_model_input(model.input_shape)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calib.tflite_dataset
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = {"int8": tf.int8, "uint8": tf.uint8, "float": tf.float32}[io]
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
        conv._experimental_disable_per_channel = per_tensor
    elif precision == "int16x8":  # 16-bit activations, 8-bit weights; float I/O
        if calib is None:
            raise ConfigError("int16x8 conversion needs a calibration set")
        calib.check_model_input(model.input_shape)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calib.tflite_dataset
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
        conv._experimental_disable_per_channel = per_tensor
    elif precision != "float32":
        raise ConfigError(f"unknown TFLite precision {precision!r}")
    if precision == "int16x8":
        blob = _convert_16x8(conv)
    else:
        blob = conv.convert()
    if precision == "int8":
        blob, fixed = fix_bias_scales(blob)
        if fixed:
            log.info("int8 TFLite: %d bias tensor(s) requantised to input scale × weight scale", fixed)
    return with_signature(blob, model)


# Builtin operator codes (TFLite schema) whose int32 bias the kernels read in units of input scale ×
# weight scale: the input indices of (activation, weights, bias).
_BIAS_OPS = {3: (0, 1, 2), 4: (0, 1, 2), 9: (0, 1, 2),  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
             67: (2, 1, 3)}  # TRANSPOSE_CONV
_INT32 = 2  # TensorType.INT32


def bias_operands(model):
    """(input, weights, bias) tensors of each op with a bias (conv, depthwise, dense, transpose conv) of a
    flatbuffer model object (``flatbuffer_utils.convert_bytearray_to_object``), in graph order."""
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            at = _BIAS_OPS.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if at is not None and len(op.inputs) > at[2] and op.inputs[at[2]] >= 0:
                yield tuple(sg.tensors[op.inputs[i]] for i in at)


def fix_bias_scales(blob: bytes) -> tuple[bytes, int]:
    """Requantise each int32 bias whose scale is not input scale × weight scale; returns (model, how many).

    TFLite's integer kernels never read a bias tensor's own scale: they add the int32 values to the
    accumulator, i.e. in units of input scale × weight scale. TF 2.21's converter writes per-tensor QAT
    kernels (FakeQuantWithMinMaxVars, narrow range) with biases quantised at another scale (off by
    254/255, and by 241/255 after the builders' input rescaling), so every such layer adds a slightly
    wrong bias (a half-width cnn: int8 agreeing with its QAT model on 94% of faces instead of 99%).
    ONNX from the same file reads the declared scale and is right. Rewriting the values at the scale the
    kernels assume keeps what the converter meant; a consistent model comes back unchanged.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    fixed = 0
    for x, w, b in bias_operands(model):
        buf = model.buffers[b.buffer]
        if b.type != _INT32 or None in (b.quantization, x.quantization, w.quantization) or buf.data is None:
            continue
        s_x, s_w, s_b = (np.asarray(t.quantization.scale, np.float64) for t in (x, w, b))
        q = np.frombuffer(bytes(bytearray(buf.data)), dtype="<i4")
        want = s_x * s_w
        # One scale for the whole tensor or one per channel; anything else is left to the converter.
        if q.size == 0 or s_x.size != 1 or s_b.size not in (1, q.size) or want.size not in (1, q.size):
            continue
        if np.allclose(s_b, want, rtol=1e-6, atol=0):
            continue
        requant = np.clip(np.round(q * s_b / want), -(2**31), 2**31 - 1).astype("<i4")
        buf.data = np.frombuffer(requant.tobytes(), dtype=np.uint8)
        b.quantization.scale = want.astype(np.float32)
        b.quantization.zeroPoint = np.zeros(want.size, np.int64)
        fixed += 1
    if not fixed:
        return blob, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), fixed
