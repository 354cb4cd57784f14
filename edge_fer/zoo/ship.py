"""Ship a trained, QAT-fine-tuned and exported run as a packaged int8 model with a model card,
and rebuild a shipped model from its recorded recipe.

    edgefer zoo ship ~/edgefer-runs/cnn            # → ~/edgefer-runs/cnn/shipped/cnn_int8.{tflite,onnx,md,card.json}
    edgefer zoo ship runs/cnn --dest edge_fer/zoo/shipped --name cnn_int8 --overwrite   # replace a packaged model
    edgefer zoo build cnn_int8 --data fer2013.csv  # train → qat → export → ship into runs/zoo-cnn_int8/

Nothing already there is replaced without ``overwrite`` and nothing is deleted; an export written
with ``--force`` below the agreement gate ships only with ``force``.

The card's figures are measured here, on PrivateTest (the ``test`` split), once; nothing is chosen
on them (epochs were chosen on PublicTest by training, QAT and the export gate).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from ..errors import ConfigError, DataError, RunError
from ..labels import CLASSES
from ..quantization.config import AGREEMENT_GATE, QATConfig
from ..runs import RunLayout, atomic_path, read_state, resolve_run, write_json
from . import SHIPPED_DIR, get_shipped

log = logging.getLogger("edge_fer")

MAX_SHIPPED_BYTES = 5 * 1024 * 1024
# How far a re-scoring of PrivateTest may move a card's int8 accuracy: another build of a runtime's int8
# kernels may round a few faces the other way (TFLite and ONNX of one model differ by ≤ 1 face of 3,589).
# The embedded sample's figures carry no tolerance: the suite re-scores them exactly.
ACCURACY_TOLERANCE = 0.001


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


def latency_of(records: list[dict]) -> tuple[dict, str | None]:
    """``({format: {threads: p50 ms}}, cpu)`` of a card, from ``edgefer bench`` records (failed ones left out)."""
    latency, cpu = {}, None
    for r in records:
        if r["status"] == "ok":
            latency.setdefault(r["format"], {})[str(r["threads"])] = r["latency"]["p50_ms"]
            cpu = r["machine"].get("cpu", r["machine"]["machine"])
    return latency, cpu


def sample_figures(tflite: Path, onnx: Path | None) -> dict:
    """The int8 artefacts' scores on the embedded sample's PrivateTest faces: figures any install can
    re-check offline, exactly (the suite does, for every shipped model)."""
    import numpy as np

    from ..data import load_fer
    from ..runtime import open_model

    test = load_fer(None)["test"]
    out = {"data": "embedded", "split": "test", "n": len(test)}
    for key, path in (("int8", tflite), ("int8_onnx", onnx)):
        if path is not None:
            pred = open_model(path).predict(test.x).argmax(1)
            cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
            np.add.at(cm, (test.y, pred), 1)
            out[key] = {"correct": int(np.trace(cm)), "accuracy": float(np.trace(cm) / len(test)),
                        "confusion_matrix": cm.tolist()}
    return out


def measure_card(run_dir: Path, tflite: Path, onnx: Path | None, *, data_path: str | None = None, threads=(1, 2),
                 min_seconds: float = 2.0) -> dict:
    """PrivateTest metrics of the float model and the int8 artefacts, agreement, and latency."""
    from ..device_bench.bench import bench_models
    from ..runtime import open_model
    from ..models import load_model
    from ..report.evaluate import predict_keras
    from ..training import TrainConfig

    cfg = TrainConfig.load(run_dir)
    data = cfg.load_data(data_path)
    test = data["test"]
    if len(test) == 0:
        raise ConfigError(f"{data.source}: no test split to report on")
    p_float = predict_keras(load_model(RunLayout(run_dir).require_best_model()), test.x)
    out = {"data": data.source, "n_test": len(test), "accuracy_tolerance": ACCURACY_TOLERANCE,
           "float32": _metrics_row(test.y, p_float)}
    for key, path in (("int8", tflite), ("int8_onnx", onnx)):
        if path is None:
            continue
        p = open_model(path).predict(test.x)
        out[key] = {**_metrics_row(test.y, p), "agreement_with_float": float((p.argmax(1) == p_float.argmax(1)).mean())}
    models = [m for m in (tflite, onnx) if m is not None]
    records = bench_models(models, device="cpu", threads=threads, data=data_path or cfg.data, split="test",
                           min_seconds=min_seconds)
    latency, cpu = latency_of(records)
    return {"test": out, "sample": sample_figures(tflite, onnx), "latency_ms": latency, "latency_machine": cpu,
            "bench_records": records}


def calibration_figures(model: Path, data) -> dict:
    """Temperature fitted on PublicTest (validation) to the int8 model's probabilities, and the expected
    calibration error (15 bins) and NLL on PrivateTest before and after it; ``data`` labels as trained."""
    from ..report.confidence import calibration_report
    from ..report.model_eval import model_probabilities

    val, test = data["validation"], data["test"]
    p_val, _ = model_probabilities(model, val.x, temperature=1.0)
    p_test, _ = model_probabilities(model, test.x, temperature=1.0)
    return {**calibration_report(p_val, val.y, p_test, test.y), "fitted_on": "PublicTest", "reported_on": "PrivateTest"}


# Which labels a model learned, from its training recipe: (what, the rule in one sentence).
LEARNED_LABELS = {
    None: ("FER2013", "One emotion per face, as FER2013 ships it (its `emotion` column)."),
    "hard": ("FERPlus majority", "FERPlus' ten-annotator votes in its authors' majority mode: a class with a single "
             "vote is dropped as an outlier and the label is the class holding more than half of the remaining votes; "
             "faces without one, or whose label is unknown, not a face or contempt, were left out of training."),
    "soft": ("FERPlus vote distribution", "FERPlus' ten-annotator votes in its authors' probability mode: single votes "
             "dropped as outliers, each training face's target is the share of votes of its most-voted classes "
             "(at most three, until they hold 75% of the votes); validation and test score the majority label."),
}
# The evaluations every card reports, in the card's order: key → (title, labels, how its faces are chosen)
EVALUATIONS = {
    "fer2013": ("FER2013 PrivateTest", "FER2013", "every PrivateTest face with its FER2013 label"),
    "ferplus": ("FERPlus PrivateTest", "FERPlus majority", "PrivateTest faces with a FERPlus majority label "
                "(no majority, unknown, not a face and contempt left out)"),
    "ckplus48": ("CK+48", "CK+48's own, mapped", "every CK+48 face but contempt, which has no class here"),
}


def learned_labels(train: dict) -> dict:
    """``{"learned": ..., "rule": ...}``: which labels a training recipe (a card's recipe.train) learned."""
    learned, rule = LEARNED_LABELS[train.get("label_mode", "hard") if train.get("ferplus") else None]
    return {"learned": learned, "rule": rule}


def _evaluation_row(y, probs) -> dict:
    from ..report.model_eval import score

    s = score(y, probs)
    present = s["macro_present"]["classes"]
    return {"correct": int((probs.argmax(axis=1) == y).sum()), "accuracy": s["accuracy"], "macro_f1": s["macro_present"]["f1"],
            "macro_f1_classes": len(present),
            "per_class_recall": {c: (v["recall"] if v["support"] else None) for c, v in s["per_class"].items()}}


def evaluation_figures(tflite: Path, onnx: Path | None, *, fer2013, ferplus=None, ckplus=None) -> dict:
    """The int8 artefacts on FER2013 PrivateTest with FER2013 labels, FERPlus PrivateTest with majority
    labels (``ferplus`` votes) and CK+48 (``ckplus``, contempt dropped): accuracy, macro-F1 over the
    classes present, per-class recall. The faces and scores are ``edgefer evaluate``'s
    (:func:`edge_fer.data.labelled.load_eval_set`, :func:`edge_fer.report.model_eval.score`); an
    evaluation whose file is not given is None. Report-only: nothing is chosen on these faces."""
    from ..data.labelled import load_eval_set
    from ..report.model_eval import model_probabilities

    sets = {"fer2013": (lambda: load_eval_set(fer2013, "test"), fer2013),
            "ferplus": (lambda: load_eval_set(fer2013, "test", ferplus=ferplus), ferplus),
            "ckplus48": (lambda: load_eval_set(ckplus, "all", drop=["contempt"]), ckplus)}
    out = {}
    for key, (load, source) in sets.items():
        if key != "fer2013" and source is None:
            out[key] = None
            continue
        s = load()
        title, labels, faces = EVALUATIONS[key]
        out[key] = {"data": data_description(source, source) if source else {"file": "embedded sample"},
                    "labels": labels, "faces": faces, "n": len(s), "left_out": s.dropped}
        for fmt, path in (("int8", tflite), ("int8_onnx", onnx)):
            if path is not None:
                probs, _ = model_probabilities(path, s.x, temperature=1.0)  # argmax figures: the temperature moves none
                out[key][fmt] = _evaluation_row(s.y, probs)
    return out


def check_evaluation_files(ferplus, ckplus, *, fer2013) -> None:
    """One clear line, before anything is measured, for a FER2013, FERPlus or CK+48 file that is not there."""
    if fer2013 is not None and not Path(str(fer2013)).expanduser().exists():
        raise DataError(f"{fer2013}: no such FER2013 file; pass --data PATH to fer2013.npz or fer2013.csv")
    if ferplus is not None and not Path(str(ferplus)).expanduser().is_file():
        raise DataError(f"{ferplus}: no such FERPlus votes file; pass --ferplus PATH to Microsoft's fer2013new.csv")
    if ckplus is not None and not Path(str(ckplus)).expanduser().exists():
        raise DataError(f"{ckplus}: no such CK+48 file; pass --ckplus PATH to ckplus48.npz (or a labelled .csv or "
                        "image folder)")


def _f(v, spec: str = ".4f") -> str:
    return "—" if v is None else format(v, spec)


# Recipe settings that hold a path: a card names the file, never where it was on the machine that made it.
PATH_SETTINGS = ("data", "ferplus", "teacher", "weights")


def portable(value):
    """A path setting as a card shows it: the file name of a path, anything else (a shipped name such as
    cnn_int8, "imagenet", None) as it is."""
    if isinstance(value, str) and ("/" in value or "\\" in value or value.startswith("~")):
        return Path(value).name
    return value


def data_description(name, source) -> dict:
    """The data a card's figures come from, the same on every machine: the file's name (``name``, as the
    user gave it, else ``source``'s), its size and SHA-256 — which say which file it was wherever it lies."""
    p = Path(str(source)).expanduser()
    out = {"file": Path(str(name or source)).name}
    if p.is_file():
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        out.update(bytes=p.stat().st_size, sha256=h.hexdigest())
    return out


def _data_text(d) -> str:
    if not isinstance(d, dict):  # cards made before data descriptions
        return portable(str(d))
    return d["file"] + (f", {d['bytes']:,} bytes, sha256 {d['sha256'][:16]}…" if d.get("sha256") else "")


def _card_markdown(c: dict) -> str:
    t = c["test"]
    f, q = t["float32"], t["int8"]
    lat = c["latency_ms"]
    rows = [("float32 Keras (best epoch)", f, None), ("int8 TFLite", q, c["size_bytes"]["tflite"])]
    if "int8_onnx" in t:
        rows.append(("int8 ONNX (QDQ)", t["int8_onnx"], c["size_bytes"].get("onnx")))
    labels = c.get("labels") or learned_labels(c["recipe"]["train"])
    lines = [
        f"# {c['name']} — {c['architecture']}, int8",
        "",
        f"Facial-emotion classifier for 48×48 grey faces, 7 classes ({', '.join(CLASSES)}), "
        f"quantised to int8 {'after quantisation-aware fine-tuning' if c['qat'] else 'post-training'}"
        f"{' with one weight scale per kernel (per-tensor)' if c['recipe']['export'].get('weights') == 'per-tensor' else ''}. "
        f"Shipped with edge_fer {c['edge_fer_version']}.",
        "",
        "## Labels learned",
        "",
        f"**{labels['learned']}** labels. {labels['rule']}",
        "",
        "## Data and protocol",
        f"- FER2013 ({_data_text(t['data'])}"
        f"{'' if labels['learned'] == 'FER2013' else ', labels from FERPlus ' + portable(c['recipe']['train']['ferplus'])}): "
        f"trained on Training, epochs and QAT epoch chosen on PublicTest (validation), "
        f"figures below on PrivateTest ({t['n_test']} faces{'' if labels['learned'] == 'FER2013' else ', majority labels'}), "
        "measured once.",
        f"- Training: {c['recipe']['train']['epochs']} epochs planned, {c['training']['epochs_trained']} trained, best epoch "
        f"{c['training']['best_epoch']} (val acc {_f(c['training']['best_val_accuracy'])}), "
        f"{c['training']['seconds'] / 3600:.2f} h of wall time on {c['training']['machine']} (not a speed figure); batch "
        f"{c['recipe']['train']['batch_size']}, Adam {c['recipe']['train']['lr']:g}, augmentation "
        f"{'on' if c['recipe']['train']['augment'] else 'off'}, {_schedule_text(c['recipe']['train'])}."
        + _weights_text(c["recipe"]["train"]),
        (f"- QAT: {c['recipe']['qat']['epochs']} epochs at lr {c['recipe']['qat']['lr']:g}, best epoch "
         f"{c['qat'].get('best_epoch')} (QAT val acc {_f(c['qat'].get('qat_val_accuracy'))})"
         + (f", distilling from {c['recipe']['qat']['teacher']} (weight {c['recipe']['qat']['distill_weight']:g}, "
            f"temperature {c['recipe']['qat']['distill_temperature']:g})" if c["recipe"]["qat"].get("teacher") else "")
         + "." if c["qat"] else "- No QAT: post-training quantisation of the float model."),
        (f"- Export verification on PublicTest: int8 TFLite agreement with its Keras source "
         f"{c['export']['agreement']:.2%} (gate {c['recipe']['export'].get('threshold', AGREEMENT_GATE):.0%}: "
         f"{c['export'].get('status')})."
         if c["export"].get("agreement") is not None else "- Export verification: no export_report.json in the run."),
        "",
        "## PrivateTest" + ("" if labels["learned"] == "FER2013" else ", FERPlus majority labels"),
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
              *([f"Calibration (int8 TFLite): temperature {c['calibration']['temperature']:g}, fitted on PublicTest and "
                 f"applied by `predict`; expected calibration error (15 bins) on PrivateTest "
                 f"{c['calibration']['ece_before']:.4f} without it, {c['calibration']['ece_after']:.4f} with it.", ""]
                if c.get("calibration") else []),
              *_evaluations_markdown(c.get("evaluations") or {}),
              "## Latency (batch 1, p50, `edgefer bench` on the CPU, XNNPACK)", ""]
    for fmt, by_t in lat.items():
        lines.append(f"- {fmt}: " + ", ".join(f"{t} thread(s) {v:.3f} ms" for t, v in by_t.items())
                     + f" on {c['latency_machine']}")
    lines += ["", "## Recipe", "", "Each stage's resolved config, as `edgefer zoo build` replays it:", ""]
    lines += [f"- {stage}: " + ", ".join(f"{k} {json.dumps(v)}" for k, v in cfg.items())
              for stage, cfg in c["recipe"].items() if cfg]
    lines += ["", "## Reproduce", "", "```bash"] + c["commands"] + ["```", "",
              "Known limits: FER2013 labels are noisy (see the data README); the model sees one centred face "
              "crop, so detection and alignment (`edgefer predict`) matter as much as the classifier.", ""]
    return "\n".join(lines)


def _evaluations_markdown(ev: dict) -> list[str]:
    """The card's three evaluations (FER2013, FERPlus, CK+48) as one table; a missing one says how to add it."""
    lines = ["## FER2013, FERPlus and CK+48 (int8, report-only)", "",
             "Measured once on faces never trained or tuned on, as `edgefer evaluate` scores them; macro-F1 is over "
             "the classes the faces have (CK+48 has no neutral face: six).", "",
             "| evaluation | labels | faces | model | accuracy | macro-F1 | "
             + " | ".join(f"recall {c}" for c in CLASSES) + " |", "|---|---|---|---|---|---|" + "---|" * len(CLASSES)]
    missing = []
    for key, (title, labels, _) in EVALUATIONS.items():
        e = ev.get(key)
        if not e:
            missing.append(title)
            continue
        for fmt, label in (("int8", "int8 TFLite"), ("int8_onnx", "int8 ONNX")):
            if fmt in e:
                r = e[fmt]
                recalls = " | ".join("—" if v is None else f"{v:.2f}" for v in r["per_class_recall"].values())
                lines.append(f"| {title} | {e['labels']} | {e['n']:,} | {label} | {r['accuracy']:.4f} | "
                             f"{r['macro_f1']:.4f} | {recalls} |")
    lines.append("")
    for key, e in ev.items():
        if e and e.get("left_out"):
            lines.append(f"- {EVALUATIONS[key][0]} ({_data_text(e['data'])}): left out "
                         + ", ".join(f"{k} {v:,}" for k, v in e["left_out"].items()) + ".")
    if missing:
        lines.append(f"- Not measured: {', '.join(missing)}; add with `edgefer zoo refresh NAME --data fer2013.npz "
                     "--ferplus fer2013new.csv --ckplus ckplus48.npz`.")
    return lines + [""]


# TrainConfig fields → `edgefer train` flags, for the card's command (model options become -o KEY=VALUE)
_FLAGS = {"precision": "--precision", "split_mode": "--split-mode", "label_mode": "--label-mode",
          "label_smoothing": "--label-smoothing", "monitor": "--monitor", "early_stopping_patience": "--patience",
          "schedule": "--schedule", "warmup_epochs": "--warmup-epochs", "mixup": "--mixup", "teacher": "--teacher",
          "distill_weight": "--distill-weight", "distill_temperature": "--distill-temperature", "seed": "--seed",
          "weights": "--weights", "ferplus": "--ferplus", "aug_zoom": "--aug-zoom", "aug_shift": "--aug-shift"}


def _weights_text(train: dict) -> str:
    """Where a recorded training recipe's backbone started, in words ("" for a model trained from scratch)."""
    weights = train.get("weights")
    if not weights:
        return ""
    if weights == "imagenet":
        return " Backbone started from keras' ImageNet weights (downloaded by keras)."
    sha = train.get("weights_sha256")
    return f" Backbone started from the ImageNet weights file {portable(weights)}" + (f" (sha256 {sha})." if sha else ".")


_SCHEDULE_KEYS = ("schedule", "warmup_epochs", "distill_weight", "distill_temperature")


def _schedule_text(train: dict) -> str:
    """The learning-rate schedule and regularisers of a recorded training recipe, in words."""
    from ..training.config import TrainConfig

    default = TrainConfig.__dataclass_fields__  # a recipe recorded before a setting existed had its default
    train = {**{k: f.default for k, f in default.items() if k in _SCHEDULE_KEYS}, **train}
    if train["schedule"] == "cosine":
        out = [f"cosine decay after {train['warmup_epochs']} warm-up epoch(s)"]
    else:
        out = ["ReduceLROnPlateau"]
    if train.get("label_smoothing"):
        out.append(f"label smoothing {train['label_smoothing']:g}")
    if train.get("mixup"):
        out.append(f"mixup α {train['mixup']:g}")
    if train.get("teacher"):
        out.append(f"distilled from {Path(str(train['teacher'])).name} (weight {train['distill_weight']:g}, "
                   f"T {train['distill_temperature']:g})")
    return ", ".join(out)


def _non_default_flags(cfg) -> str:
    from ..training import TrainConfig

    default = TrainConfig(model=cfg.model)
    out = []
    for key, flag in _FLAGS.items():
        value = portable(getattr(cfg, key)) if key in PATH_SETTINGS else getattr(cfg, key)
        if value != getattr(default, key) and not (key.startswith("distill_") and not cfg.teacher):
            out.append(f"{flag} {value}")
    if not cfg.augment:
        out.append("--no-augment")
    out += [f"-o {a}" for a in cfg.option_args]
    return "".join(" " + o for o in out)


# ExportConfig fields a card records beside the artefact's own metadata (precision, source, io, weights)
EXPORT_RECIPE_KEYS = ("calib_size", "calib_data", "calib_method", "threshold", "keep_float")


def _export_recipe(config: dict | None) -> dict:
    """The export settings of an artefact's resolved ExportConfig (export_report.json) that a card
    records; {} for an export made before the config was saved."""
    if not config:
        return {}
    return {k: portable(config[k]) if k == "calib_data" and config[k] else config[k]
            for k in EXPORT_RECIPE_KEYS if k in config}


def _gate_status(artefact: Path, report: dict) -> tuple[str | None, str]:
    """An export's verification status ("ok", "forced" below the gate, None if unrecorded) and its
    agreement with the Keras source, in words."""
    meta = json.loads(Path(str(artefact) + ".json").read_text())
    art = report.get("artefacts", {}).get(artefact.name, {})
    status = meta.get("status") or art.get("status")
    agreement = (meta.get("verification") or art.get("verification") or {}).get("agreement")
    said = "no agreement recorded" if agreement is None else f"agreement {agreement:.2%}"
    return status, f"{said}, gate {report.get('threshold', 0.98):.0%}"


def _targets(dest: Path, name: str, suffixes) -> list[Path]:
    """The files shipping ``name`` into ``dest`` writes, in writing order (the card's figures last)."""
    out = []
    for suffix in suffixes:
        out += [dest / f"{name}{suffix}", dest / f"{name}{suffix}.json"]
    return out + [dest / f"{name}.md", dest / f"{name}.card.json"]


def check_ship(run_dir: Path, tflite: Path, onnx: Path | None, report: dict, *, name: str, dest: Path,
               overwrite: bool, force: bool) -> list[Path]:
    """Refuse, before anything is measured or written, what shipping must not do; returns the files it
    will replace (only with ``overwrite``)."""
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"--name must be a plain file name such as cnn_int8, got {name!r}")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dest {dest}: not a folder; pass a folder to write {name}.* into")
    for p in (tflite, onnx):
        if p is None:
            continue
        status, said = _gate_status(p, report)
        if status != "ok" and not force:
            why = ("was written with --force below the export's agreement gate" if status == "forced"
                   else f"records no passing verification (status {status!r})")
            raise RunError(f"{p}: {why} ({said}); nothing was shipped; pass --force to ship it anyway, or export "
                           f"one that passes (`edgefer qat {run_dir}`, then `edgefer export {run_dir} --int8`)")
    suffixes = [s for s, p in ((".tflite", tflite), (".onnx", onnx)) if p is not None]
    existing = [t for t in _targets(dest, name, suffixes) if t.exists()]
    packaged = dest.resolve() == SHIPPED_DIR.resolve()
    if existing and not overwrite:
        what = "a model shipped with edge_fer" if packaged else "a model"
        raise RunError(f"{dest}: {what} named {name!r} is there already ({', '.join(t.name for t in existing)}); "
                       "nothing was written; pick another --name or --dest, or pass --overwrite to replace it")
    # Nothing is deleted: a format this run lacks must not stay behind as the old model's twin.
    stale = [dest / f"{name}{s}" for s in (".tflite", ".onnx") if s not in suffixes and (dest / f"{name}{s}").exists()]
    if stale:
        raise RunError(f"{stale[0]}: shipping {name!r} without {stale[0].suffix} would leave the model it replaces "
                       f"beside the new one, and nothing is deleted; export that format too (`edgefer export "
                       f"{run_dir} --int8`), or pick another --name or --dest")
    return existing


