"""Ship a trained, QAT-fine-tuned and exported run as a packaged int8 model with a model card,
and rebuild a shipped model from its recorded recipe.

    edgefer zoo ship ~/edgefer-runs/cnn            # → edge_fer/zoo/shipped/cnn_int8.{tflite,onnx,md,card.json}
    edgefer zoo build cnn_int8 --data fer2013.csv  # train → qat → export → ship into runs/zoo-cnn_int8/

The card's figures are measured here, on PrivateTest (the ``test`` split), once; nothing is chosen
on them (epochs were chosen on PublicTest by training, QAT and the export gate).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from ..errors import ConfigError, RunError
from ..labels import CLASSES
from ..runs import atomic_path, read_state, resolve_run, write_json
from . import SHIPPED_DIR, get_shipped

log = logging.getLogger("edge_fer")

MAX_SHIPPED_BYTES = 5 * 1024 * 1024


def int8_artefact(export_dir: Path, arch: str, suffix: str) -> Path | None:
    """The run's int8 export in ``suffix`` format (QAT first, else PTQ), with its sidecar; None if absent."""
    for stem in (f"{arch}_int8_qat", f"{arch}_int8"):
        p = export_dir / f"{stem}{suffix}"
        if p.is_file() and Path(str(p) + ".json").is_file():
            return p
    return None


def _metrics_row(y, probs) -> dict:
    from ..report.metrics import classification_metrics

    m = classification_metrics(y, probs)
    return {"accuracy": m["accuracy"], "macro_precision": m["macro"]["precision"], "macro_recall": m["macro"]["recall"],
            "macro_f1": m["macro"]["f1"], "weighted_f1": m["weighted"]["f1"], "roc_auc_macro": m["roc_auc_macro"],
            "per_class_f1": {c: v["f1"] for c, v in m["per_class"].items()}, "loss": m["loss"],
            "confusion_matrix": m["confusion_matrix"]}


def measure(run_dir: Path, tflite: Path, onnx: Path | None, *, data_path: str | None = None, threads=(1, 2),
            min_seconds: float = 2.0) -> dict:
    """PrivateTest metrics of the float model and the int8 artefacts, agreement, and latency."""
    from ..device_bench.bench import bench_models
    from ..export.runtimes import open_runner
    from ..models import load_model
    from ..report.evaluate import best_model_path, predict_keras
    from ..training import TrainConfig

    cfg = TrainConfig.load(run_dir)
    data = cfg.load_data(data_path)
    test = data["test"]
    if len(test) == 0:
        raise ConfigError(f"{data.source}: no test split to report on")
    p_float = predict_keras(load_model(best_model_path(run_dir)), test.x)
    out = {"data": data.source, "n_test": len(test), "float32": _metrics_row(test.y, p_float)}
    for key, path in (("int8", tflite), ("int8_onnx", onnx)):
        if path is None:
            continue
        p = open_runner(path).predict(test.x)
        out[key] = {**_metrics_row(test.y, p), "agreement_with_float": float((p.argmax(1) == p_float.argmax(1)).mean())}
    latency, cpu = {}, None
    models = [m for m in (tflite, onnx) if m is not None]
    records = bench_models(models, device="cpu", threads=threads, data=data_path or cfg.data, split="test",
                           min_seconds=min_seconds)
    for r in records:
        if r["status"] == "ok":
            latency.setdefault(r["format"], {})[str(r["threads"])] = r["latency"]["p50_ms"]
            cpu = r["machine"].get("cpu", r["machine"]["machine"])
    return {"test": out, "latency_ms": latency, "latency_machine": cpu, "bench_records": records}


