"""``edgefer bench``: accuracy, F1 and latency of exported models on a target device.

    from edge_fer.device_bench.bench import bench_models
    records = bench_models(["runs/cnn/export/cnn_int8_qat.tflite"], device="cpu", threads=[1, 2])

Each model × thread count gives one record with a status (ok / unavailable / failed and why).
The measurement itself is the device benchmark script (:mod:`edge_fer.runtime.device`), run in a
fresh process here (:mod:`.script`) or copied to a device (:mod:`.remote`), so memory and crashes are
its own and the numbers are those the same file produces on a device. Quality metrics are computed
here from the labels the script predicted.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeFerError, ModelError, RemoteError, RunError
from ..labels import CLASSES
from ..runs import EXPORT_REPORT
from ..runtime import MODEL_SUFFIXES, read_metadata
from .script import resolve_min_seconds, run_local

log = logging.getLogger("edge_fer")

DEVICES = ("cpu", "gpu", "rpi")


def keras_info(path: Path) -> dict:
    """What the bench needs of a run's .keras model (the float baseline), from its run directory."""
    import json

    from ..runs import RunLayout

    layout = RunLayout(path.parent)
    info = layout.model_info
    if not info.is_file():
        raise RunError(f"{path}: no model.json beside it; bench a .keras model inside its run directory "
                           "(e.g. runs/cnn/best.keras)")
    model = json.loads(info.read_text())
    config = layout.config
    return {"model": model["name"], "format": "keras", "precision": "float32", "source": "keras",
            "classes": list(CLASSES), "input": {"shape": [1, *model["input_shape"]]}, "metadata_source": "run",
            "train_config": json.loads(config.read_text()) if config.is_file() else None}


def parse_classes(value) -> list[str]:
    """``--classes``: the model's output classes in order, each one of edge_fer's class names."""
    names = [c.strip().lower() for c in (value.split(",") if isinstance(value, str) else value) if c.strip()]
    unknown = [c for c in names if c not in CLASSES]
    if not names or unknown or len(set(names)) != len(names):
        what = (f"unknown {', '.join(map(repr, unknown))}" if unknown else "repeated names" if names else "empty")
        raise ConfigError(f"--classes {value!r}: {what}; expected the model's output classes in order, each once, "
                          f"from {','.join(CLASSES)} (e.g. --classes {','.join(CLASSES)})")
    return names


def parse_input_scale(value) -> tuple[float, float]:
    """``--input-scale SCALE[,OFFSET]``: model input = pixel (0–255) × SCALE + OFFSET; fractions allowed
    (``1/255``, ``1/127.5,-1``)."""
    import math

    def number(text: str) -> float:
        num, _, den = text.strip().partition("/")
        return float(num) / float(den) if den else float(num)

    if isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        try:
            parts = [number(v) for v in str(value).split(",")]
        except (ValueError, ZeroDivisionError):
            parts = []
    if len(parts) == 1:
        parts.append(0.0)
    if len(parts) != 2 or not all(math.isfinite(p) for p in parts) or parts[0] == 0:
        raise ConfigError(f"--input-scale {value!r}: expected SCALE or SCALE,OFFSET with SCALE non-zero, the model's "
                          "input being pixel (0–255) × SCALE + OFFSET; e.g. 1 (raw pixels), 1/255 (0–1), 1/127.5,-1 (±1)")
    return float(parts[0]), float(parts[1])