def shipped_name(cfg) -> str:
    """The name a run ships under by default: ``{model}_int8``, ``{model}_ferplus_int8`` for FERPlus labels."""
    return f"{cfg.model}_ferplus_int8" if cfg.ferplus else f"{cfg.model}_int8"


def ship_run(run, *, name: str | None = None, data_path: str | None = None, dest: Path | None = None,
             overwrite: bool = False, force: bool = False, threads=(1, 2), min_seconds: float = 2.0,
             ferplus: str | None = None, ckplus: str | None = None) -> dict:
    """Copy a run's verified int8 artefacts into ``dest`` (default: RUN/shipped) with a model card.

    The card also scores the int8 artefacts on FER2013 PrivateTest (FER2013 labels), FERPlus
    PrivateTest (majority labels; votes from ``ferplus``, else the run's own) and CK+48 (``ckplus``,
    contempt dropped); one whose file is not given is left out and the card says so.
    Refuses to replace a model already in ``dest`` unless ``overwrite``, to ship an export written
    below the agreement gate (``edgefer export --force``) unless ``force``, and never deletes a file.
    The returned card has ``files`` (what was written) and ``replaced`` (which of them were there).
    """
    from ..training import TrainConfig

    run_dir = resolve_run(run)
    layout = RunLayout(run_dir)
    cfg = TrainConfig.load(run_dir)
    tflite, onnx = _shippable_artefacts(run_dir, cfg)
    name = name or shipped_name(cfg)
    dest = Path(dest).expanduser() if dest else layout.shipped_dir
    report = layout.export_report()
    replaced = check_ship(run_dir, tflite, onnx, report, name=name, dest=dest, overwrite=overwrite, force=force)
    ferplus = ferplus or cfg.ferplus
    check_evaluation_files(ferplus, ckplus, fer2013=data_path or cfg.data)
    meta = json.loads(Path(str(tflite) + ".json").read_text())
    qat = _qat_record(layout, tflite, meta)
    log.info("measuring %s on PrivateTest and timing it (%s)", tflite.name, ", ".join(f"{t} thread(s)" for t in threads))
    measured = measure_card(run_dir, tflite, onnx, data_path=data_path, threads=threads, min_seconds=min_seconds)
    measured.pop("bench_records")
    measured["calibration"] = calibration_figures(tflite, cfg.load_data(data_path))
    measured["test"]["data"] = data_description(data_path or cfg.data, measured["test"]["data"])
    log.info("scoring %s on FER2013, FERPlus and CK+48", tflite.name)
    measured["evaluations"] = evaluation_figures(tflite, onnx, fer2013=data_path or cfg.data, ferplus=ferplus,
                                                 ckplus=ckplus)
    card = _card(layout, cfg, name, tflite, onnx, meta, report.get("artefacts", {}).get(tflite.name, {}), qat,
                 measured)
    replaced = [p for p in replaced if p.exists()]  # as they are now, after measuring
    card["files"] = [str(p) for p in _write_shipped(card, run_dir, tflite, onnx, dest)]
    card["replaced"] = [str(p) for p in replaced]
    card["dest"] = str(dest)
    return card