def _f(v, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


def _card_markdown(c: dict) -> str:
    t = c["test"]
    f, q = t["float32"], t["int8"]
    lat = c["latency_ms"]
    rows = [("float32 Keras (best epoch)", f, None), ("int8 TFLite", q, c["size_bytes"]["tflite"])]
    if "int8_onnx" in t:
        rows.append(("int8 ONNX (QDQ)", t["int8_onnx"], c["size_bytes"].get("onnx")))
    lines = [
        f"# {c['name']} — {c['architecture']}, int8",
        "",
        f"Facial-emotion classifier for 48×48 grey faces, 7 classes ({', '.join(CLASSES)}), "
        f"quantised to int8 {'after quantisation-aware fine-tuning' if c['qat'] else 'post-training'}"
        f"{' with one weight scale per kernel (per-tensor)' if c['recipe']['export'].get('weights') == 'per-tensor' else ''}. "
        f"Shipped with edge_fer {c['edge_fer_version']}.",
        "",
        "## Data and protocol",
        f"- FER2013 ({t['data']}): trained on Training, epochs and QAT epoch chosen on PublicTest (validation), "
        f"figures below on PrivateTest ({t['n_test']} faces), measured once.",
        f"- Training: {c['recipe']['train']['epochs']} epochs planned, {c['training']['epochs_trained']} trained, best epoch "
        f"{c['training']['best_epoch']} (val acc {_f(c['training']['best_val_accuracy'])}), "
        f"{c['training']['seconds'] / 3600:.2f} h of wall time on {c['training']['machine']} (not a speed figure: "
        f"the 2 cores were shared with other work); batch "
        f"{c['recipe']['train']['batch_size']}, Adam {c['recipe']['train']['lr']:g}, augmentation "
        f"{'on' if c['recipe']['train']['augment'] else 'off'}, {_schedule_text(c['recipe']['train'])}.",
        (f"- QAT: {c['recipe']['qat']['epochs']} epochs at lr {c['recipe']['qat']['lr']:g}, best epoch "
         f"{c['qat'].get('best_epoch')} (QAT val acc {_f(c['qat'].get('qat_val_accuracy'))})"
         + (f", distilling from {c['recipe']['qat']['teacher']} (weight {c['recipe']['qat']['distill_weight']:g}, "
            f"temperature {c['recipe']['qat']['distill_temperature']:g})" if c["recipe"]["qat"].get("teacher") else "")
         + "." if c["qat"] else "- No QAT: post-training quantisation of the float model."),
        (f"- Export verification on PublicTest: int8 TFLite agreement with its Keras source "
         f"{c['export']['agreement']:.2%} (gate 98%: {c['export'].get('status')})."
         if c["export"].get("agreement") is not None else "- Export verification: no export_report.json in the run."),
        "",
        "## PrivateTest",
        "",
        "| model | accuracy | macro P | macro R | macro F1 | ROC-AUC | top-1 agreement with the float model | size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, m, size in rows:
        agree = f"{m['agreement_with_float']:.2%}" if "agreement_with_float" in m else "—"
        lines.append(f"| {label} | {m['accuracy']:.4f} | {m['macro_precision']:.4f} | {m['macro_recall']:.4f} | "
                     f"{m['macro_f1']:.4f} | {m['roc_auc_macro']:.4f} | {agree} | "
                     f"{'—' if size is None else f'{size / 1024:.0f} KB'} |")
    lines += ["", "The float model is the trained checkpoint before QAT; the int8 models come from its QAT "
              "fine-tune, so part of the disagreement is the fine-tune itself." if c["qat"] else
              "The float model is the trained checkpoint; the int8 models are its post-training quantisation.", "",
              "Per-class F1 (int8 TFLite): " + ", ".join(f"{k} {v:.3f}" for k, v in q["per_class_f1"].items()), "",
              "## Latency (batch 1, p50, this toolkit's runner)", ""]
    for fmt, by_t in lat.items():
        lines.append(f"- {fmt}: " + ", ".join(f"{t} thread(s) {v:.3f} ms" for t, v in by_t.items())
                     + f" on {c['latency_machine']}")
    lines += ["", "## Reproduce", "", "```bash"] + c["commands"] + ["```", "",
              "Known limits: FER2013 labels are noisy (see the data README); the model sees one centred face "
              "crop, so detection and alignment (`edgefer predict`) matter as much as the classifier.", ""]
    return "\n".join(lines)


# TrainConfig fields → `edgefer train` flags, for the card's command (model options become -o KEY=VALUE)
_FLAGS = {"precision": "--precision", "split_mode": "--split-mode", "label_mode": "--label-mode",
          "label_smoothing": "--label-smoothing", "monitor": "--monitor", "early_stopping_patience": "--patience",
          "schedule": "--schedule", "warmup_epochs": "--warmup-epochs", "mixup": "--mixup", "teacher": "--teacher",
          "distill_weight": "--distill-weight", "distill_temperature": "--distill-temperature", "seed": "--seed",
          "weights": "--weights", "ferplus": "--ferplus"}


def _schedule_text(train: dict) -> str:
    """The learning-rate schedule and regularisers of a recorded training recipe, in words."""
    if train.get("schedule", "plateau") == "cosine":
        out = [f"cosine decay after {train.get('warmup_epochs', 0)} warm-up epoch(s)"]
    else:
        out = ["ReduceLROnPlateau"]
    if train.get("label_smoothing"):
        out.append(f"label smoothing {train['label_smoothing']:g}")
    if train.get("mixup"):
        out.append(f"mixup α {train['mixup']:g}")
    if train.get("teacher"):
        out.append(f"distilled from {Path(str(train['teacher'])).name} (weight {train.get('distill_weight', 0.5):g}, "
                   f"T {train.get('distill_temperature', 2.0):g})")
    return ", ".join(out)


def _non_default_flags(cfg) -> str:
    from ..training import TrainConfig

    default = TrainConfig(model=cfg.model)
    out = []
    for key, flag in _FLAGS.items():
        value = getattr(cfg, key)
        if value != getattr(default, key) and not (key.startswith("distill_") and not cfg.teacher):
            out.append(f"{flag} {value}")
    if not cfg.augment:
        out.append("--no-augment")
    out += [f"-o {a}" for a in cfg.option_args]
    return "".join(" " + o for o in out)


QAT_RECIPE_KEYS = ("epochs", "lr", "batch_size", "warmup_batches", "range_percentile", "weights", "teacher",
                   "distill_weight", "distill_temperature")


def ship_run(run, *, name: str | None = None, data_path: str | None = None, dest: Path | None = None,
             threads=(1, 2), min_seconds: float = 2.0) -> dict:
    """Copy a run's int8 artefacts into ``dest`` (default: the package's shipped/) with a model card."""
    from .. import __version__
    from ..quantization.qat import QAT_DIR
    from ..training import TrainConfig

    run_dir = resolve_run(run)
    cfg = TrainConfig.load(run_dir)
    export_dir = run_dir / "export"
    tflite = int8_artefact(export_dir, cfg.model, ".tflite")
    if tflite is None:
        raise RunError(f"{run_dir}: no int8 TFLite export; run `edgefer qat {run_dir}` and `edgefer export {run_dir} --int8`")
    onnx = int8_artefact(export_dir, cfg.model, ".onnx")
    for p in (tflite, onnx):
        if p is not None and p.stat().st_size > MAX_SHIPPED_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size / 2**20:.1f} MB; only models ≤ 5 MB ship in the package "
                              "(publish larger ones' results only)")
    name = name or f"{cfg.model}_int8"
    state = read_state(run_dir)
    report = json.loads((export_dir / "export_report.json").read_text()) if (export_dir / "export_report.json").is_file() else {}
    art = report.get("artefacts", {}).get(tflite.name, {})
    log.info("measuring %s on PrivateTest and timing it (%s)", tflite.name, ", ".join(f"{t} thread(s)" for t in threads))
    measured = measure(run_dir, tflite, onnx, data_path=data_path, threads=threads, min_seconds=min_seconds)
    measured.pop("bench_records")
    meta = json.loads(Path(str(tflite) + ".json").read_text())
    from_qat = meta.get("source") != "ptq"  # post-training quantised: no QAT step to reproduce
    qat_json = run_dir / QAT_DIR / "qat.json"  # a run may hold a QAT model its PTQ artefact did not come from
    qat = json.loads(qat_json.read_text()) if from_qat and qat_json.is_file() else {}
    train_cfg = {k: v for k, v in cfg.to_dict().items() if k != "data"}
    data_arg = '--data fer2013.csv'
    commands = [
        f"edgefer train --model {cfg.model} {data_arg} --epochs {cfg.epochs} --batch-size {cfg.batch_size} "
        f"--lr {cfg.lr:g}{_non_default_flags(cfg)} --out runs/{cfg.model}",
        *([f"edgefer qat runs/{cfg.model} --epochs {qat.get('epochs', 3)} --lr {qat.get('lr', 1e-4):g}"
           + f" --range-percentile {qat.get('range_percentile') or 'minmax'}"
           + (" --per-tensor" if qat.get("weights") == "per-tensor" else "")
           + (f" --teacher {qat['teacher']} --distill-weight {qat['distill_weight']:g}"
              f" --distill-temperature {qat['distill_temperature']:g}" if qat.get("teacher") else "")]
          if from_qat else []),
        f"edgefer export runs/{cfg.model} --int8" + ("" if from_qat else " --from ptq")
        + (" --per-tensor" if not from_qat and meta.get("weights") == "per-tensor" else "")
        + ("" if art.get("status") == "ok" else " --force"),
        f"edgefer zoo ship runs/{cfg.model}",
        f"# or all four in one: edgefer zoo build {name} {data_arg}",
    ]
    card = {
        "name": name, "architecture": cfg.model, "edge_fer_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "classes": list(CLASSES),
        "input": meta.get("input"), "source_run": run_dir.name,
        "recipe": {"train": train_cfg, "qat": ({k: qat.get(k) for k in QAT_RECIPE_KEYS if k in qat}
                                               or {"epochs": 3, "lr": 1e-4}) if from_qat else None,
                   "export": {"precision": "int8", "source": meta.get("source"), "io": meta["input"].get("io_type"),
                              "weights": meta.get("weights", "per-channel")}},
        "training": {"epochs_trained": state.get("epoch"), "best_epoch": state.get("best", {}).get("epoch"),
                     "best_val_accuracy": state.get("best", {}).get("val_accuracy"), "seconds": state.get("seconds") or 0,
                     "finished": state.get("status") == "finished", "machine": state.get("machine") or "this toolkit's CPU"},
        "qat": {k: qat.get(k) for k in ("best_epoch", "qat_val_accuracy", "float_val_accuracy", "seconds") if k in qat},
        "export": {"agreement": (art.get("verification") or {}).get("agreement"), "status": art.get("status"),
                   "split": "validation"},
        "size_bytes": {"tflite": tflite.stat().st_size, **({"onnx": onnx.stat().st_size} if onnx else {})},
        **measured, "commands": commands,
    }
    if card["training"]["machine"] == "this toolkit's CPU" and measured.get("latency_machine"):
        card["training"]["machine"] = measured["latency_machine"]
    dest = Path(dest) if dest else SHIPPED_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for src, suffix in ((tflite, ".tflite"), (onnx, ".onnx")):
        target = dest / f"{name}{suffix}"
        if src is None:
            (dest / f"{name}{suffix}").unlink(missing_ok=True)
            Path(str(target) + ".json").unlink(missing_ok=True)
            continue
        side = json.loads(Path(str(src) + ".json").read_text())
        side["run"] = run_dir.name  # not this machine's absolute path
        side["shipped_as"] = name
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
        write_json(Path(str(target) + ".json"), side)
    write_json(dest / f"{name}.card.json", card)
    with atomic_path(dest / f"{name}.md") as tmp:
        tmp.write_text(_card_markdown(card))
    card["files"] = sorted(str(p) for p in dest.glob(f"{name}.*"))
    return card


