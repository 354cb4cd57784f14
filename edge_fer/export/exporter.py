"""``edgefer export``: verified TFLite and ONNX artefacts of a trained (or QAT) run.

    from edge_fer.export import export_run
    results = export_run("runs/cnn", precisions=["int8"])       # RUN/export/cnn_int8*.tflite|onnx

Every artefact is converted in memory, written to a temporary folder, run with its real
runtime on the validation split and compared with its Keras source (accuracy delta, top-1
agreement, max probability difference). Only when every artefact passes the agreement
threshold are they moved into place, each with a metadata sidecar, and ``export_report.json``
updated; otherwise nothing is written unless ``force``.

Int8 sources: ``qat`` uses the run's quantisation-aware model (RUN/qat/best.h5); ``ptq``
quantises the float model post-training with the calibration set. ONNX int8 from PTQ is ONNX
Runtime static quantisation (QDQ, per-channel; its calibration method is selectable); from QAT
it is tf2onnx from the int8 TFLite, so it keeps the ranges QAT learned instead of recalibrating.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .._tf import quiet_native_stderr
from ..calibration import CalibrationMethod, CalibrationSet
from ..errors import ConfigError, EdgeFerError, ExportRefused, RunError
from ..runs import RunLayout, atomic_path, resolve_run, write_json
from ..runtime import one_line, open_model
from . import convert
from .config import ExportConfig
from .formats import ExportFormat, artefact_name, select_formats
from .metadata import base_metadata, embed_onnx, embed_tflite, sha256

log = logging.getLogger(__name__)

# Ops that legitimately touch float in an int8 graph with float I/O.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass
class ExportResult:
    file: str
    format: str
    precision: str
    source: str
    size_bytes: int
    seconds: float
    verification: dict
    float_ops: list = field(default_factory=list)
    status: str = "ok"
    keep_float: list = field(default_factory=list)  # layers an int8 model computes in float (--keep-float)

    def line(self) -> str:
        v = self.verification
        warn = f"  {len(self.float_ops)} float op(s)" if self.float_ops else ""
        warn += f" (--keep-float {' '.join(self.keep_float)})" if self.keep_float else ""
        return (f"{Path(self.file).name:<34}{self.size_bytes / 1024:>9.1f} KB{self.seconds:>7.1f} s  "
                f"val acc {v['accuracy']:.4f} (Δ {v['accuracy_delta']:+.4f})  agreement {v['agreement']:.2%}  "
                f"max Δp {v['max_prob_diff']:.4f}  {self.status}{warn}")


def float_ops(model) -> list[str]:
    """Ops of an int8 (or int16x8) TFLite graph that still compute in float (beyond input/output conversion)."""
    from ..runtime.tflite import TFLiteModel

    out = []  # read without XNNPACK: its DELEGATE node would stand for the ops it took, int8 or not
    for op in TFLiteModel(model.path, xnnpack=False).ops():
        if op["op"] in _BOUNDARY_OPS:
            continue
        if "float32" in op["inputs"] or "float32" in op["outputs"]:
            out.append(op["op"])
    return out


def _verify(path: Path, x_val: np.ndarray, y_val: np.ndarray, p_source: np.ndarray) -> dict:
    p = open_model(path).predict(x_val)
    return {
        "split": "validation",
        "n": int(len(y_val)),
        "accuracy": float((p.argmax(1) == y_val).mean()),
        "source_accuracy": float((p_source.argmax(1) == y_val).mean()),
        "accuracy_delta": float((p.argmax(1) == y_val).mean() - (p_source.argmax(1) == y_val).mean()),
        "agreement": float((p.argmax(1) == p_source.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(p - p_source).max()),
    }


def export_run(run: str | Path | None, config: ExportConfig | None = None, *, out: str | Path | None = None,
               data=None, data_path: str | Path | None = None, on_result=None, **options) -> list[ExportResult]:
    """Export a run to every format × precision of ``config`` (default :class:`ExportConfig`'s
    defaults, any field overridden by ``options``: ``export_run(run, precisions=["int8"])``).

    ``per_tensor``: int8 kernels with one scale each instead of one per output channel. ``None``
    (default): as the run's QAT model was trained (``edgefer qat --per-tensor``) for int8 from QAT, per
    channel for post-training int8. ``keep_float``: layers post-training int8 leaves in float (names as
    ``edgefer inspect`` lists them); ``["auto"]`` adds the layers whose quantisation costs most agreement
    one at a time until ``threshold`` passes (TFLite). ``out``: the folder (default RUN/export);
    ``data_path``: read the run's data from here; ``on_result``: called with each verified artefact."""
    ec = replace(config or ExportConfig(), **options)
    chosen = select_formats(list(ec.formats), list(ec.precisions))
    run_dir = resolve_run(run)
    out_dir = Path(out) if out else RunLayout(run_dir).export_dir
    src = _load_sources(run_dir, ec, chosen)
    data = data or src.cfg.load_data(data_path)
    ref = _References.predict(src, data["validation"])
    calib = _calibration(ec, chosen, src, data["train"])
    keep_float, keep_info = _keep_float(ec, chosen, src, calib, ref)
    with tempfile.TemporaryDirectory(prefix="edgefer-export-") as tmp:
        staged = _convert_and_verify(Path(tmp), out_dir, run_dir, ec, chosen, src, calib, ref, keep_float, keep_info,
                                     on_result)
        results = [r for r, _, _, _ in staged]
        _refuse_below_gate(results, ec.threshold, run_dir, src.cfg)
        _write(staged, out_dir)
    _update_report(out_dir, results, ec)
    return results


