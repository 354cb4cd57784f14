"""What a .tflite/.onnx file is made of, read without running it: inputs, outputs and operators.

    from edge_fer.device_bench.ops import inspect_model
    info = inspect_model(Path("face_detection_front.tflite"))
    info["ops"]["int8_share"], info["inputs"][0]["shape"]

The bench records this for every model, so a model edge_fer did not export (no metadata) still
says what it asks of a device: its operator types and how many of its compute operators run in
int8. Quantise/dequantise nodes are plumbing, counted apart. TFLite: an operator is int8 when its
tensors are integer (int32 biases aside) and at least one is int8/uint8; ONNX: a QLinear*/*Integer
operator, or one between DequantizeLinear inputs and a QuantizeLinear output (ORT runs such a
"QDQ" group as one int8 kernel).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError, ModelError, RuntimeUnavailable

TFLITE_QDQ = {"QUANTIZE", "DEQUANTIZE"}
ONNX_QDQ = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def _summary(by_type: Counter, int8: int, qdq: int, not_int8: Counter | None = None) -> dict:
    total = sum(by_type.values())
    return {"total": total, "int8": int8, "int8_share": round(int8 / total, 4) if total else 0.0,
            "quantize_dequantize": qdq, "by_type": dict(sorted(by_type.items())),
            "not_int8": dict(sorted((not_int8 or Counter()).items()))}


def _tflite(path: Path) -> dict:
    from ..runtime.tflite import load_interpreter

    interp, _ = load_interpreter(path, xnnpack=False)
    by_type, int8, qdq, not_int8 = Counter(), 0, 0, Counter()
    for op in interp._get_ops_details():
        if op["op_name"] in TFLITE_QDQ:
            qdq += 1
            continue
        by_type[op["op_name"]] += 1
        kinds = {np.dtype(t) for t in [*op.get("operand_types", []), *op.get("result_types", [])] if t is not None}
        if kinds & {np.dtype(np.int8), np.dtype(np.uint8)} and not any(k.kind == "f" for k in kinds):
            int8 += 1
        else:
            not_int8[op["op_name"]] += 1

    def io(details):
        return [{"name": d["name"], "shape": [int(s) for s in d["shape_signature"]], "dtype": np.dtype(d["dtype"]).name}
                for d in details]

    return {"inputs": io(interp.get_input_details()), "outputs": io(interp.get_output_details()),
            "ops": _summary(by_type, int8, qdq, not_int8)}


def _onnx(path: Path) -> dict:
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    inits = {t.name for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    int8_tensors, int8_nodes = set(), set()
    for n in g.node:  # nodes are in topological order
        data = [i for i in n.input if i and i not in inits]
        if n.op_type == "QuantizeLinear" or n.op_type.startswith("QLinear") or n.op_type.endswith("Integer") or (
                n.op_type not in ONNX_QDQ and data and all(i in int8_tensors for i in data)):
            int8_tensors.update(n.output)  # quantised data, or int8 data only moved (Reshape, Transpose)
            if n.op_type not in ONNX_QDQ:
                int8_nodes.add(n.name or id(n))
            continue
        if n.op_type in ONNX_QDQ or not any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                                            for i in n.input):
            continue
        chain, node = [n], n  # a QDQ group: DequantizeLinear → op (→ fused activation …) → QuantizeLinear
        while len(node.output) == 1 and len(consumers.get(node.output[0], [])) == 1:
            nxt = consumers[node.output[0]][0]
            if nxt.op_type == "QuantizeLinear":
                int8_nodes.update(c.name or id(c) for c in chain)
                break
            if nxt.op_type in ONNX_QDQ:
                break
            chain.append(nxt)
            node = nxt
    by_type = Counter(n.op_type for n in g.node if n.op_type not in ONNX_QDQ)
    qdq = sum(n.op_type in ONNX_QDQ for n in g.node)
    int8 = len(int8_nodes)
    not_int8 = Counter(n.op_type for n in g.node if n.op_type not in ONNX_QDQ and (n.name or id(n)) not in int8_nodes)

    def io(values):
        out = []
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append({"name": v.name, "shape": shape, "dtype": np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name})
        return out

    return {"inputs": io(g.input), "outputs": io(g.output), "ops": _summary(by_type, int8, qdq, not_int8)}


def inspect_model(path: Path) -> dict:
    """Inputs, outputs (name, shape with -1 for a free dimension, dtype) and the operator summary."""
    path = Path(path)
    readers = {".tflite": _tflite, ".onnx": _onnx}
    if path.suffix not in readers:
        raise DataError(f"{path}: cannot inspect a {path.suffix or 'suffix-less'} file; expected .tflite or .onnx")
    try:
        return readers[path.suffix](path)
    except (DataError, RuntimeUnavailable):
        raise
    except ModelError as e:
        raise DataError(str(e)) from None
    except Exception as e:  # the runtimes' parse errors share no base class
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: not a loadable {path.suffix[1:]} model ({first})") from None