def foreign_info(path: Path, *, input_scale=None, input_size: int | None = None, classes=None) -> dict:
    """What the bench can know of a model edge_fer did not export (no metadata): its inputs, outputs and
    operators. Accuracy needs to be told how to feed it (``classes`` and ``input_scale``, ``input_size``
    when its input size is not fixed); otherwise its record has latency, throughput and memory only."""
    from .ops import inspect_model

    info = inspect_model(path)
    meta = {"model": path.stem, "format": path.suffix[1:], "precision": None, "source": None, "metadata_source": "none",
            "inputs": info["inputs"], "outputs": info["outputs"], "ops": info["ops"]}
    if classes is None and input_scale is None and input_size is None:
        meta["accuracy_note"] = ("not measured: no edge_fer metadata in or beside the model; pass --classes and "
                                 "--input-scale (and --input-size) to say how to feed it faces")
        return meta
    missing = [flag for flag, v in (("--classes", classes), ("--input-scale", input_scale)) if v is None]
    if missing:
        raise ConfigError(f"{path}: has no edge_fer metadata, so its accuracy needs {' and '.join(missing)} as well "
                          f"(how to feed it faces); omit --classes/--input-scale/--input-size to time it only")
    classes, (scale, offset) = parse_classes(classes), parse_input_scale(input_scale)
    shape = info["inputs"][0]["shape"]
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ConfigError(f"{path}: input shape {shape}; the bench feeds faces as NHWC with 1 or 3 channels, so it can "
                          "time this model (omit --classes/--input-scale) but not score it")
    h, w = shape[1], shape[2]
    if input_size is None:
        if h <= 0 or h != w:
            raise ConfigError(f"{path}: input {h}x{w} is not a fixed square; pass --input-size N")
        input_size = h
    elif input_size < 1 or (h > 0 and (h, w) != (input_size, input_size)):
        raise ConfigError(f"--input-size {input_size}: {path} takes {h}x{w} inputs; pass --input-size {h}"
                          if h > 0 else f"--input-size {input_size}: expected a size ≥ 1")
    n_out = info["outputs"][0]["shape"][-1]
    if n_out != len(classes):
        raise ConfigError(f"--classes names {len(classes)} classes but {path} outputs {n_out} scores; name its "
                          f"{n_out} classes in output order")
    meta.update(classes=classes, input={"shape": [-1, input_size, input_size, shape[-1]], "scale": scale,
                                        "offset": offset})
    return meta


def artefact_info(path: Path, **feed) -> dict:
    """Metadata of a model: its sidecar, else what is embedded in it (``metadata_source`` says which); a model
    without either is described by :func:`foreign_info` (``feed``: its ``input_scale``, ``input_size``,
    ``classes``). The bench never guesses preprocessing or labels."""
    if path.suffix == ".keras":
        return keras_info(path)
    meta, source = read_metadata(path)
    if meta is None:
        return foreign_info(path, **feed)
    if source == "embedded":
        log.info("%s: no %s.json sidecar; using the metadata embedded in the model", path, path.name)
    if meta.get("classes") != list(CLASSES):
        raise ModelError(f"{path}: classes {meta.get('classes')} differ from edge_fer's {list(CLASSES)}")
    return {**meta, "metadata_source": source, "ops": model_ops(path)}


def model_ops(path: Path) -> dict | None:
    """The operator summary of a model file (:mod:`.ops`); None when it cannot be read (its run then fails)."""
    from .ops import inspect_model

    try:
        return inspect_model(path)["ops"]
    except EdgeFerError as e:
        log.debug("%s", e)
        return None


def without_metadata_files(models) -> list:
    """``models`` less the metadata files a shell glob brings along with them (``export/*``): the .json
    sidecar of a model also given, and the ``export_report.json`` beside one. Any other file stays and
    is judged as a model."""
    paths = [Path(str(m)).expanduser() for m in models]
    given = {p.resolve() for p in paths if p.suffix != ".json"}
    folders = {p.parent for p in given}

    def companion(p: Path) -> bool:
        return p.suffix == ".json" and p.is_file() and (
            p.resolve().with_suffix("") in given or (p.name == EXPORT_REPORT and p.resolve().parent in folders))

    kept = [m for m, p in zip(models, paths) if not companion(p)]
    if len(kept) < len(paths):
        log.info("skipped %d metadata file(s) given with their models (.json sidecars, export_report.json)",
                 len(paths) - len(kept))
    return kept


def shipped_files() -> list[Path]:
    """Every file of every shipped model (TFLite and ONNX)."""
    from ..zoo import shipped_models

    files = [f for m in shipped_models() for f in m.files.values()]
    if not files:
        raise ModelError("no model shipped with this installation; name exported model files instead")
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
    from ..runs import RunLayout

    models = sorted(p for p in RunLayout(run).export_dir.glob("*") if p.suffix in MODEL_SUFFIXES)
    if not models:
        raise RunError(f"{run}/export has no models; run `edgefer export {run}` first, or name model files")
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


