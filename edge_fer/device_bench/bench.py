"""``edgefer bench``: accuracy, F1 and latency of exported models on a target device.

    from edge_fer.device_bench.bench import bench_models
    records = bench_models(["runs/cnn/export/cnn_int8_qat.tflite"], device="cpu", threads=[1, 2])

Each model × thread count gives one record with a status (ok / unavailable / failed and why).
The measurement itself is :mod:`edge_fer.device_bench.runner`, a standalone script run in a
fresh process (here for ``cpu``), so memory and crashes are its own and the numbers are those
the same file produces on a device. Quality metrics are computed here, with scikit-learn, from
the labels the runner predicted.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeFerError, RunError
from ..labels import CLASSES
from .remote import RemoteError, runner_result

log = logging.getLogger("edge_fer")

DEVICES = ("cpu", "gpu", "rpi")


def keras_info(path: Path) -> dict:
    """What the bench needs of a run's .keras model (the float baseline), from its run directory."""
    import json

    info = path.parent / "model.json"
    if not info.is_file():
        raise EdgeFerError(f"{path}: no model.json beside it; bench a .keras model inside its run directory "
                           "(e.g. runs/cnn/best.keras)")
    model = json.loads(info.read_text())
    return {"model": model["name"], "format": "keras", "precision": "float32", "source": "keras",
            "classes": list(CLASSES), "input": {"shape": [1, *model["input_shape"]]}}


def artefact_info(path: Path) -> dict:
    """Metadata of an exported model (sidecar); the bench never guesses preprocessing or labels."""
    from ..export.metadata import read_sidecar

    if path.suffix == ".keras":
        return keras_info(path)
    meta = read_sidecar(path)
    if meta.get("classes") != list(CLASSES):
        raise EdgeFerError(f"{path}: classes {meta.get('classes')} differ from edge_fer's {list(CLASSES)}")
    return meta


def shipped_files() -> list[Path]:
    """Every file of every shipped model (TFLite and ONNX)."""
    from ..zoo import shipped_models

    files = [f for m in shipped_models() for f in m.files.values()]
    if not files:
        raise EdgeFerError("no model shipped with this installation; name exported model files instead")
    return files


def default_models() -> list[Path]:
    """The latest run's export/ folder; on a machine without runs, the shipped models."""
    from ..runs import latest_run

    try:
        run = latest_run()
    except RunError:
        files = shipped_files()
        log.info("no runs yet: benchmarking the %d shipped model file(s) (see `edgefer models`)", len(files))
        return files
    models = sorted(p for p in (run / "export").glob("*") if p.suffix in (".tflite", ".onnx"))
    if not models:
        raise EdgeFerError(f"{run}/export has no models; run `edgefer export {run}` first, or name model files")
    return models


def faces_file(data_path, split: str, directory: Path, size: int) -> tuple[Path, np.ndarray, str]:
    from ..data import load_fer

    data = load_fer(data_path)
    s = data[split]
    if tuple(s.x.shape[1:]) != (size, size):
        raise ConfigError(f"the models take {size}x{size} faces, the data has {s.x.shape[1:]}")
    path = directory / "faces.npz"
    np.savez(path, x=s.x, y=s.y)
    return path, s.y, f"{data.source} [{split}, {len(s)} faces]"


def _record(model: Path, meta: dict, device: str, **extra) -> dict:
    return {"model": model.name, "path": str(model), "architecture": meta.get("model"), "format": meta.get("format"),
            "precision": meta.get("precision"), "source": meta.get("source"), "device": device,
            "size_bytes": model.stat().st_size, **extra}


