"""Converters: Keras → TFLite (TFLiteConverter), Keras → ONNX (tf2onnx), ONNX → int8 QDQ (onnxruntime).

Each returns the serialised model as bytes; nothing here writes the final file (the exporter
verifies first, then writes atomically).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from io import StringIO
from pathlib import Path

import numpy as np

from .._tf import quiet_onnxruntime, tf as _tf
from ..calibration import CalibrationMethod, CalibrationSet
from ..runtime.onnx_model import unshare_initializers
from ..errors import ConfigError

IO_TYPES = ("int8", "uint8", "float")
ONNX_OPSET = 17
log = logging.getLogger(__name__)


def _fixed_batch_function(model, batch: int | None):
    """A concrete function of ``model`` with a fixed (or dynamic) batch dimension."""
    tf = _tf()
    spec = tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32, name="image")
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return fn.get_concrete_function()


def to_tflite(model, precision: str, *, calib: CalibrationSet | None = None, io: str = "int8",
              batch: int | None = None, per_tensor: bool = False, keep_float=()) -> bytes:
    """Convert a Keras (float or QAT) model. ``io`` applies to int8 models: their input/output type.
    ``per_tensor``: int8 kernels with one scale each instead of one per output channel. ``keep_float``:
    layers (Keras names or converter nodes, see ``edgefer inspect``) an int8 model computes in float."""
    tf = _tf()
    if io not in IO_TYPES:
        raise ConfigError(f"unknown int8 I/O type {io!r}; expected {', '.join(IO_TYPES)}")
    if keep_float and precision == "int8":
        from .inspect import calibrated_model, quantise, quantised_nodes, resolve_keep_float

        if calib is None:
            raise ConfigError("int8 conversion needs a calibration set")
        calib.check_model_input(model.input_shape)
        calibrated = calibrated_model(model, calib, batch=batch)
        nodes = resolve_keep_float(list(quantised_nodes(calibrated)), list(keep_float))
        log.info("int8 TFLite: %d node(s) kept in float: %s", len(nodes), ", ".join(nodes))
        return fix_bias_scales(quantise(calibrated, keep_float=nodes, io=io, per_tensor=per_tensor))[0]
    if batch is None:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([_fixed_batch_function(model, batch)], model)
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
    blob = conv.convert()
    if precision == "int8":
        blob, fixed = fix_bias_scales(blob)
        if fixed:
            log.info("int8 TFLite: %d bias tensor(s) requantised to input scale × weight scale", fixed)
    return blob


# Builtin operator codes (TFLite schema) whose int32 bias the kernels read in units of input scale ×
# weight scale: the input indices of (activation, weights, bias).
_BIAS_OPS = {3: (0, 1, 2), 4: (0, 1, 2), 9: (0, 1, 2),  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
             67: (2, 1, 3)}  # TRANSPOSE_CONV
_INT32 = 2  # TensorType.INT32


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
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            at = _BIAS_OPS.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if at is None or len(op.inputs) <= at[2] or op.inputs[at[2]] < 0:
                continue
            x, w, b = (sg.tensors[op.inputs[i]] for i in at)
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


def to_onnx_float(model, *, batch: int | None = None) -> bytes:
    tf = _tf()
    import tf2onnx

    spec = (tf.TensorSpec([batch, *model.input_shape[1:]], tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET)
    return proto.SerializeToString()


def onnx_int8_from_float(float_onnx: bytes, calib: CalibrationSet,
                         method: CalibrationMethod = CalibrationMethod.MINMAX, *, per_tensor: bool = False,
                         keep_float=()) -> bytes:
    """Post-training static quantisation with ONNX Runtime: QDQ, int8 weights (per channel unless
    ``per_tensor``) and activations; the layers in ``keep_float`` stay float (``nodes_to_exclude``)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, create_calibrator, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quiet_onnxruntime()  # its sessions here (pre-processing, calibration) log at ORT's default level otherwise
    with tempfile.TemporaryDirectory(prefix="edgefer-onnx-") as d:
        src, pre, out = Path(d) / "float.onnx", Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        src.write_bytes(float_onnx)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        input_name = graph.input[0].name
        exclude = []
        if keep_float:
            from .inspect import onnx_nodes_to_exclude

            exclude = onnx_nodes_to_exclude([n.name for n in graph.node], list(keep_float))
            log.info("int8 ONNX: %d node(s) kept in float: %s", len(exclude), ", ".join(exclude))
        # The ranges are computed here rather than inside quantize_static, because quantize_static
        # does not pass histogram sizes on: its entropy calibration uses 128 bins for a 128-level
        # search, which can only pick the full range — i.e. it silently equals min/max.
        calibrator = create_calibrator(
            pre, [], augmented_model_path=str(Path(d) / "augmented.onnx"),
            calibrate_method=method.ort(), extra_options=_HISTOGRAM_OPTIONS[method],
        )
        with contextlib.redirect_stdout(StringIO()):  # ORT prints histogram progress
            calibrator.collect_data(calib.ort_reader(input_name))
            ranges = calibrator.compute_data()
        cache = Path(d) / "ranges.json"
        save_tensors_data(ranges, cache)
        del calibrator
        quantize_static(
            str(pre), str(out), None,
            quant_format=QuantFormat.QDQ, per_channel=not per_tensor,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=method.ort(), calibration_cache_path=str(cache), nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        proto = onnx.load(str(out))
    if exclude:
        _float_outputs(proto, {o for n in graph.node if n.name in exclude for o in n.output})
    # ORT's quantiser may also read one quantised constant from several places (see unshare_initializers)
    unshare_initializers(proto)
    return proto.SerializeToString()


def _float_outputs(model, outputs: set[str]) -> None:
    """Drop the QuantizeLinear → DequantizeLinear pairs on ``outputs`` (of nodes kept float), so their
    consumers read float. Left in place, ORT's graph optimiser fuses DQ → float Gemm → Q into an int8
    kernel again, quantising the very weights the node was kept float for."""
    g = model.graph
    graph_outputs = {o.name for o in g.output}
    drop = []
    for q in [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] in outputs]:
        dqs = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        if len(dqs) != sum(q.output[0] in n.input for n in g.node) or any(d.output[0] in graph_outputs for d in dqs):
            continue  # the quantised tensor has other readers, or is what the model returns
        for dq in dqs:
            for n in g.node:
                for i, name in enumerate(n.input):
                    if name == dq.output[0]:
                        n.input[i] = q.input[0]
        drop += [q, *dqs]
    for n in drop:
        g.node.remove(n)


_HISTOGRAM_OPTIONS = {
    CalibrationMethod.MINMAX: {},
    CalibrationMethod.ENTROPY: {"num_bins": 2048, "num_quantized_bins": 128},
    CalibrationMethod.PERCENTILE: {"num_bins": 2048, "percentile": 99.999},
}


def onnx_from_tflite(tflite_bytes: bytes) -> bytes:
    """tf2onnx from an int8 TFLite model: a QDQ ONNX that keeps the TFLite (e.g. QAT) ranges."""
    import tf2onnx

    with tempfile.TemporaryDirectory(prefix="edgefer-onnx-") as d:
        src = Path(d) / "model.tflite"
        src.write_bytes(tflite_bytes)
        proto, _ = tf2onnx.convert.from_tflite(str(src), opset=ONNX_OPSET)
    # tf2onnx shares constants and zero points between DequantizeLinear nodes: ORT's exact-int8 mode cannot load them
    unshare_initializers(proto)
    return proto.SerializeToString()