def _shippable_artefacts(run_dir: Path, cfg) -> tuple[Path, Path | None]:
    """The run's int8 TFLite export (required) and ONNX export (if any), each within the size limit."""
    export_dir = RunLayout(run_dir).export_dir
    tflite = int8_artefact(export_dir, cfg.model, ".tflite")
    if tflite is None:
        raise RunError(f"{run_dir}: no int8 TFLite export; run `edgefer qat {run_dir}` and `edgefer export {run_dir} --int8`")
    onnx = int8_artefact(export_dir, cfg.model, ".onnx")
    for p in (tflite, onnx):
        if p is not None and p.stat().st_size > MAX_SHIPPED_BYTES:
            raise ConfigError(f"{p}: {p.stat().st_size / 2**20:.1f} MB; only models ≤ 5 MB ship in the package "
                              "(publish larger ones' results only)")
    return tflite, onnx


def _qat_record(layout: RunLayout, tflite: Path, meta: dict) -> dict:
    """qat.json of the QAT the artefact came from, teacher path made portable; {} for a PTQ artefact."""
    if meta.get("source") == "ptq":  # post-training quantised: no QAT step to reproduce
        return {}
    run_dir, qat_json = layout.root, layout.qat_record  # a run may hold a QAT model its PTQ artefact did not come from
    if not qat_json.is_file():
        raise RunError(f"{qat_json}: missing (a QAT run that did not finish, or removed), so the card cannot "
                       f"record how {tflite.name} was fine-tuned; run `edgefer qat {run_dir}` and `edgefer export "
                       f"{run_dir} --int8` again, then ship")
    return {k: portable(v) if k == "teacher" else v for k, v in layout.qat().items()}