RUN_DATA_KEYS = ("data", "split_mode", "ferplus", "label_mode", "skip_bad", "seed")


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a bench: ``records`` holds every record measured so far, then one ``interrupted``
    record per model not (fully) measured."""

    def __init__(self, records: list[dict]):
        super().__init__("bench interrupted")
        self.records = records


def data_spec(meta: dict, data=None) -> tuple[str, str | None]:
    """Where a model's labelled faces come from: ``data`` when given (a path, or "embedded"); else the data
    the model's run was trained on (split as in training), when that file is here; else the embedded sample."""
    from ..data.dataset import SAMPLE_NAME

    if data is not None:
        return ("given", str(data))
    cfg = meta.get("train_config") or {}
    if meta.get("shipped_as") or cfg.get("data") in (None, SAMPLE_NAME):
        return ("given", None)
    path = Path(str(cfg["data"])).expanduser()
    if not path.is_absolute() or not path.exists():  # a shipped model's recipe names its data relatively
        log.warning("%s was trained on %s, %s; measuring on the embedded sample (pass --data)", meta.get("model"),
                    cfg["data"], "not found here" if path.is_absolute() else "a path relative to where it was made")
        return ("given", None)
    return ("run", json.dumps({k: cfg.get(k) for k in RUN_DATA_KEYS}, sort_keys=True))


