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

import difflib
import logging
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .._tf import quiet_native_stderr, tf as _tf
from ..errors import ConfigError, RunError

log = logging.getLogger(__name__)

INSPECT_DIR = "inspect"
_NV_PREFIX = "NumericVerify/"


# ------------------------------------------------------------------------------------- node names

def keras_layers(node: str) -> list[str]:
    """The Keras layer names a converter node was fused from, in graph order.

    TFLite names a fused node by its tensors, last op first: ``cnn/block1_relu1/Relu;cnn/block1_bn1/
    FusedBatchNormV3;cnn/block1_conv1/Conv2D`` → ``[block1_conv1, block1_bn1, block1_relu1]``."""
    names = []
    for part in reversed(node.split(";")):
        segs = part.split("/")
        if len(segs) >= 3 and segs[1] not in names:
            names.append(segs[1])
    return names


def layer_label(node: str) -> str:
    return "+".join(keras_layers(node)) or node


def resolve_keep_float(nodes: list[str], wanted: list[str]) -> list[str]:
    """The converter nodes for ``--keep-float`` names: a Keras layer name, a report label or a node name."""
    picked, choices = [], sorted({n for node in nodes for n in [*keras_layers(node), layer_label(node)]})
    for w in wanted:
        hit = [n for n in nodes if w == n or w == layer_label(n) or w in keras_layers(n)]
        if not hit:
            close = difflib.get_close_matches(w, choices, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"--keep-float {w!r}: no quantised layer of that name; {hint}"
                              f"`edgefer inspect RUN` lists them (e.g. {', '.join(choices[:4])})")
        picked += [n for n in hit if n not in picked]
    return picked


# ------------------------------------------------------------------------------------- conversion