def _commands(cfg, qc: QATConfig | None, meta: dict, gate_status: str | None, name: str) -> list[str]:
    """The four commands that rebuild the artefact, as a card prints them."""
    data_arg = '--data fer2013.csv'
    forced = "" if gate_status == "ok" else " --force"
    return [
        f"edgefer train --model {cfg.model} {data_arg} --epochs {cfg.epochs} --batch-size {cfg.batch_size} "
        f"--lr {cfg.lr:g}{_non_default_flags(cfg)} --out runs/{cfg.model}",
        *([f"edgefer qat runs/{cfg.model} --epochs {qc.epochs} --lr {qc.lr:g}"
           + f" --range-percentile {qc.range_percentile or 'minmax'}"
           + (" --per-tensor" if qc.per_tensor else "")
           + (f" --teacher {qc.teacher} --distill-weight {qc.distill_weight:g}"
              f" --distill-temperature {qc.distill_temperature:g}" if qc.teacher else "")]
          if qc else []),
        f"edgefer export runs/{cfg.model} --int8" + ("" if qc else " --from ptq")
        + (" --per-tensor" if not qc and meta.get("weights") == "per-tensor" else "") + forced,
        f"edgefer zoo ship runs/{cfg.model}" + forced,
        f"# or all four in one: edgefer zoo build {name} {data_arg}"
        + (f" --ferplus {portable(cfg.ferplus)}" if cfg.ferplus else ""),
    ]