@dataclass
class _Sources:
    """The Keras models an export converts: the run's float model and, for int8 from QAT, its QAT model."""
    cfg: object  # the run's TrainConfig
    float_model: object
    qat_model: object | None
    source: str  # where int8 comes from: "qat" or "ptq"
    per_tensor: bool


def _load_sources(run_dir: Path, ec: ExportConfig, chosen) -> _Sources:
    """The float model, and the QAT model when int8 comes from QAT; the weight granularity int8 follows."""
    from ..quantization import load_float_model, load_qat_model
    from ..quantization.pipeline import unfinished_qat
    from ..quantization.scheme import WEIGHTS, model_weights

    int8 = any(f.precision == "int8" for f in chosen)
    unfinished = unfinished_qat(run_dir) if ec.source != "ptq" and int8 else None
    if unfinished:
        raise RunError(f"{unfinished}, or export --from ptq")
    float_model, cfg = load_float_model(run_dir)
    qat_path = RunLayout(run_dir).qat_model
    source = ec.source
    if source == "auto":
        source = "qat" if qat_path.is_file() else "ptq"
        if int8:
            log.info("int8 from %s%s", source, "" if source == "qat" else
                     f" (no {qat_path.relative_to(run_dir)}; run `edgefer qat {run_dir}` for quantisation-aware int8)")
    if ec.keep_float and not int8:
        raise ConfigError(f"--keep-float {' '.join(ec.keep_float)} applies to int8 exports; add --int8")
    if ec.keep_float and source == "qat":
        raise ConfigError(f"--keep-float applies to post-training int8, but int8 comes from {qat_path}; add --from ptq")
    qat_model = load_qat_model(qat_path) if source == "qat" and int8 else None
    per_tensor = ec.per_tensor
    if qat_model is not None:
        trained = model_weights(qat_model)
        if per_tensor is not None and WEIGHTS[per_tensor] != trained:
            flag = "--per-tensor" if per_tensor else "--per-channel"
            raise ConfigError(f"{run_dir}: its QAT model was trained with {trained} weights, so int8 from QAT is "
                              f"{trained} too; drop {flag}, export --from ptq {flag}, or run `edgefer qat {run_dir}"
                              f"{' --per-tensor' if per_tensor else ''}` first")
        per_tensor = trained == WEIGHTS[True]
    return _Sources(cfg, float_model, qat_model, source, bool(per_tensor))


@dataclass
class _References:
    """The validation faces and what the Keras sources predict on them: what each artefact must agree with."""
    x: np.ndarray
    y: np.ndarray
    p_float: np.ndarray
    p_qat: np.ndarray | None

    @classmethod
    def predict(cls, src: _Sources, val) -> "_References":
        from ..data.pipeline import as_model_input

        x = as_model_input(val.x, src.float_model.input_shape[-1])
        p_qat = src.qat_model.predict(x, batch_size=256, verbose=0) if src.qat_model is not None else None
        return cls(x, val.y, src.float_model.predict(x, batch_size=256, verbose=0), p_qat)


def _calibration(ec: ExportConfig, chosen, src: _Sources, train):
    """The calibration set, when a chosen format needs one."""
    if not any(f.needs_calibration for f in chosen):
        return None
    calib = CalibrationSet.from_source(ec.calib_data, train, size=ec.calib_size, seed=src.cfg.seed,
                                       channels=src.float_model.input_shape[-1])
    calib.check_model_input(src.float_model.input_shape)
    return calib