def _run_local(model: Path, faces: Path, threads, xnnpack: bool, min_seconds: float, timeout: float,
               accelerator: str = "cpu", cpu_fallback: bool = False, delegate: str | None = None,
               python: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    """The runner in a fresh local process, exactly as it runs on a device (``python``: another interpreter,
    e.g. an emulated aarch64 one; default this one)."""
    cmd = [python or sys.executable, str(Path(__file__).parent / "runner.py"), "--model", str(model), "--data", str(faces),
           "--threads", ",".join(map(str, threads)), "--min-seconds", str(min_seconds), "--accelerator", accelerator]
    cmd += list(extra)
    if not xnnpack:
        cmd.append("--no-xnnpack")
    if cpu_fallback:
        cmd.append("--allow-cpu-fallback")
    if delegate:
        cmd += ["--delegate", str(delegate)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": ""})
    except subprocess.TimeoutExpired:
        raise RemoteError(f"timed out after {timeout:.0f} s") from None
    return runner_result(proc.returncode, proc.stdout, proc.stderr)


def bench_models(models, *, device: str = "cpu", threads=(1,), data=None, split: str = "test",
                 xnnpack: bool = True, min_seconds: float = 2.0, timeout: float = 900.0, target=None,
                 allow_cpu_fallback: bool = False, delegate: str | None = None, on_record=None) -> list[dict]:
    """One record per model × thread count (one per model on ``gpu``).

    ``target``: a connected RemoteTarget for ``rpi``. ``gpu``: LiteRT's GPU accelerator for .tflite
    (or the TFLite ``delegate`` library given), ONNX Runtime's GPU providers for .onnx; GPU only
    unless ``allow_cpu_fallback``.
    """
    from ..report.metrics import classification_metrics

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if device != "gpu" and (allow_cpu_fallback or delegate):
        raise ConfigError("--allow-cpu-fallback and --delegate apply to --device gpu only")
    if device == "rpi" and target is None:
        raise ConfigError("--device rpi needs a target (a connected RemoteTarget)")
    from ..zoo import resolve_model

    models = [resolve_model(m) for m in models] if models else default_models()
    metas = {m: artefact_info(m) for m in models}
    sizes = {int(meta["input"]["shape"][1]) for meta in metas.values()}
    if len(sizes) != 1:
        raise ConfigError(f"models take different input sizes {sorted(sizes)}; benchmark them separately")
    probe = target.probe() if target is not None else None
    where = {"host": target.host} if target is not None else {}
    records = []
    with tempfile.TemporaryDirectory(prefix="edgefer-bench-") as d:
        faces, y_true, data_desc = faces_file(data, split, Path(d), sizes.pop())
        for model in models:
            meta = metas[model]
            t0 = time.time()
            try:
                if model.suffix == ".keras" and device != "cpu":
                    raise RemoteError(f"a .keras model is the float baseline on this machine's CPU (TensorFlow), "
                                      f"not a {device} artefact; export it first", status="unavailable")
                if target is not None:
                    result = target.run_runner(model, faces, threads=threads, xnnpack=xnnpack,
                                               min_seconds=min_seconds, timeout=timeout)
                elif model.suffix == ".keras":
                    runs = [_run_local(model, faces, [t], xnnpack, min_seconds, timeout) for t in threads]
                    result = {**runs[0], "results": [r for run in runs for r in run["results"]]}
                else:
                    result = _run_local(model, faces, threads, xnnpack, min_seconds, timeout,
                                        accelerator="gpu" if device == "gpu" else "cpu",
                                        cpu_fallback=allow_cpu_fallback, delegate=delegate)
            except RemoteError as e:
                records.append(_record(model, meta, device, status=e.status, reason=str(e), device_info=probe, **where))
                if on_record:
                    on_record(records[-1])
                continue
            for r in result["results"]:
                metrics = classification_metrics(y_true, y_pred=np.asarray(r["predictions"]))
                rec = _record(model, meta, device, **where, status="ok", threads=r["threads"], runtime=result["runtime"],
                              runtime_version=result["runtime_version"], xnnpack=result["xnnpack"],
                              machine=result["machine"], device_info=probe, data=data_desc, init_ms=r["init_ms"],
                              latency=r["latency"], throughput_img_s=r.get("throughput_img_s"),
                              throughput_batch=r.get("throughput_batch"), peak_rss_mb=r["peak_rss_mb"],
                              accuracy=metrics["accuracy"], macro_f1=metrics["macro"]["f1"],
                              weighted_f1=metrics["weighted"]["f1"], per_class=metrics["per_class"],
                              confusion_matrix=metrics["confusion_matrix"], sample_outputs=r.get("sample_outputs"),
                              seconds=time.time() - t0)
                if "gpu" in result:
                    rec["gpu"] = result["gpu"]
                    rec["accelerator_label"] = result["gpu"]["label"]
                records.append(rec)
                if on_record:
                    on_record(rec)
    return records


def format_table(records: list[dict]) -> str:
    def dev(r):
        label = r["device"] + (f":{r['host']}" if r.get("host") else "")
        return label + (" (sw)" if (r.get("gpu") or {}).get("label") == "software GPU emulation" else "")

    def kb(r):
        return f"{r['size_bytes'] / 1024:>9.0f}" if r.get("size_bytes") is not None else f"{'-':>9}"

    width = max([6] + [len(dev(r)) + 1 for r in records])
    head = f"{'model':<34}{'device':<{width}}{'thr':>4}{'acc':>8}{'mF1':>8}{'p50 ms':>9}{'p90 ms':>9}{'KB':>9}  status"
    lines = [head]
    for r in records:
        if r["status"] == "ok":
            lat = r["latency"]
            lines.append(f"{r['model']:<34}{dev(r):<{width}}{r['threads']:>4}{r['accuracy']:>8.4f}{r['macro_f1']:>8.4f}"
                         f"{lat['p50_ms']:>9.3f}{lat['p90_ms']:>9.3f}{kb(r)}  ok")
        else:
            lines.append(f"{r['model']:<34}{dev(r):<{width}}{'':>4}{'':>8}{'':>8}{'':>9}{'':>9}"
                         f"{kb(r)}  {r['status']}: {r['reason']}")
    return "\n".join(lines)


def cross_check(model, python: str, *, data=None, split: str = "test", faces: int = 200,
                timeout: float = 1800.0) -> dict:
    """Run one model through the device runner under another Python (for instance the emulated aarch64
    Raspberry Pi of ``scripts/arm64_pi.sh``) and under this one, on the first ``faces`` faces of ``split``;
    compare their labels and raw outputs. A correctness check: the other interpreter's timings mean nothing.
    """
    from ..zoo import resolve_model

    model = resolve_model(model)
    if not Path(python).is_file():
        raise ConfigError(f"{python}: no such interpreter (the emulated Pi is made by `bash scripts/arm64_pi.sh`)")
    size = int(artefact_info(model)["input"]["shape"][1])
    with tempfile.TemporaryDirectory(prefix="edgefer-xcheck-") as d:
        path, _, desc = faces_file(data, split, Path(d), size)
        with np.load(path) as z:
            x, y = z["x"][:faces], z["y"][:faces]
        np.savez(path, x=x, y=y)
        quick = ("--min-runs", "1", "--warmup", "1", "--throughput-batch", "0")  # labels and outputs only
        there = _run_local(model, path, [1], True, 0.0, timeout, python=python, extra=quick)
        here = _run_local(model, path, [1], True, 0.0, timeout, extra=quick)
    a, b = there["results"][0], here["results"][0]
    pa, pb = np.asarray(a["predictions"]), np.asarray(b["predictions"])
    oa, ob = np.asarray(a["sample_outputs"]), np.asarray(b["sample_outputs"])
    return {"model": model.name, "faces": int(len(x)), "data": f"{desc.split(' [')[0]} [{split}, first {len(x)} faces]",
            "machine": there["machine"], "runtime": f"{there['runtime']} {there['runtime_version']}",
            "labels_equal": float((pa == pb).mean()), "sample_outputs": int(len(oa)),
            "sample_outputs_max_diff": float(np.abs(oa.astype(np.float64) - ob).max()),
            "sample_outputs_equal": bool(np.array_equal(oa, ob))}