def _card(layout: RunLayout, cfg, name: str, tflite: Path, onnx: Path | None, meta: dict, art: dict, qat: dict,
          measured: dict) -> dict:
    """The model card: each stage's resolved config (the recipe), how the run went, and the figures."""
    from .. import __version__

    state = read_state(layout.root)
    qc = QATConfig.from_record(qat) if qat else None
    gate_status = meta.get("status") or art.get("status")
    train_cfg = {k: portable(v) if k in PATH_SETTINGS else v for k, v in cfg.to_dict().items() if k != "data"}
    card = {
        "name": name, "architecture": cfg.model, "edge_fer_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "classes": list(CLASSES),
        "input": meta.get("input"), "source_run": layout.root.name, "labels": learned_labels(train_cfg),
        "recipe": {"train": train_cfg, "qat": qc.recipe() if qc else None,
                   "export": {"precision": "int8", "source": meta.get("source"), "io": meta["input"].get("io_type"),
                              "weights": meta.get("weights", "per-channel"), **_export_recipe(art.get("config"))}},
        "training": {"epochs_trained": state.get("epoch"), "best_epoch": state.get("best", {}).get("epoch"),
                     "best_val_accuracy": state.get("best", {}).get("val_accuracy"), "seconds": state.get("seconds") or 0,
                     "finished": state.get("status") == "finished", "machine": state.get("machine") or "this toolkit's CPU",
                     # strategy, replicas, global batch, learning rate used, precision, XLA
                     "distribute": layout.train_config().get("distribute")},
        "qat": {k: qat.get(k) for k in ("best_epoch", "qat_val_accuracy", "float_val_accuracy", "seconds") if k in qat},
        "export": {"agreement": (art.get("verification") or meta.get("verification") or {}).get("agreement"),
                   "status": gate_status,
                   "split": "validation"},
        "size_bytes": {"tflite": tflite.stat().st_size, **({"onnx": onnx.stat().st_size} if onnx else {})},
        **measured, "commands": _commands(cfg, qc, meta, gate_status, name),
    }
    if card["training"]["machine"] == "this toolkit's CPU" and measured.get("latency_machine"):
        card["training"]["machine"] = measured["latency_machine"]
    return card


