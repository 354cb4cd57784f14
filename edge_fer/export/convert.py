"""Converters: Keras → TFLite (``quantization.converter``'s :func:`to_tflite`, used from here by the
exporter), Keras → ONNX (tf2onnx), ONNX → int8 QDQ (onnxruntime).

Each returns the serialised model as bytes; nothing here writes the final file (the exporter
verifies first, then writes atomically).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from io import StringIO
from pathlib import Path


from .._tf import quiet_onnxruntime, tf as _tf
from ..calibration import CalibrationMethod, CalibrationSet
from ..runtime.onnx_model import unshare_initializers
# the TFLite converter lives below export, where quantization's range search uses it too
from ..quantization.converter import IO_TYPES, fix_bias_scales, keras_layers, to_tflite, unknown_layer  # noqa: F401

ONNX_OPSET = 17
log = logging.getLogger(__name__)


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


def onnx_nodes_to_exclude(node_names: list[str], wanted: list[str]) -> list[str]:
    """ONNX nodes (tf2onnx names them ``model/LAYER/op``) for ``--keep-float`` names: Keras layer names, report
    labels (``a+b``) or TFLite node names; for ONNX Runtime's ``quantize_static(nodes_to_exclude=...)``."""
    def layer_of(name):
        segs = name.split("/")
        return segs[1] if len(segs) >= 3 else None

    out = []
    for w in wanted:
        layers = set(w.split("+")) | set(keras_layers(w))
        hit = [n for n in node_names if n == w or layer_of(n) in layers]
        if not hit:
            raise unknown_layer(w, sorted({layer_of(n) for n in node_names} - {None}), "no ONNX node of that layer")
        out += [n for n in hit if n not in out]
    return out


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