def build(name: str, *, data_path: str, out: Path | None = None, dest: Path | None = None, epochs: int | None = None,
          verbose: int = 2) -> dict:
    """Retrain a shipped model from scratch with its recorded recipe: train → qat → export → ship."""
    from ..export import export_run
    from ..quantization import qat_run
    from ..training import TrainConfig, train

    if not data_path:
        raise ConfigError("zoo build needs --data: the recipe was trained on the full FER2013, not the embedded sample")
    card = get_shipped(name).card
    recipe = card["recipe"]
    out = Path(out) if out else Path("runs") / f"zoo-{name}"
    train_cfg = {**recipe["train"], "data": data_path}
    if epochs is not None:
        train_cfg["epochs"] = epochs
    cfg = TrainConfig.from_dict(train_cfg)
    result = train(cfg, out=out, verbose=verbose)
    q = recipe.get("qat") or {}
    source = recipe.get("export", {}).get("source") or "qat"
    if source == "qat":
        qat_run(result.run_dir, epochs=q.get("epochs", 3), lr=q.get("lr", 1e-4), batch_size=q.get("batch_size", 64),
                warmup_batches=q.get("warmup_batches", 50), range_percentile=q.get("range_percentile"),
                per_tensor=q.get("weights") == "per-tensor", teacher=q.get("teacher"),
                distill_weight=q.get("distill_weight"), distill_temperature=q.get("distill_temperature"),
                verbose=verbose)
    export = recipe.get("export", {})
    export_run(result.run_dir, precisions=["int8"], source=source, io=export.get("io", "int8"), force=True,
               per_tensor=export.get("weights") == "per-tensor" if source == "ptq" else None)
    return ship_run(result.run_dir, name=name, data_path=data_path, dest=dest or Path(result.run_dir) / "shipped")