def _write_shipped(card: dict, run_dir: Path, tflite: Path, onnx: Path | None, dest: Path) -> list[Path]:
    """The artefacts with their sidecars, the card's Markdown and its JSON (last: it is what lists the model)."""
    name = card["name"]
    dest.mkdir(parents=True, exist_ok=True)
    # The card's figures are what lists a shipped model: while its files are replaced, it is not listed.
    (dest / f"{name}.card.json").unlink(missing_ok=True)
    written = []
    for src, suffix in ((tflite, ".tflite"), (onnx, ".onnx")):
        if src is None:
            continue
        target = dest / f"{name}{suffix}"
        side = json.loads(Path(str(src) + ".json").read_text())
        side["run"] = run_dir.name  # not this machine's absolute path
        if isinstance(side.get("train_config"), dict):
            side["train_config"] = {k: portable(v) if k in PATH_SETTINGS else v for k, v in side["train_config"].items()}
        side["shipped_as"] = name
        # the Recognizer divides log-probabilities by it (predict, evaluate); see docs/results.md
        side["calibration"] = {k: card["calibration"][k] for k in ("temperature", "fitted_on", "ece_before", "ece_after")}
        with atomic_path(target) as tmp:  # the file carries the sidecar's metadata, no machine paths
            tmp.write_bytes(embed_metadata(src.read_bytes(), suffix, side))
        card["size_bytes"][suffix[1:]] = target.stat().st_size  # the file as shipped, metadata included
        write_json(Path(str(target) + ".json"), side)
        written += [target, Path(str(target) + ".json")]
    with atomic_path(dest / f"{name}.md") as tmp:
        tmp.write_text(_card_markdown(card))
    write_json(dest / f"{name}.card.json", card)
    return written + [dest / f"{name}.md", dest / f"{name}.card.json"]


