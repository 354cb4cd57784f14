"""``edgefer inspect``: which layer loses accuracy when a run is quantised to int8, and what fixes it.

    from edge_fer.export.inspect import inspect_run, render_table
    report = inspect_run("runs/cnn")                    # RUN/inspect/inspect.json (+ .md table, .png plot)
    print(render_table(report))

Per quantised layer, in graph order: the int8 output's scale and zero point, its error against the
float op run on the same (dequantised) input — RMSE in units of the int8 step, mean absolute error,
cosine — and the share of float values outside the int8 range (clipped); these come from TFLite's
``QuantizationDebugger`` (NumericVerify ops, layer-by-layer) on validation faces. Then each layer is
quantised *alone* (every other node kept float through the quantiser's denylist) and its cost is the
top-1 disagreement with the float model that this alone causes; layers are ranked by it.

The names in the report are what ``edgefer export --keep-float LAYER`` takes: a Keras layer name
(``block1_conv1``) selects the fused node that holds it.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .._tf import quiet_native_stderr, tf as _tf
from ..errors import ConfigError, RunError
from ..runtime.tensors import dequantize, quantize
from ..quantization.converter import (calibrated_model, fix_bias_scales, layer_label, layer_labels, quantise,
                                      quantised_nodes, tflite_converter, to_tflite)

log = logging.getLogger(__name__)

INSPECT_DIR = "inspect"
_NV_PREFIX = "NumericVerify/"


def _predict(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ..runtime import open_model

    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(blob)
        return open_model(p).predict(x)


# ------------------------------------------------------------------------------------- XNNPACK partitions

def xnnpack_partitions(model: Path | bytes) -> list[int | None]:
    """For each operator of a .tflite (in graph order, as ``_get_ops_details`` lists them without delegates):
    the XNNPACK partition that runs it (1, 2, … in the order LiteRT creates them), or None where the op
    stays on TFLite's own kernels (e.g. an int8 SOFTMAX, a float op XNNPACK lacks).

    LiteRT applies XNNPACK by default and replaces each run of ops it takes with one DELEGATE node whose
    inputs and outputs are the partition's boundary tensors; an op belongs to the partition whose
    outputs it reaches without crossing those inputs."""
    from ai_edge_litert import interpreter as tfl

    src = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    plain = tfl.Interpreter(**src, experimental_op_resolver_type=tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = plain._get_ops_details()
    with quiet_native_stderr():  # LiteRT's 'Created TensorFlow Lite XNNPACK delegate' line
        xnn = tfl.Interpreter(**src, num_threads=1)
        xnn.allocate_tensors()
    delegates = [op for op in xnn._get_ops_details()[len(ops):] if op["op_name"] == "DELEGATE"]
    producer = {int(t): op["index"] for op in ops for t in op["outputs"]}
    part: list[int | None] = [None] * len(ops)
    for k, d in enumerate(delegates, 1):
        stop = {int(t) for t in d["inputs"]}
        todo = [int(t) for t in d["outputs"]]
        while todo:
            t = todo.pop()
            i = producer.get(t)
            if t in stop or i is None or part[i] is not None:
                continue
            part[i] = k
            todo += [int(u) for u in ops[i]["inputs"] if u >= 0]
    return part


def xnnpack_by_tensor(model: Path | bytes) -> dict[str, int | None]:
    """Output tensor name → XNNPACK partition (None: TFLite's own kernels) of every op of a .tflite."""
    from ai_edge_litert import interpreter as tfl

    src = {"model_content": model} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    plain = tfl.Interpreter(**src, experimental_op_resolver_type=tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    names = {t["index"]: t["name"] for t in plain.get_tensor_details()}
    # QUANTIZE/DEQUANTIZE left out: with float I/O the model's output tensor keeps the name the int8 op had
    return {names[int(o)]: k for op, k in zip(plain._get_ops_details(), xnnpack_partitions(model))
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE") for o in op["outputs"] if int(o) in names}


def _xnnpack_of(row: dict, by_tensor: dict, by_label: dict):
    if row["node"] in by_tensor:
        return by_tensor[row["node"]]
    return by_label.get(row["layer"])


# ------------------------------------------------------------------------------------- per-layer error

def _direct_metrics():
    """QuantizationDebugger ``layer_direct_compare_metrics``: f(float, quantised, scale, zero point)."""

    def deq(q, s, zp):
        return dequantize(q, s, zp).astype(np.float64)

    def cosine(f, q, s, zp):
        a, b = f.ravel().astype(np.float64), deq(q, s, zp).ravel()
        den = np.linalg.norm(a) * np.linalg.norm(b)
        return float(a @ b / den) if den else (1.0 if not a.any() and not b.any() else 0.0)

    def clipped(f, q, s, zp):
        return float(np.mean(_outside_range(f, s, zp, q.dtype)))

    return {
        "rmse_steps": lambda f, q, s, zp: float(np.sqrt(np.mean((f - deq(q, s, zp)) ** 2)) / s),
        "mae": lambda f, q, s, zp: float(np.mean(np.abs(f - deq(q, s, zp)))),
        "cosine": cosine,
        "clipped": clipped,
        "scale": lambda f, q, s, zp: float(s),
        "zero_point": lambda f, q, s, zp: float(zp),
    }


def _outside_range(f: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Where float values fall outside what the integer type can represent (they are clipped)."""
    info = np.iinfo(dtype)
    return (f < (info.min - zero_point - 0.5) * scale) | (f > (info.max - zero_point + 0.5) * scale)


def _node_of(nv_name: str, nodes: list[str]) -> str | None:
    """The calibrated node a NumericVerify tensor checks (its name is NumericVerify/NODE<digits>:<index>)."""
    body = nv_name[len(_NV_PREFIX):].rsplit(":", 1)[0]
    hits = [n for n in nodes if body.startswith(n)]
    return max(hits, key=len) if hits else None


def layer_errors(model, calib, x: np.ndarray, *, per_tensor=False, batch=None) -> tuple[list[dict], bytes]:
    """Per-layer error of the int8 model on faces ``x`` (TFLite QuantizationDebugger) and the calibrated model."""
    tf = _tf()
    conv = tflite_converter(model, calib, batch=batch)
    conv._experimental_disable_per_channel = per_tensor
    opts = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics=_direct_metrics())
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        dbg = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_options=opts,
            debug_dataset=lambda: ([x[i:i + 1].astype(np.float32)] for i in range(len(x))))
        dbg.run()
    nodes = quantised_nodes(dbg.calibrated_model)
    rows = []
    for nv, stats in dbg.layer_statistics.items():
        node = _node_of(nv, nodes)
        if node is None:
            continue
        rows.append({"node": node, "layer": layer_label(node), "op": nodes[node],
                     "scale": float(stats["scale"]), "zero_point": int(round(stats["zero_point"])),
                     "rmse_steps": float(stats["rmse_steps"]), "mae": float(stats["mae"]),
                     "cosine": float(stats["cosine"]), "clipped": float(stats["clipped"]),
                     "elements": int(stats["num_elements"])})
    order = {n: i for i, n in enumerate(nodes)}
    rows.sort(key=lambda r: order[r["node"]])
    return rows, dbg.calibrated_model


def alone_agreement(calibrated: bytes, nodes: list[str], x: np.ndarray, top1_float: np.ndarray, *,
                    per_tensor=False) -> dict[str, float]:
    """Top-1 agreement with the float model when only each node is quantised (the rest denylisted)."""
    out = {}
    for node in nodes:
        blob = quantise(calibrated, keep_float=[n for n in nodes if n != node], per_tensor=per_tensor)
        out[node] = float((_predict(blob, x).argmax(1) == top1_float).mean())
    return out


# ------------------------------------------------------------------------------------- the report

def inspect_model(model, calib, x: np.ndarray, *, per_tensor=False, alone=True) -> dict:
    """The per-layer report (a JSON-ready dict) of ``model`` quantised with ``calib``, measured on ``x``."""
    t0 = time.time()
    top1_float = model.predict(x, batch_size=256, verbose=0).argmax(1)
    layers, calibrated = layer_errors(model, calib, x, per_tensor=per_tensor)
    full = quantise(calibrated, per_tensor=per_tensor)
    agreement = float((_predict(full, x).argmax(1) == top1_float).mean())
    by_tensor = xnnpack_by_tensor(full)
    by_label = {layer_label(n): k for n, k in by_tensor.items()}
    for r in layers:
        r["xnnpack"] = _xnnpack_of(r, by_tensor, by_label)
    if alone:
        nodes = [r["node"] for r in layers]
        costs = alone_agreement(calibrated, nodes, x, top1_float, per_tensor=per_tensor)
        for r in layers:
            r["agreement_alone"] = costs[r["node"]]
            r["cost"] = round(1.0 - costs[r["node"]], 6)
    ranked = sorted(layers, key=lambda r: (-r.get("cost", 0.0), -r["rmse_steps"]))
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    return {"faces": int(len(x)), "calibration": {"source": calib.source, "size": len(calib)},
            "weights": "per-tensor" if per_tensor else "per-channel", "agreement_int8": agreement,
            "layers": layers, "ranking": [r["layer"] for r in ranked], "seconds": round(time.time() - t0, 1)}


def inspect_run(run, *, faces: int = 256, calib_size: int = 256, calib_data=None, per_tensor: bool = False,
                alone: bool = True, out=None, data_path=None, fmt: str = "tflite", calib_method: str = "minmax") -> dict:
    """Inspect a run's post-training int8 quantisation (``fmt`` tflite or onnx) on ``faces`` validation
    faces; writes OUT/inspect.json (default RUN/inspect; inspect-onnx.json for ONNX), a Markdown table
    and a plot rendered from it."""
    from ..calibration import CalibrationSet
    from ..data.pipeline import as_model_input
    from ..quantization import load_float_model
    from ..runs import resolve_run, write_json

    if faces < 1:
        raise ConfigError(f"--faces must be ≥ 1, got {faces}")
    if fmt not in ("tflite", "onnx"):
        raise ConfigError(f"--format must be tflite or onnx, got {fmt!r}")
    run_dir = resolve_run(run)
    model, cfg = load_float_model(run_dir)
    data = cfg.load_data(data_path)
    val = data["validation"]
    channels = model.input_shape[-1]
    calib = CalibrationSet.from_source(calib_data, data["train"], size=calib_size, seed=cfg.seed, channels=channels)
    calib.check_model_input(model.input_shape)
    idx = np.random.default_rng(cfg.seed).permutation(len(val.y))[:faces]
    x = as_model_input(val.x[np.sort(idx)], channels).astype(np.float32)
    if fmt == "onnx":
        from ..calibration import CalibrationMethod
        from . import convert

        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            float_onnx = convert.to_onnx_float(model)
            qdq = convert.onnx_int8_from_float(float_onnx, calib, CalibrationMethod.parse(calib_method),
                                               per_tensor=per_tensor)
            top1_float = model.predict(x, batch_size=256, verbose=0).argmax(1)
            report = inspect_onnx(float_onnx, qdq, x, top1_float)
            if alone:
                rank_onnx_alone(report, float_onnx, calib, x, top1_float, method=CalibrationMethod.parse(calib_method),
                                per_tensor=per_tensor)
        report.update(calibration={"source": calib.source, "size": len(calib), "method": calib_method},
                      weights="per-tensor" if per_tensor else "per-channel")
    else:
        try:
            report = inspect_model(model, calib, x, per_tensor=per_tensor, alone=alone)
        except ValueError as e:  # the debugger's own refusals (e.g. nothing quantised)
            raise RunError(f"{run_dir}: the quantisation debugger could not run ({e})") from None
        report["format"] = "tflite"
    report = {"run": str(run_dir), "model": cfg.model, "split": "validation", **report}
    out_dir = Path(out) if out else run_dir / INSPECT_DIR
    stem = "inspect" if fmt == "tflite" else "inspect-onnx"
    write_json(out_dir / f"{stem}.json", report)
    (out_dir / f"{stem}.md").write_text(render_table(report) + "\n")
    plot_report(report, out_dir / f"{stem}.png")
    report["files"] = [str(out_dir / f"{stem}{s}") for s in (".json", ".md", ".png")]
    return report


def float_tflite(source) -> bytes:
    """A float .tflite to compare an int8 file with: a float .tflite as is, a .keras/.h5 converted without
    quantisation (the same converter, so its fused nodes carry the int8 file's names)."""
    p = Path(source)
    if not p.is_file():
        raise ConfigError(f"--float {source}: no such file; pass the int8 model's float source (.keras, .h5 or a "
                          "float .tflite)")
    if p.suffix == ".tflite":
        return p.read_bytes()
    if p.suffix not in (".keras", ".h5"):
        raise ConfigError(f"--float {source}: a {p.suffix or 'suffix-less'} file; the float source is a .keras, .h5 "
                          "or float .tflite")
    from ..models import load_model

    model = load_model(p)
    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        return to_tflite(model, "float32")


def _reference_interpreter(blob: bytes, face_shape):
    """An interpreter that keeps every intermediate tensor (TFLite's own kernels: a delegate would fuse them)."""
    from ai_edge_litert import interpreter as tfl

    interp = tfl.Interpreter(model_content=blob, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *face_shape])
    interp.allocate_tensors()
    return interp


def _run_face(interp, face: np.ndarray) -> np.ndarray:
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    v = face[None].astype(np.float32)
    if np.dtype(inp["dtype"]).kind in "iu":
        v = quantize(v, *inp["quantization"], inp["dtype"])
    interp.set_tensor(inp["index"], v.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"]).reshape(-1)


_CASTS = ("QUANTIZE", "DEQUANTIZE")


def _op_locations(name: str) -> list[str]:
    """The TF ops a TFLite tensor was computed by, as its name lists them (``a/b/Relu;a/b/Conv2D``): each with
    a QAT model's ``quant_`` prefix dropped from its Keras layer, so a QAT file and its float source agree."""
    out = []
    for part in name.split(";"):
        segs = part.split("/")
        if len(segs) >= 2:
            segs[1] = segs[1].removeprefix("quant_")
        if part:
            out.append("/".join(segs))
    return out


def _output_op(name: str) -> str:
    """The op a tensor is named after, without the model's prefix (``expanded_conv_3/expand/hswish/mul``)."""
    first = (_op_locations(name) or [name])[0]
    return first.split("/", 1)[1] if "/" in first else first


def _producer_op(ops: list[dict], tensor: int) -> str | None:
    return next((op["op_name"] for op in ops if tensor in {int(o) for o in op["outputs"]}), None)


def _cones(ops: list[dict], det: dict) -> dict[int, frozenset]:
    """Each op output → the named TF ops it is computed from: its own op's names and every ancestor's
    (QUANTIZE/DEQUANTIZE add none: they change the type, not the value)."""
    cone: dict[int, frozenset] = {}
    for op in ops:  # execution order: producers first
        c = set() if op["op_name"] in _CASTS else {n for o in op["outputs"] for n in _op_locations(det[int(o)]["name"])}
        for i in op["inputs"]:
            c |= cone.get(int(i), frozenset())
        for o in op["outputs"]:
            cone[int(o)] = frozenset(c)
    return cone


def pair_tensors(q_ops: list[dict], q_det: dict, f_ops: list[dict], f_det: dict) -> tuple[dict[int, int], list[dict]]:
    """Which int8 op output holds the same value as which float tensor, and the int8 outputs left unpaired.

    Two tensors hold the same value when they are computed by the same TF ops: the set of op names (the
    tensor's own fused name and all its ancestors', among the names both graphs carry) is the same. This
    pairs a QAT graph's split hard-swish (``hsigmoid/add``, ``hsigmoid/mul``, ``hswish/mul``) with the float
    graph's one HARD_SWISH at ``hswish/mul`` only, where both hold x·hard_sigmoid(x), and leaves its inner
    ADD and MUL unpaired (the float graph has no such tensor); the op types may differ (MUL vs HARD_SWISH,
    a QAT ADD+RELU6 vs a CONV_2D with both fused). Where several tensors of one graph share the set (ops
    whose names the other graph lacks), they pair in order only if both graphs have the same number of
    them and the same op types; otherwise they are unpaired, as is any pair whose shapes differ.
    Returns {int8 tensor: float tensor} and one ``{node, layer, op, shape, reason}`` per unpaired output."""
    q_cone, f_cone = _cones(q_ops, q_det), _cones(f_ops, f_det)
    q_out = [(op, int(op["outputs"][0])) for op in q_ops if op["op_name"] not in _CASTS]
    f_out = [(op, int(op["outputs"][0])) for op in f_ops if op["op_name"] not in _CASTS]
    shared = frozenset().union(*(q_cone[t] for _, t in q_out)) & frozenset().union(*(f_cone[t] for _, t in f_out))
    q_by, f_by = {}, {}
    for by, outs, cone in ((q_by, q_out, q_cone), (f_by, f_out, f_cone)):
        for op, t in outs:
            by.setdefault(cone[t] & shared, []).append((op, t))
    matched, unpaired = {}, []
    for op, t in q_out:
        d = q_det[t]
        dt, (s, _) = np.dtype(d["dtype"]), d["quantization"]
        if dt.kind not in "iu" or dt == np.int32 or not s:
            continue  # not a quantised activation (an int32 shape, a float op kept in float)
        key = q_cone[t] & shared
        qs, fs = q_by[key], f_by.get(key, [])
        reason = None
        if not key or not fs:
            reason = "no float tensor is computed by the same ops"
        elif len(qs) > 1 and (len(qs) != len(fs) or [o["op_name"] for o, _ in qs] != [o["op_name"] for o, _ in fs]):
            reason = (f"ambiguous: {len(qs)} int8 and {len(fs)} float tensors are computed by the same named ops "
                      f"({'/'.join(o['op_name'] for o, _ in qs)} vs {'/'.join(o['op_name'] for o, _ in fs) or '–'})")
        else:
            ft = fs[[u for _, u in qs].index(t)][1]
            q_shape, f_shape = [int(v) for v in d["shape"]], [int(v) for v in f_det[ft]["shape"]]
            if q_shape != f_shape:
                reason = f"shape {q_shape} vs the float tensor's {f_shape}"
            else:
                matched[t] = ft
        if reason:
            unpaired.append({"node": d["name"], "layer": layer_label(d["name"]), "tensor": _output_op(d["name"]),
                             "op": op["op_name"], "shape": [int(v) for v in d["shape"]], "reason": reason})
    return matched, unpaired


def _paired_inputs(op: dict, nsr: dict, producer: dict) -> list[float]:
    """The noise-to-signal ratios of the nearest measured tensors upstream of ``op`` (through unpaired ops)."""
    out, todo, seen = [], [int(i) for i in op["inputs"] if int(i) >= 0], set()
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        if i in nsr:
            out.append(nsr[i])
        elif i in producer:
            todo += [int(u) for u in producer[i]["inputs"] if int(u) >= 0]
    return out


def inspect_file(int8_model, float_source, x: np.ndarray, y: np.ndarray | None = None) -> dict:
    """Per-layer error of an existing int8 .tflite against its float source on faces ``x``: each int8 op
    output is paired with the float tensor computed by the same ops (:func:`pair_tensors`; the rest are
    listed under ``unpaired`` with the reason, never compared) and measured as in ``inspect_model``, plus
    its SQNR and the share of the signal's power that the op adds as error (``added_noise``: its
    noise-to-signal ratio less the worst of the nearest paired tensors upstream), by which the layers are
    ranked — where error appears, not where it is merely carried. The file is not requantised, so there is
    no per-layer agreement cost (``edgefer inspect RUN`` measures that)."""
    int8_path = Path(int8_model)
    blob = int8_path.read_bytes()
    fblob = float_source if isinstance(float_source, (bytes, bytearray)) else float_tflite(float_source)
    try:
        qi, fi = _reference_interpreter(blob, x.shape[1:]), _reference_interpreter(fblob, x.shape[1:])
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise RunError(f"{int8_path}: could not load it or its float source for {x.shape[1:]} faces ({first})") from None
    q_ops, f_ops = qi._get_ops_details(), fi._get_ops_details()
    q_det = {d["index"]: d for d in qi.get_tensor_details()}
    f_det = {d["index"]: d for d in fi.get_tensor_details()}
    part = xnnpack_partitions(blob)
    matched, unpaired = pair_tensors(q_ops, q_det, f_ops, f_det)
    pairs = []  # (op, partition, int8 tensor, float tensor)
    for op, k in zip(q_ops, part):
        t = int(op["outputs"][0])
        if t in matched:
            pairs.append((op, k, t, matched[t]))
    if not pairs:
        raise RunError(f"{int8_path}: no int8 op output matches a tensor of the float source (the same ops, by "
                       "name, up to it); pass the float model this file was converted from (--float)")
    acc = {t: np.zeros(7) for _, _, t, _ in pairs}  # err², f², |f−q|, f·q, q², clipped, n
    top_q, top_f = [], []
    for face in x:
        top_q.append(int(np.argmax(_run_face(qi, face))))
        top_f.append(int(np.argmax(_run_face(fi, face))))
        for _, _, t, ft in pairs:
            s, zp = q_det[t]["quantization"]
            f = fi.get_tensor(ft).astype(np.float64).ravel()
            q = qi.get_tensor(t)
            deq = dequantize(q, s, zp).astype(np.float64).ravel()
            acc[t] += [np.sum((f - deq) ** 2), f @ f, np.sum(np.abs(f - deq)), f @ deq, deq @ deq,
                       np.sum(_outside_range(f, s, zp, q.dtype)), f.size]
    rows, nsr = [], {}
    producer = {int(o): op for op in q_ops for o in op["outputs"]}
    for op, k, t, ft in pairs:  # graph order: a tensor's paired ancestors are measured before it
        err, power, abs_err, dot, qq, clipped, n = acc[t]
        s, zp = q_det[t]["quantization"]
        nsr[t] = float(err / power) if power else (0.0 if not err else float("inf"))
        den = np.sqrt(power * qq)
        name = q_det[t]["name"]
        rows.append({"node": name, "layer": layer_label(name), "tensor": _output_op(name), "op": op["op_name"],
                     "float_node": f_det[ft]["name"], "float_op": _producer_op(f_ops, ft),
                     "shape": [int(v) for v in q_det[t]["shape"]], "scale": float(s),
                     "zero_point": int(zp), "rmse_steps": float(np.sqrt(err / n) / s), "mae": float(abs_err / n),
                     "cosine": float(dot / den) if den else float(not power and not qq), "clipped": float(clipped / n),
                     "sqnr_db": float(10 * np.log10(1 / nsr[t])) if nsr[t] else float("inf"),
                     "added_noise": max(nsr[t] - max(_paired_inputs(op, nsr, producer), default=0.0), 0.0),
                     "xnnpack": k, "elements": int(n // len(x))})
    ranked = sorted(rows, key=lambda r: -r["added_noise"])
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    top_q, top_f = np.array(top_q), np.array(top_f)
    report = {"format": "tflite-file", "model_file": str(int8_path), "faces": int(len(x)),
              "agreement_int8": float((top_q == top_f).mean()), "layers": rows,
              "ranking": [r["layer"] for r in ranked], "paired": len(rows),
              "unpaired": {"count": len(unpaired), "tensors": unpaired},
              "xnnpack": {"partitions": max((k for k in part if k), default=0),
                          "ops_outside": sorted({op["op_name"] for op, k in zip(q_ops, part) if k is None})}}
    if y is not None:
        report.update(accuracy_int8=float((top_q == y).mean()), accuracy_float=float((top_f == y).mean()))
    return report


def inspect_model_file(path, *, float_source=None, faces: int = 256, out=None, data_path=None) -> dict:
    """``edgefer inspect MODEL``: an int8 .tflite against its float source (default, for a file in RUN/export/:
    the run's float model) on ``faces`` validation faces; writes OUT/inspect-<file>.json (default: beside the
    file), a Markdown table and a plot rendered from it."""
    from ..data import load_fer
    from ..data.pipeline import as_model_input
    from ..runs import is_run, write_json

    path = Path(path)
    if path.suffix != ".tflite" or not path.is_file():
        raise ConfigError(f"{path}: not a .tflite file or a run directory; `edgefer inspect` takes a run (RUN) "
                          "or an int8 .tflite with --float SOURCE")
    run_dir = path.parent.parent if is_run(path.parent.parent) else None
    seed, load = 0, (lambda: load_fer(data_path))
    if run_dir is not None:
        from ..training import TrainConfig

        cfg = TrainConfig.load(run_dir)
        seed, load = cfg.seed, (lambda: cfg.load_data(data_path))
    if float_source is None:
        if run_dir is None:
            raise ConfigError(f"{path}: which float model is it from? pass --float model.keras|.h5|float .tflite")
        from ..quantization import load_float_model

        model = load_float_model(run_dir)[0]
        with warnings.catch_warnings(), quiet_native_stderr():
            warnings.simplefilter("ignore")
            float_source = to_tflite(model, "float32")
    else:
        float_source = float_tflite(float_source)
    from ai_edge_litert import interpreter as tfl

    channels = int(tfl.Interpreter(model_path=str(path)).get_input_details()[0]["shape"][-1])
    val = load()["validation"]
    idx = np.sort(np.random.default_rng(seed).permutation(len(val.y))[:faces])
    report = inspect_file(path, float_source, as_model_input(val.x[idx], channels).astype(np.float32), val.y[idx])
    report = {"run": str(run_dir) if run_dir else None, "split": "validation", **report}
    out_dir = Path(out) if out else path.parent
    stem = f"inspect-{path.stem}"
    write_json(out_dir / f"{stem}.json", report)
    (out_dir / f"{stem}.md").write_text(render_table(report) + "\n")
    plot_report(report, out_dir / f"{stem}.png")
    report["files"] = [str(out_dir / f"{stem}{s}") for s in (".json", ".md", ".png")]
    return report


def render_table(report: dict) -> str:
    """The report as a Markdown table, in graph order, with each layer's rank (a run, TFLite: by the
    agreement quantising it alone costs; ONNX: by that cost where measured, else SQNR against float; an
    int8 file: by the error each layer adds) and the XNNPACK partition that runs it (– : TFLite's kernels)."""
    fmt = report.get("format", "tflite")
    onnx, file = fmt == "onnx", fmt == "tflite-file"
    last = "SQNR (dB) | added noise" if file else "SQNR (dB) | cost alone" if onnx else "XNNPACK | cost alone"
    if file:
        last = "XNNPACK | " + last
    what = report.get("model_file") or report.get("model", "model")
    weights = f" ({report['weights']} weights)" if "weights" in report else ""
    unpaired = report.get("unpaired", {}).get("count", 0)
    unpaired = (f"; {unpaired} int8 tensor{'' if unpaired == 1 else 's'} unpaired, not compared (no float tensor "
                "holds the same value; the JSON's `unpaired` lists them)" if unpaired else "")
    head = (f"{what} ({fmt}): int8 agrees with float on {report['agreement_int8']:.2%} of {report['faces']} "
            f"validation faces{weights}{unpaired}\n\n"
            f"| rank | layer | op | scale | zp | RMSE (steps) | MAE | cosine | clipped | {last} |\n"
            "|---:|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * (last.count("|") + 1))

    def cost(r):
        return f"{r['cost']:.2%}" if "cost" in r else "–"

    def tail(r):
        xnn = "–" if r.get("xnnpack") is None else str(r["xnnpack"])
        if file:
            return f"{xnn} | {r['sqnr_db']:.1f} | {r['added_noise']:.2%}"
        if onnx:
            return f"{r['sqnr_db']:.1f} | {cost(r)}"
        return f"{xnn} | {cost(r)}"

    per_layer = {}
    for r in report["layers"]:
        per_layer[r["layer"]] = per_layer.get(r["layer"], 0) + 1

    def name(r):  # a layer measured at several tensors (a block, a split activation): which one
        sub = r.get("tensor", "").removeprefix(r["layer"] + "/")
        return f"{r['layer']} ({sub})" if per_layer[r["layer"]] > 1 and sub and sub != r["layer"] else r["layer"]

    rows = [f"| {r['rank']} | {name(r)} | {r.get('op') or ''} | {r['scale']:.4g} | {r['zero_point']} | "
            f"{r['rmse_steps']:.3f} | {r['mae']:.4g} | {r['cosine']:.4f} | {r['clipped']:.2%} | {tail(r)} |"
            for r in report["layers"]]
    return "\n".join([head, *rows])


def plot_report(report: dict, path: Path) -> Path:
    """Bars per layer in graph order: agreement cost when quantised alone, and RMSE in int8 steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [r["layer"] for r in layers]
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.45 * len(names) + 2), 6), sharex=True)
    if report.get("format") == "tflite-file":
        axes[0].bar(range(len(names)), [100 * r["added_noise"] for r in layers], color="tab:red")
        axes[0].set_ylabel("error added\n(% of signal power)")
    elif report.get("format") == "onnx" and not any("cost" in r for r in layers):
        axes[0].bar(range(len(names)), [r["sqnr_db"] for r in layers], color="tab:red")
        axes[0].set_ylabel("SQNR vs float (dB)")
    else:
        axes[0].bar(range(len(names)), [100 * r.get("cost", 0.0) for r in layers], color="tab:red")
        axes[0].set_ylabel("top-1 disagreement\nquantised alone (%)")
    axes[1].bar(range(len(names)), [r["rmse_steps"] for r in layers], color="tab:blue")
    axes[1].set_ylabel("RMSE (int8 steps)")
    axes[1].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    fig.suptitle(f"{report.get('model', '')}: int8 agreement {report['agreement_int8']:.2%} "
                 f"on {report['faces']} faces", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------- automatic float fallback

def _latency_ms(blob: bytes, x1: np.ndarray, seconds: float = 0.5) -> float:
    """Median single-face latency (1 thread, XNNPACK) after a warm-up, timed for at least ``seconds``."""
    from ..runtime import open_model

    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(blob)
        r = open_model(p, threads=1)
        prepared = r.prepare(x1[:1])
        for _ in range(3):
            r.invoke(prepared)
        times, t_end = [], time.perf_counter() + seconds
        while time.perf_counter() < t_end or len(times) < 10:
            t = time.perf_counter()
            r.invoke(prepared)
            times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def auto_keep_float(model, calib, x: np.ndarray, top1_float: np.ndarray, *, threshold: float, io: str = "float",
                    per_tensor: bool = False, batch=None) -> tuple[list[str], dict]:
    """Nodes to keep in float so int8 agrees with float on ``x`` at least ``threshold``: the layers whose
    quantisation alone costs most agreement, added one at a time until the gate passes. Returns the nodes
    and what the search measured: each step's agreement and size, and the latency of all-int8 vs the result."""
    calibrated = calibrated_model(model, calib, batch=batch)
    nodes = list(quantised_nodes(calibrated))

    def build(keep):
        return fix_bias_scales(quantise(calibrated, keep_float=keep, io=io, per_tensor=per_tensor))[0]

    def agree(blob):
        return float((_predict(blob, x).argmax(1) == top1_float).mean())

    full = build([])
    steps = [{"keep_float": [], "agreement": agree(full), "size_bytes": len(full)}]
    keep, blob = [], full
    if steps[0]["agreement"] < threshold:
        alone = alone_agreement(calibrated, nodes, x, top1_float, per_tensor=per_tensor)
        for node in sorted(nodes, key=lambda n: alone[n]):  # stable: graph order among equals
            keep.append(node)
            blob = build(keep)
            steps.append({"keep_float": layer_labels(keep), "agreement": agree(blob),
                          "size_bytes": len(blob)})
            log.info("keep-float auto: %s in float → agreement %.2f%%", layer_label(node), 100 * steps[-1]["agreement"])
            if steps[-1]["agreement"] >= threshold:
                break
    info = {"mode": "auto", "threshold": threshold, "faces": int(len(x)), "steps": steps,
            "passed": steps[-1]["agreement"] >= threshold,
            "size_bytes_all_int8": len(full), "size_bytes": len(blob),
            "latency_ms_all_int8": _latency_ms(full, x), "latency_ms": _latency_ms(blob, x)}
    return keep, info


# ------------------------------------------------------------------------------------- ONNX (ORT's QDQ debugging)

def _sqnr(a: np.ndarray, b: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio in dB (ORT's compute_signal_to_quantization_noice_ratio)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    return float(compute_signal_to_quantization_noice_ratio(a, b))


def onnx_alone_agreement(float_onnx: bytes, layers: list[str], calib, x: np.ndarray, top1_float: np.ndarray, *,
                         method=None, per_tensor: bool = False) -> dict[str, float]:
    """Top-1 agreement with the float model when only each Keras layer's nodes are quantised: ORT's quantiser
    with every other layer's nodes in ``nodes_to_exclude`` (as ``--keep-float`` does), run on faces ``x``."""
    import onnx

    from . import convert
    from ..runtime import open_model

    segs = [n.name.split("/") for n in onnx.load_from_string(float_onnx).graph.node]
    every = sorted({s[1] for s in segs if len(s) >= 3})
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        for layer in layers:
            qdq = convert.onnx_int8_from_float(float_onnx, calib, *([method] if method else []), per_tensor=per_tensor,
                                               keep_float=[n for n in every if n != layer])
            p = Path(d) / "alone.onnx"
            p.write_bytes(qdq)
            out[layer] = float((open_model(p).predict(x).argmax(1) == top1_float).mean())
    return out


def rank_onnx_alone(report: dict, float_onnx: bytes, calib, x, top1_float, *, method=None, per_tensor=False) -> dict:
    """Adds each layer's cost alone (``onnx_alone_agreement``) to an ONNX report and ranks by it, then by SQNR."""
    layers = list(dict.fromkeys(r["layer"] for r in report["layers"]))
    alone = onnx_alone_agreement(float_onnx, layers, calib, x, top1_float, method=method, per_tensor=per_tensor)
    for r in report["layers"]:
        r["agreement_alone"] = alone[r["layer"]]
        r["cost"] = round(1.0 - alone[r["layer"]], 6)
    ranked = sorted(report["layers"], key=lambda r: (-r["cost"], r["sqnr_db"]))
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    report["ranking"] = list(dict.fromkeys(r["layer"] for r in ranked))
    return report


def inspect_onnx(float_onnx: bytes, qdq_onnx: bytes, x: np.ndarray, top1_float: np.ndarray) -> dict:
    """Per-activation error of a QDQ model against its float source with ONNX Runtime's ``qdq_loss_debug``:
    each quantised tensor's scale and zero point, its rounding error (RMSE in int8 steps) and clipped share
    inside the QDQ model, and its error against the float model's tensor (MAE, cosine, SQNR); layers ranked
    by SQNR against float, lowest first. Weights get their SQNR too."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, create_activation_matching,
                                                        create_weight_matching, modify_model_output_intermediate_tensors)

    from ..calibration import CalibrationSet
    from .._tf import quiet_onnxruntime
    from ..runtime import open_model

    quiet_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        f_path, q_path = Path(d) / "float.onnx", Path(d) / "qdq.onnx"
        f_path.write_bytes(float_onnx)
        q_path.write_bytes(qdq_onnx)
        model = onnx.load(str(q_path))
        input_name = model.graph.input[0].name
        faces = CalibrationSet(x.astype(np.float32), "validation")
        acts = {}
        for name, path in (("float", f_path), ("qdq", q_path)):
            aug = Path(d) / f"{name}.aug.onnx"
            modify_model_output_intermediate_tensors(str(path), str(aug))
            acts[name] = collect_activations(str(aug), faces.ort_reader(input_name, batch=32))
        matched = create_activation_matching(acts["qdq"], acts["float"])
        # compute_weight_error fails on a scalar constant (a shape or zero point); those are not weights
        weights = {k: _sqnr(np.asarray(v["float"]).ravel(), np.asarray(v["dequantized"]).ravel())
                   for k, v in create_weight_matching(str(f_path), str(q_path)).items()
                   if np.asarray(v["float"]).size > 1}
        agreement = float((open_model(q_path).predict(x).argmax(1) == top1_float).mean())
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qparams = {n.input[0]: (float(inits[n.input[1]].ravel()[0]), int(inits[n.input[2]].ravel()[0]) if len(n.input) > 2
                            else 0, inits[n.input[2]].dtype if len(n.input) > 2 else np.dtype(np.int8))
               for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[1] in inits}
    order = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    rows = []
    for name, m in matched.items():
        if name not in qparams or "float" not in m:
            continue
        s, zp, dt = qparams[name]
        pre, post, flt = (np.concatenate([a.ravel() for a in m[k]]).astype(np.float64)
                          for k in ("pre_qdq", "post_qdq", "float"))
        info = np.iinfo(dt)
        if zp == info.min:  # the range starts at 0: ORT folded a ReLU into this quantiser, its clipping is the ReLU
            pre = np.maximum(pre, 0.0)
        den = np.linalg.norm(flt) * np.linalg.norm(post)
        segs = name.split("/")
        rows.append({"node": name, "layer": segs[1] if len(segs) >= 3 else name, "op": producer.get(name),
                     "scale": s, "zero_point": zp,
                     "rmse_steps": float(np.sqrt(np.mean((pre - post) ** 2)) / s),
                     "mae": float(np.mean(np.abs(flt - post))),
                     "cosine": float(flt @ post / den) if den else float(not flt.any() and not post.any()),
                     "clipped": float(np.mean(_outside_range(pre, s, zp, dt))),
                     "sqnr_db": _sqnr(flt, post), "elements": int(flt.size)})
    rows.sort(key=lambda r: order.get(r["node"], 1 << 30))
    ranked = sorted(rows, key=lambda r: r["sqnr_db"])
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    return {"format": "onnx", "faces": int(len(x)), "agreement_int8": agreement, "layers": rows,
            "ranking": [r["layer"] for r in ranked],
            "weight_sqnr_db": {k: float(v) for k, v in sorted(weights.items(), key=lambda kv: kv[1])}}