def load_split(spec: tuple[str, str | None], split: str, *, class_map=None,
               drop=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Faces, labels and the record fields naming them (``data``, ``data_source``, ``split``, ``n``);
    another labelled dataset given as ``data`` has its classes mapped (``class_map``, ``drop``)."""
    from ..data import load_fer
    from ..data.dataset import SAMPLE_NAME
    from ..data.labelled import is_fer2013, load_eval_set

    kind, value = spec
    if kind == "given" and value not in (None, SAMPLE_NAME) and (class_map or drop or not is_fer2013(value)):
        s = load_eval_set(value, split, class_map=class_map, drop=drop)
        return s.x, s.y, {"data": s.describe(), "data_source": s.source, "split": s.split, "n": len(s),
                          "left_out": s.dropped}
    if kind == "run":  # split as training split it (TrainConfig.load_data)
        cfg = json.loads(value)
        data = load_fer(cfg["data"], split_mode=cfg.get("split_mode") or "official", ferplus=cfg.get("ferplus"),
                        label_mode=cfg.get("label_mode") or "hard", skip_bad=bool(cfg.get("skip_bad")),
                        seed=cfg.get("seed") or 0)
    else:
        data = load_fer(value)
    s = data[split]
    name = "embedded FER2013 sample" if kind == "given" and value in (None, SAMPLE_NAME) else data.source
    return s.x, s.y, {"data": f"{name} [{split}, {len(s)} faces]", "data_source": name, "split": split, "n": len(s)}


def resize_faces(x: np.ndarray, size: int) -> np.ndarray:
    from ..predict.imaging import resize  # area when shrinking, bilinear when enlarging, as OpenCV

    if x.shape[1:] == (size, size):
        return x
    return np.stack([resize(f, size, size) for f in x]) if len(x) else x


def check_bench_settings(threads, min_seconds, timeout) -> None:
    import math

    if not threads or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 1 for t in threads):
        raise ConfigError(f"threads {list(threads)}: expected thread counts ≥ 1 (e.g. --threads 1,2,4)")
    if not isinstance(min_seconds, (int, float)) or not math.isfinite(min_seconds) or min_seconds < 0:
        raise ConfigError(f"min_seconds {min_seconds!r}: expected a finite number of seconds ≥ 0 (e.g. --min-seconds 2)")
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"timeout {timeout!r}: expected seconds > 0")


def _record(model: Path, meta: dict, device: str, **extra) -> dict:
    rec = {"model": model.name, "path": str(model), "architecture": meta.get("model"), "format": meta.get("format"),
           "precision": meta.get("precision"), "source": meta.get("source"), "device": device,
           "size_bytes": model.stat().st_size, "metadata": meta.get("metadata_source"), "ops": meta.get("ops"), **extra}
    if meta.get("metadata_source") == "none":
        rec.update(inputs=meta.get("inputs"), outputs=meta.get("outputs"))
    return rec


# `edgefer bench --quick`: the device script's timing cut to a rough latency (its labels and outputs as always)
QUICK_TIMING = ("--min-runs", "10", "--warmup", "1", "--throughput-batch", "0")


def bench_models(models, *, device: str = "cpu", threads=(1,), data=None, split: str = "test",
                 xnnpack: bool = True, min_seconds: float | None = None, quick: bool = False, timeout: float = 900.0,
                 target=None, allow_cpu_fallback: bool = False, delegate: str | None = None, on_record=None,
                 input_scale=None, input_size: int | None = None, classes=None, class_map=None,
                 drop_classes=()) -> list[dict]:
    """One record per model × thread count (one per model on ``gpu``).

    ``target``: a connected RemoteTarget for ``rpi``. ``gpu``: LiteRT's GPU accelerator for .tflite
    (or the TFLite ``delegate`` library given), ONNX Runtime's GPU providers for .onnx; GPU only
    unless ``allow_cpu_fallback``. ``quick``: a rough latency (:data:`QUICK_TIMING`), for a slow device whose
    accuracy is what matters; ``min_seconds`` None: 2 s, or 0 with ``quick``. ``data`` None: each model's
    faces are those of the data its run was trained on (else the embedded sample); every record names its
    ``data``, ``split`` and ``n``.
    ``input_scale``, ``input_size``, ``classes``: how to feed faces to models without edge_fer metadata
    (see :func:`foreign_info`); without them such a model is timed only. ``class_map``, ``drop_classes``:
    another labelled dataset's class names mapped to ours (:mod:`edge_fer.data.labelled`). Ctrl-C raises
    :class:`BenchInterrupted` carrying the records measured so far.
    """
    from ..report.metrics import classification_metrics

    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if device != "gpu" and (allow_cpu_fallback or delegate):
        raise ConfigError("--allow-cpu-fallback and --delegate apply to --device gpu only")
    if device == "rpi" and target is None:
        raise ConfigError("--device rpi needs a target (a connected RemoteTarget)")
    min_seconds = resolve_min_seconds(min_seconds, quick)
    check_bench_settings(threads, min_seconds, timeout)
    from ..zoo import resolve_model

    models = [resolve_model(m) for m in without_metadata_files(models)] if models else default_models()
    feed = {"input_scale": input_scale, "input_size": input_size, "classes": classes}
    metas = {m: artefact_info(m, **feed) for m in models}
    if any(v is not None for v in feed.values()) and all(meta["metadata_source"] != "none" for meta in metas.values()):
        raise ConfigError("--input-scale, --input-size and --classes describe models without edge_fer metadata; "
                          "every model given has it (its preprocessing and classes are used); drop those options")
    probe = target.probe() if target is not None else None
    where = {"host": target.host} if target is not None else {}
    records, done = [], set()
    with tempfile.TemporaryDirectory(prefix="edgefer-bench-") as d:
        # every faces file first: a data problem is one error before anything runs, not a half-finished bench
        splits, feeds = {}, {}
        for model, meta in metas.items():
            if "classes" not in meta:
                feeds[model] = None  # timed only
                continue
            spec = data_spec(meta, data)
            if spec not in splits:
                splits[spec] = load_split(spec, split, class_map=class_map, drop=drop_classes)
                log.info("data: %s%s", splits[spec][2]["data"],
                         " (the data the model's run was trained on; --data overrides)" if spec[0] == "run" else "")
            x, y, info = splits[spec]
            size = int(meta["input"]["shape"][1])
            if meta["metadata_source"] == "none":
                x = resize_faces(x, size)
            elif tuple(x.shape[1:]) != (size, size):
                raise ConfigError(f"{model.name} takes {size}x{size} faces, the data ({info['data']}) has "
                                  f"{x.shape[1]}x{x.shape[2]}; pass --data with {size}x{size} faces")
            path = Path(d) / f"faces_{list(splits).index(spec)}_{size}.npz"
            if not path.is_file():
                np.savez(path, x=x, y=y)
            feeds[model] = (path, y, info)
        try:
            for model in models:
                meta, fed = metas[model], feeds[model]
                faces, y_true, info = fed if fed else (None, None, {"data": None, "split": None, "n": None})
                t0 = time.time()
                scale = ("--input-scale", str(meta["input"]["scale"]), "--input-offset", str(meta["input"]["offset"])) \
                    if fed and "scale" in meta["input"] else ()
                timing = QUICK_TIMING if quick else ()
                try:
                    if model.suffix == ".keras" and device != "cpu":
                        raise RemoteError(f"a .keras model is the float baseline on this machine's CPU (TensorFlow), "
                                          f"not a {device} artefact; export it first", status="unavailable")
                    if target is not None:
                        result = target.run_script(model, faces, threads=threads, xnnpack=xnnpack,
                                                   min_seconds=min_seconds, timeout=timeout, extra=scale + timing)
                    elif model.suffix == ".keras":
                        runs = [run_local(model, faces, [t], min_seconds=min_seconds, timeout=timeout, extra=timing)
                                for t in threads]
                        result = {**runs[0], "results": [r for run in runs for r in run["results"]]}
                    else:
                        result = run_local(model, faces, threads, xnnpack=xnnpack, min_seconds=min_seconds,
                                           timeout=timeout, accelerator="gpu" if device == "gpu" else "cpu",
                                           cpu_fallback=allow_cpu_fallback, delegate=delegate, extra=scale + timing)
                except RemoteError as e:
                    records.append(_record(model, meta, device, status=e.status, reason=str(e), device_info=probe,
                                           **info, **where))
                    done.add(model)
                    if on_record:
                        on_record(records[-1])
                    continue
                for r in result["results"]:
                    quality = {"accuracy": None, "macro_f1": None, "accuracy_note": meta.get("accuracy_note")}
                    if fed:
                        pred = np.asarray(r["predictions"])
                        if meta["classes"] != list(CLASSES):  # the model's own class order → edge_fer's
                            pred = np.asarray([CLASSES.index(c) for c in meta["classes"]])[pred]
                        m = classification_metrics(y_true, y_pred=pred)
                        quality = {"accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"],
                                   "weighted_f1": m["weighted"]["f1"], "per_class": m["per_class"],
                                   "confusion_matrix": m["confusion_matrix"]}
                    rec = _record(model, meta, device, **where, status="ok", threads=r["threads"],
                                  runtime=result["runtime"], runtime_version=result["runtime_version"],
                                  xnnpack=result["xnnpack"], machine=result["machine"], device_info=probe, **info,
                                  init_ms=r["init_ms"], latency=r["latency"], throughput_img_s=r.get("throughput_img_s"),
                                  throughput_batch=r.get("throughput_batch"), peak_rss_mb=r["peak_rss_mb"], **quality,
                                  sample_outputs=r.get("sample_outputs"), seconds=time.time() - t0)
                    if "runner" in result:  # over SSH: the device's installed edge_fer or the standalone .pyz
                        rec["runner"] = result["runner"]
                    if "scored_with_threads" in r:  # labels reused from that thread count's identical outputs
                        rec["scored_with_threads"] = r["scored_with_threads"]
                    if "gpu" in result:
                        rec["gpu"] = result["gpu"]
                        rec["accelerator_label"] = result["gpu"]["label"]
                    if "exact_int8" in result:  # ORT's EXACT_INT8 (set on x86 CPUs without VNNI)
                        rec["exact_int8"] = result["exact_int8"]
                    records.append(rec)
                    if on_record:
                        on_record(rec)
                done.add(model)
        except KeyboardInterrupt:
            for model in models:
                if model not in done:
                    fed = feeds[model]
                    records.append(_record(model, metas[model], device, status="interrupted",
                                           reason="not measured: the bench was interrupted (Ctrl-C)",
                                           **(fed[2] if fed else {"data": None, "split": None, "n": None}), **where))
            raise BenchInterrupted(records) from None
    return records


def _not_int8(ops: dict | None) -> str:
    """For an int8 model with float islands (``export --keep-float``): which ops are not int8."""
    if not ops or not ops.get("int8") or not ops.get("not_int8"):
        return ""
    return "; not int8: " + ", ".join(f"{k}×{v}" for k, v in ops["not_int8"].items())


def format_table(records: list[dict]) -> str:
    def dev(r):
        label = r["device"] + (f":{r['host']}" if r.get("host") else "")
        return label + (" (sw)" if (r.get("gpu") or {}).get("label") == "software GPU emulation" else "")

    def kb(r):
        return f"{r['size_bytes'] / 1024:>9.0f}" if r.get("size_bytes") is not None else f"{'-':>9}"

    def num(v, spec, width):
        return f"{v:>{width}{spec}}" if v is not None else f"{'-':>{width}}"

    width = max([6] + [len(dev(r)) + 1 for r in records])
    head = (f"{'model':<34}{'device':<{width}}{'thr':>4}{'acc':>8}{'mF1':>8}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'KB':>9}"
            f"{'int8':>6}  status")
    lines = [head]
    for r in records:
        int8 = f"{(r.get('ops') or {}).get('int8_share', 0):>6.0%}" if r.get("ops") else f"{'-':>6}"
        if r["status"] == "ok":
            lat = r["latency"]
            lines.append(f"{r['model']:<34}{dev(r):<{width}}{r['threads']:>4}{num(r['accuracy'], '.4f', 8)}"
                         f"{num(r['macro_f1'], '.4f', 8)}{num(r.get('n'), 'd', 6)}{lat['p50_ms']:>9.3f}{lat['p90_ms']:>9.3f}"
                         f"{kb(r)}{int8}  ok{'' if r['accuracy'] is not None else ' (timed only: no edge_fer metadata)'}"
                         f"{_not_int8(r.get('ops'))}")
        else:
            lines.append(f"{r['model']:<34}{dev(r):<{width}}{'':>4}{'':>8}{'':>8}{'':>6}{'':>9}{'':>9}"
                         f"{kb(r)}{int8}  {r['status']}: {r['reason']}")
    datas = sorted({r["data"] for r in records if r.get("data")})
    lines += [f"data: {d}" for d in datas]
    if len(datas) > 1:
        lines.append(f"warning: these records measure accuracy on {len(datas)} different data sets; compare accuracies "
                     "only between records on the same data")
    return "\n".join(lines)


def cross_check(model, python: str, *, data=None, split: str = "test", faces: int = 200,
                timeout: float = 1800.0) -> dict:
    """Run one model through the device script under another Python (for instance the emulated aarch64
    Raspberry Pi of ``scripts/arm64_pi.sh``) and under this one, on the first ``faces`` faces of ``split``;
    compare their labels and raw outputs. A correctness check: the other interpreter's timings mean nothing.
    """
    from ..zoo import resolve_model

    model = resolve_model(model)
    if not Path(python).is_file():
        raise ConfigError(f"{python}: no such interpreter (the emulated Pi is made by `bash scripts/arm64_pi.sh`)")
    meta = artefact_info(model)
    if "classes" not in meta:
        raise ConfigError(f"{model}: no edge_fer metadata; cross_check compares the labels of models edge_fer exported")
    size = int(meta["input"]["shape"][1])
    with tempfile.TemporaryDirectory(prefix="edgefer-xcheck-") as d:
        path, _, desc = faces_file(data, split, Path(d), size)
        with np.load(path) as z:
            x, y = z["x"][:faces], z["y"][:faces]
        np.savez(path, x=x, y=y)
        quick = ("--min-runs", "1", "--warmup", "1", "--throughput-batch", "0")  # labels and outputs only
        there = run_local(model, path, [1], min_seconds=0.0, timeout=timeout, python=python, extra=quick)
        here = run_local(model, path, [1], min_seconds=0.0, timeout=timeout, extra=quick)
    a, b = there["results"][0], here["results"][0]
    pa, pb = np.asarray(a["predictions"]), np.asarray(b["predictions"])
    oa, ob = np.asarray(a["sample_outputs"]), np.asarray(b["sample_outputs"])
    return {"model": model.name, "faces": int(len(x)), "data": f"{desc.split(' [')[0]} [{split}, first {len(x)} faces]",
            "machine": there["machine"], "runtime": f"{there['runtime']} {there['runtime_version']}",
            "labels_equal": float((pa == pb).mean()), "sample_outputs": int(len(oa)),
            "sample_outputs_max_diff": float(np.abs(oa.astype(np.float64) - ob).max()),
            "sample_outputs_equal": bool(np.array_equal(oa, ob))}


def bench_fleet(models, hosts: list[str], *, port: int = 22, identity=None, remote_python: str = "python3",
                known_hosts=None, trust_new_host: bool = False, on_probe=None, **bench_kwargs) -> list[dict]:
    """:func:`bench_models` on several Pis at once, one thread per device; records carry their ``host``.

    With one host, a connection problem is an error (one clear line). With several, it becomes a
    record for that host (status ``unavailable``) and the other devices still run.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .remote import RemoteTarget

    def one(host):
        with RemoteTarget(host, port=port, identity=identity, remote_python=remote_python, known_hosts=known_hosts,
                          trust_new_host=trust_new_host) as target:
            info = target.probe()
            if on_probe:
                on_probe(host, info)
            return bench_models(models, device="rpi", target=target, **bench_kwargs)

    if len(hosts) == 1:
        return one(hosts[0])
    records = []
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {h: pool.submit(one, h) for h in hosts}
        for host, future in futures.items():
            try:
                records.extend(future.result())
            except EdgeFerError as e:
                status = getattr(e, "status", "unavailable")
                records.append({"model": ", ".join(Path(m).name for m in models) or "(default models)", "device": "rpi",
                                "host": host, "status": status, "reason": str(e), "size_bytes": None})
    return records