def embed_metadata(model_bytes: bytes, suffix: str, meta: dict) -> bytes:
    """``model_bytes`` (a .tflite or .onnx file) with ``meta`` as its embedded edge_fer metadata."""
    from ..export.metadata import embed_onnx, embed_tflite

    return (embed_tflite if suffix == ".tflite" else embed_onnx)(model_bytes, meta)


def refresh_card(name: str, *, data_path: str, ferplus: str, ckplus: str, dest: Path | None = None) -> dict:
    """Add (or measure again) the labels learned and the FER2013, FERPlus and CK+48 figures of the card of
    model ``name`` shipped in ``dest`` (default: the package's), from its shipped files; every other
    figure of the card stays as it is. Rewrites NAME.card.json and NAME.md, nothing else."""
    d, found = _shipped_in(dest, [name])
    check_evaluation_files(ferplus, ckplus, fer2013=data_path)
    m = found[name]
    card = {**m.card, "labels": learned_labels(m.card["recipe"]["train"]),
            "evaluations": evaluation_figures(m.files[".tflite"], m.files.get(".onnx"), fer2013=data_path,
                                              ferplus=ferplus, ckplus=ckplus)}
    _rewrite_card(d, name, card)
    return card


def _shipped_in(dest: Path | None, names) -> tuple[Path, dict]:
    """The shipped folder (``dest`` or the package's) and its models by name; one line for a name not there."""
    from . import shipped_models

    d = Path(dest).expanduser() if dest else SHIPPED_DIR
    found = {m.name: m for m in shipped_models(d)}
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"no shipped model {missing[0]!r} in {d}; shipped there: {', '.join(found) or 'none'}")
    return d, found