def _converter(model, calib, *, batch=None, activations16=False):
    from .convert import _fixed_batch_function

    tf = _tf()
    if batch is None:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        conv = tf.lite.TFLiteConverter.from_concrete_functions([_fixed_batch_function(model, batch)], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calib.tflite_dataset
    if activations16:
        conv.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    return conv


def calibrated_model(model, calib, *, batch=None) -> bytes:
    """The float model with the calibration set's ranges recorded, not yet quantised."""
    conv = _converter(model, calib, batch=batch)
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


def _predict(blob: bytes, x: np.ndarray) -> np.ndarray:
    from .runtimes import open_runner

    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(blob)
        return open_runner(p).predict(x)


# ------------------------------------------------------------------------------------- per-layer error

def _direct_metrics():
    """QuantizationDebugger ``layer_direct_compare_metrics``: f(float, quantised, scale, zero point)."""

    def deq(q, s, zp):
        return (q.astype(np.float64) - zp) * s

    def cosine(f, q, s, zp):
        a, b = f.ravel().astype(np.float64), deq(q, s, zp).ravel()
        den = np.linalg.norm(a) * np.linalg.norm(b)
        return float(a @ b / den) if den else (1.0 if not a.any() and not b.any() else 0.0)

    def clipped(f, q, s, zp):
        info = np.iinfo(q.dtype)
        lo, hi = (info.min - zp - 0.5) * s, (info.max - zp + 0.5) * s
        return float(np.mean((f < lo) | (f > hi)))

    return {
        "rmse_steps": lambda f, q, s, zp: float(np.sqrt(np.mean((f - deq(q, s, zp)) ** 2)) / s),
        "mae": lambda f, q, s, zp: float(np.mean(np.abs(f - deq(q, s, zp)))),
        "cosine": cosine,
        "clipped": clipped,
        "scale": lambda f, q, s, zp: float(s),
        "zero_point": lambda f, q, s, zp: float(zp),
    }


def _node_of(nv_name: str, nodes: list[str]) -> str | None:
    """The calibrated node a NumericVerify tensor checks (its name is NumericVerify/NODE<digits>:<index>)."""
    body = nv_name[len(_NV_PREFIX):].rsplit(":", 1)[0]
    hits = [n for n in nodes if body.startswith(n)]
    return max(hits, key=len) if hits else None


def layer_errors(model, calib, x: np.ndarray, *, per_tensor=False, batch=None) -> tuple[list[dict], bytes]:
    """Per-layer error of the int8 model on faces ``x`` (TFLite QuantizationDebugger) and the calibrated model."""
    tf = _tf()
    conv = _converter(model, calib, batch=batch)
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
            report = inspect_onnx(float_onnx, qdq, x, model.predict(x, batch_size=256, verbose=0).argmax(1))
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


def render_table(report: dict) -> str:
    """The report as a Markdown table, in graph order, with each layer's rank (TFLite: by the agreement
    quantising it alone costs; ONNX: by SQNR against float, lowest first)."""
    onnx = report.get("format") == "onnx"
    last = "SQNR (dB)" if onnx else "cost alone"
    head = (f"{report.get('model', 'model')} ({report.get('format', 'tflite')}): int8 agrees with float on "
            f"{report['agreement_int8']:.2%} of {report['faces']} validation faces ({report['weights']} weights)\n\n"
            f"| rank | layer | op | scale | zp | RMSE (steps) | MAE | cosine | clipped | {last} |\n"
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")

    def tail(r):
        if onnx:
            return f"{r['sqnr_db']:.1f}"
        return f"{r['cost']:.2%}" if "cost" in r else "–"

    rows = [f"| {r['rank']} | {r['layer']} | {r.get('op') or ''} | {r['scale']:.4g} | {r['zero_point']} | "
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
    if report.get("format") == "onnx":
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
    from .runtimes import open_runner

    with tempfile.TemporaryDirectory(prefix="edgefer-inspect-") as d:
        p = Path(d) / "m.tflite"
        p.write_bytes(blob)
        r = open_runner(p, threads=1)
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
    from .convert import fix_bias_scales

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
            steps.append({"keep_float": [layer_label(n) for n in keep], "agreement": agree(blob),
                          "size_bytes": len(blob)})
            log.info("keep-float auto: %s in float → agreement %.2f%%", layer_label(node), 100 * steps[-1]["agreement"])
            if steps[-1]["agreement"] >= threshold:
                break
    info = {"mode": "auto", "threshold": threshold, "faces": int(len(x)), "steps": steps,
            "passed": steps[-1]["agreement"] >= threshold,
            "size_bytes_all_int8": len(full), "size_bytes": len(blob),
            "latency_ms_all_int8": _latency_ms(full, x), "latency_ms": _latency_ms(blob, x)}
    return keep, info


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
            choices = sorted({layer_of(n) for n in node_names} - {None})
            close = difflib.get_close_matches(w, choices, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"--keep-float {w!r}: no ONNX node of that layer; {hint}"
                              f"`edgefer inspect RUN` lists them (e.g. {', '.join(choices[:4])})")
        out += [n for n in hit if n not in out]
    return out


# ------------------------------------------------------------------------------------- ONNX (ORT's QDQ debugging)

def _sqnr(a: np.ndarray, b: np.ndarray) -> float:
    """Signal-to-quantisation-noise ratio in dB (ORT's compute_signal_to_quantization_noice_ratio)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    return float(compute_signal_to_quantization_noice_ratio(a, b))


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
    from .runtimes import open_runner

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
        agreement = float((open_runner(q_path).predict(x).argmax(1) == top1_float).mean())
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
                     "clipped": float(np.mean((pre < (info.min - zp - 0.5) * s) | (pre > (info.max - zp + 0.5) * s))),
                     "sqnr_db": _sqnr(flt, post), "elements": int(flt.size)})
    rows.sort(key=lambda r: order.get(r["node"], 1 << 30))
    ranked = sorted(rows, key=lambda r: r["sqnr_db"])
    for i, r in enumerate(ranked, 1):
        r["rank"] = i
    return {"format": "onnx", "faces": int(len(x)), "agreement_int8": agreement, "layers": rows,
            "ranking": [r["layer"] for r in ranked],
            "weight_sqnr_db": {k: float(v) for k, v in sorted(weights.items(), key=lambda kv: kv[1])}}