def _keep_float(ec: ExportConfig, chosen, src: _Sources, calib, ref: _References) -> tuple[list, dict | None]:
    """The int8 nodes to leave in float, and what the metadata records of them (``auto``: searched)."""
    keep_float = list(ec.keep_float)
    if keep_float != ["auto"]:
        return keep_float, ({"layers": keep_float, "mode": "named"} if keep_float else None)
    if not any(f.format == "tflite" and f.precision == "int8" for f in chosen):
        raise ConfigError("--keep-float auto searches TFLite int8 layers; add --formats tflite or name the layers")
    from .inspect import auto_keep_float, layer_labels

    with warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        nodes, keep_info = auto_keep_float(src.float_model, calib, ref.x, ref.p_float.argmax(1),
                                           threshold=ec.threshold, io=ec.io, per_tensor=src.per_tensor,
                                           batch=ec.batch)
    keep_info["layers"] = layer_labels(nodes)  # a label keeps every node of its layer; "nodes" are the exact choice
    keep_info["nodes"] = list(nodes)
    log.info("keep-float auto: %s in float; size %+.1f KB, latency %+.3f ms per face vs all-int8",
             ", ".join(keep_info["layers"]) or "nothing",
             (keep_info["size_bytes"] - keep_info["size_bytes_all_int8"]) / 1024,
             keep_info["latency_ms"] - keep_info["latency_ms_all_int8"])
    return nodes, keep_info


def _convert_and_verify(tmp: Path, out_dir: Path, run_dir: Path, ec: ExportConfig, chosen, src: _Sources, calib,
                        ref: _References, keep_float, keep_info, on_result) -> list[tuple]:
    """Each artefact converted into ``tmp``, run with its runtime and compared with its Keras source;
    returns (result, temporary file, destination, metadata) per artefact."""
    from ..quantization.scheme import WEIGHTS

    method = CalibrationMethod.parse(ec.calib_method)
    cfg = src.cfg
    input_shape = [ec.batch, *src.float_model.input_shape[1:]]
    calib_info = {"source": calib.source, "size": len(calib), "method_onnx": method.value,
                  "method_tflite": "minmax"} if calib else None
    staged, float_onnx = [], None
    for fmt in chosen:
        origin = src.source if fmt.precision == "int8" else "float"
        name = artefact_name(cfg.model, fmt.precision, origin, fmt.suffix)
        t0 = time.time()
        try:
            with warnings.catch_warnings(), quiet_native_stderr():
                warnings.simplefilter("ignore")
                blob, float_onnx = _convert(fmt, src.float_model, src.qat_model, calib, method, ec.io, ec.batch,
                                            float_onnx, src.per_tensor, keep_float if fmt.precision == "int8" else ())
        except EdgeFerError:
            raise
        except Exception as e:  # TFLiteConverter, tf2onnx and ORT's quantiser each raise their own types
            log.debug("converting %s failed", name, exc_info=True)  # the traceback with `edgefer -v`
            raise RunError(f"{name}: conversion failed, nothing was written ({type(e).__name__}: "
                           f"{one_line(e)})") from None
        meta = base_metadata(model_name=cfg.model, input_shape=input_shape, fmt=fmt.format,
                             precision=fmt.precision, source=origin, run_dir=run_dir, train_config=cfg.to_dict(),
                             io=ec.io if (fmt.format == "tflite" and fmt.precision == "int8") else "float",
                             calibration=calib_info if fmt.needs_calibration else None)
        if fmt.precision == "int8":
            meta["weights"] = WEIGHTS[src.per_tensor]
            if keep_info:
                meta["keep_float"] = keep_info
        path = tmp / name
        path.write_bytes(blob)
        try:
            loaded = open_model(path)
        except EdgeFerError as e:  # the converter wrote what its runtime cannot load; the temp path means nothing
            raise RunError(f"{str(e).replace(str(path), name)}; nothing was written") from None
        if fmt.format == "tflite":
            meta["input"]["quantization"] = list(map(float, loaded.input_quantization))
            meta["output_quantization"] = list(map(float, loaded.output_quantization))
        verification = _verify(path, ref.x, ref.y, ref.p_qat if origin == "qat" else ref.p_float)
        ops = float_ops(loaded) if fmt.format == "tflite" and fmt.precision in ("int8", "int16x8") else []
        meta["verification"] = verification
        blob = embed_tflite(blob, meta) if fmt.format == "tflite" else embed_onnx(blob, meta)
        path.write_bytes(blob)
        ok = verification["agreement"] >= ec.threshold
        r = ExportResult(file=str(out_dir / name), format=fmt.format, precision=fmt.precision, source=origin,
                         size_bytes=len(blob), seconds=time.time() - t0, verification=verification,
                         float_ops=ops, status="ok" if ok else ("forced" if ec.force else "refused"),
                         keep_float=list(keep_info["layers"]) if keep_info and fmt.precision == "int8" else [])
        if ops:
            log.warning("%s: %d op(s) left in float: %s", name, len(ops), ", ".join(sorted(set(ops))))
        meta.update(sha256=sha256(path), size_bytes=r.size_bytes, file=name, status=r.status)
        staged.append((r, path, out_dir / name, meta))
        if on_result:
            on_result(r)
    return staged