def _rewrite_card(d: Path, name: str, card: dict) -> None:
    """Write a shipped model's card, NAME.md rendered from NAME.card.json's content."""
    with atomic_path(d / f"{name}.md") as tmp:
        tmp.write_text(_card_markdown(card))
    write_json(d / f"{name}.card.json", card)


def retime_cards(names, *, dest: Path | None = None, threads=(1, 2), min_seconds: float = 2.0) -> dict:
    """Time the shipped models ``names`` again, one after another on this machine, and write each card's
    latency and machine: latencies timed on different machines do not compare, and the default model's
    edge budget compares them. Rewrites NAME.card.json and NAME.md only. Returns {name: latency_ms}."""
    from ..device_bench.bench import bench_models

    d, found = _shipped_in(dest, names)
    out = {}
    for name in names:
        m = found[name]
        latency, cpu = latency_of(bench_models(list(m.files.values()), device="cpu", threads=threads,
                                               min_seconds=min_seconds))
        card = {**m.card, "latency_ms": latency,
                "latency_machine": f"{cpu}, timed with {', '.join(n for n in names if n != name)} "
                                   f"({time.strftime('%Y-%m-%d')})" if len(names) > 1 else cpu}
        _rewrite_card(d, name, card)
        out[name] = latency
    return out


def build(name: str, *, data_path: str, out: Path | None = None, dest: Path | None = None, epochs: int | None = None,
          verbose: int = 2, strategy: str = "auto", ferplus: str | None = None) -> dict:
    """Retrain a shipped model from scratch with its recorded recipe: train → qat → export → ship.

    ``strategy`` (auto, none, mirrored) is how this machine trains; the recipe says what is trained."""
    from ..export import ExportConfig, export_run
    from ..quantization import qat_run
    from ..training import TrainConfig, train

    if not data_path:
        raise ConfigError("zoo build needs --data: the recipe was trained on the full FER2013, not the embedded sample")
    card = get_shipped(name).card
    recipe = card["recipe"]
    out = Path(out) if out else Path("runs") / f"zoo-{name}"
    train_cfg = {**recipe["train"], "data": data_path, "strategy": strategy, "devices": ()}
    if recipe["train"].get("ferplus"):  # the card names the votes file; where it lies is this machine's
        if not ferplus:
            raise ConfigError(f"{name} learned FERPlus labels ({recipe['train']['ferplus']}): pass --ferplus PATH to "
                              "Microsoft's fer2013new.csv to rebuild it")
        check_evaluation_files(ferplus, None, fer2013=data_path)
        train_cfg["ferplus"] = str(Path(ferplus).expanduser().resolve())
    if epochs is not None:
        train_cfg["epochs"] = epochs
    cfg = TrainConfig.from_dict(train_cfg)
    result = train(cfg, out=out, verbose=verbose)
    export = recipe.get("export", {})
    source = export.get("source") or "qat"
    if source == "qat":  # under the strategy training resolved (none or mirrored, on the same devices)
        trained = RunLayout(result.run_dir).train_config().get("distribute", {})
        qat_run(result.run_dir, QATConfig.from_record(recipe.get("qat")).replay(), verbose=verbose,
                strategy=trained.get("strategy", "none"), devices=tuple(trained.get("devices") or ()))
    # The recipe's own settings (a card from before they were recorded: the defaults), int8 only, forced.
    replayed = {k: export[k] for k in EXPORT_RECIPE_KEYS if k in export and k != "calib_data"}
    export_run(result.run_dir, ExportConfig(precisions=("int8",), source=source, io=export.get("io") or "int8",
                                            force=True, **replayed,
                                            per_tensor=export.get("weights") == "per-tensor" if source == "ptq" else None))
    # The recipe exports with --force, so its artefact ships whatever the gate said (the card records it);
    # OUT/shipped is this build's own folder, which running the same build again refreshes.
    return ship_run(result.run_dir, name=name, data_path=data_path, dest=dest or RunLayout(result.run_dir).shipped_dir,
                    overwrite=dest is None, force=True)