def _refuse_below_gate(results: list[ExportResult], threshold: float, run_dir: Path, cfg) -> None:
    """ExportRefused, with the remedy that fits, when an artefact (not forced) is below the gate."""
    refused = [r for r in results if r.status == "refused"]
    if not refused:
        return
    names = ", ".join(f"{Path(r.file).name} ({r.verification['agreement']:.2%})" for r in refused)
    if all(r.source == "qat" for r in refused):
        asked = (RunLayout(run_dir).qat() or {}).get("range_percentile")
        if asked == "auto":  # the ranges were chosen for the 98% gate already: more than ranges is needed
            remedies = (f"its QAT already chose activation ranges on validation (--range-percentile auto); try "
                        f"more QAT epochs (`edgefer qat {run_dir} --epochs 5`), a lower --threshold, or --force "
                        "to write anyway")
        else:
            remedies = (f"try `edgefer qat {run_dir}` (its default `--range-percentile auto` chooses activation "
                        "ranges that pass this gate), a lower --threshold, or --force to write anyway")
        hint = _architecture_hint(cfg, remedies)
    else:
        hint = ("`edgefer inspect RUN` ranks the layers by the agreement their int8 costs: keep the worst in "
                "float with --keep-float LAYER (or --keep-float auto); or try `edgefer qat RUN` then export "
                "--from qat, a larger --calib-size, or --force to write anyway")
    raise ExportRefused(f"agreement with the Keras source below {threshold:.0%} for {names}; nothing was "
                        f"written; {hint}")


def _architecture_hint(cfg, remedies: str) -> str:
    """Why int8 from QAT of this architecture may disagree with its source, then the remedies."""
    if cfg.model.startswith("mobilenetv3") and not (cfg.model_options or {}).get("minimalistic"):
        return ("MobileNetV3's squeeze-excite gates and hard-swish multiplies cost int8 agreement; "
                f"{remedies}; a run trained with `-o minimalistic=true` passes too (docs/benchmarks.md)")
    return f"a model with many near-ties agrees less (see docs/benchmarks.md); {remedies}"


def _write(staged: list[tuple], out_dir: Path) -> None:
    """Move the verified artefacts into place, each with its metadata sidecar."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for _, src_path, dst, meta in staged:
        with atomic_path(dst) as t:
            shutil.copyfile(src_path, t)
            # the sidecar vouches for the model beside it: gone just before the model is replaced, then rewritten
            Path(str(dst) + ".json").unlink(missing_ok=True)
        write_json(Path(str(dst) + ".json"), meta)


def _convert(fmt: ExportFormat, float_model, qat_model, calib, method, io, batch, float_onnx, per_tensor=False,
             keep_float=()):
    """Returns (model bytes, the float ONNX bytes cached for the int8 ONNX route)."""
    if fmt.format == "tflite":
        model = qat_model if (fmt.precision == "int8" and qat_model is not None) else float_model
        return convert.to_tflite(model, fmt.precision, calib=calib, io=io, batch=batch,
                                 per_tensor=per_tensor, keep_float=keep_float), float_onnx
    if fmt.precision == "float32":
        blob = convert.to_onnx_float(float_model, batch=batch)
        return blob, blob
    if qat_model is not None:  # keep QAT's learned ranges
        blob = convert.to_tflite(qat_model, "int8", calib=calib, io="float", batch=batch, per_tensor=per_tensor)
        return convert.onnx_from_tflite(blob), float_onnx
    float_onnx = float_onnx or convert.to_onnx_float(float_model, batch=batch)
    return convert.onnx_int8_from_float(float_onnx, calib, method, per_tensor=per_tensor,
                                        keep_float=keep_float), float_onnx


def _update_report(out_dir: Path, results: list[ExportResult], ec: ExportConfig) -> None:
    path = RunLayout.export_report_in(out_dir)
    report = json.loads(path.read_text()) if path.is_file() else {"artefacts": {}}
    for r in results:
        report["artefacts"][Path(r.file).name] = {**asdict(r), "config": ec.to_dict()}
    report["threshold"] = ec.threshold
    report["config"] = ec.to_dict()  # the latest export's resolved ExportConfig
    report["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(path, report)
