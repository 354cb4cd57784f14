"""``edgefer evaluate MODEL``: an exported or shipped model scored on FER2013, FERPlus or another dataset.

    from edge_fer.report.model_eval import evaluate_model
    r = evaluate_model("ferlite_int8", data="ckplus48.npz", drop=["contempt"])        # CK+48, cross-dataset
    r = evaluate_model("cnn_int8", data="fer2013.npz", ferplus="fer2013new.csv")     # FERPlus PrivateTest
    r = evaluate_model("cnn_int8", data="fer2013.npz", fit_temperature=True)         # + temperature on PublicTest

The report (JSON-ready) holds accuracy, macro-F1, per-class precision/recall/F1, the confusion
matrix, NLL and the expected calibration error (15 bins); with FERPlus labels also the FER2013-label
accuracy of the same faces; with ``fit_temperature`` a temperature fitted on the validation split
(PublicTest, with the same labels) and ECE/NLL before and after it on the evaluated split. Faces go
through :meth:`edge_fer.predict.Recognizer.classify`, the same path (and temperature) as ``predict``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..labels import CLASSES
from .confidence import calibration_report, expected_calibration_error
from .metrics import classification_metrics

log = logging.getLogger(__name__)


def _ordered(probs: np.ndarray, classes: list[str], model: str) -> np.ndarray:
    """Columns in :data:`CLASSES` order (a model may list its classes in another order)."""
    if list(classes) == list(CLASSES):
        return probs
    missing = [c for c in CLASSES if c not in classes]
    if missing:
        raise ConfigError(f"{model}: its classes ({', '.join(classes)}) lack {', '.join(missing)}; "
                          "it cannot be scored on edge_fer's seven classes")
    return probs[:, [list(classes).index(c) for c in CLASSES]]


def model_probabilities(model, x: np.ndarray, *, temperature: float | None = None, threads: int = 1):
    """``(probs, recognizer)``: probabilities (N, 7) in CLASSES order for faces ``x``, and the
    Recognizer that produced them; ``temperature`` None = the model's own."""
    from ..predict.recognizer import Recognizer

    if not is_model_ref(model):
        return _run_probabilities(model, x)
    rec = Recognizer(model, detector=None, threads=threads, temperature=temperature)
    probs = np.concatenate([rec.classify(x[i:i + 256]) for i in range(0, len(x), 256)]) if len(x) else \
        np.zeros((0, len(rec.classes)), np.float32)
    return _ordered(probs, rec.classes, rec.model_name), rec


def _run_probabilities(run, x: np.ndarray):
    """A training run's best float checkpoint (runs carry no temperature): ``(probs, a description)``."""
    from types import SimpleNamespace

    from ..errors import RunError
    from ..models import load_model
    from ..runs import resolve_run
    from .evaluate import predict_keras

    run_dir = resolve_run(run)
    best = run_dir / "best.keras"
    if not best.is_file():
        raise RunError(f"{run_dir}: no best.keras yet (no epoch has finished); train the run first")
    probs = predict_keras(load_model(best), x) if len(x) else np.zeros((0, len(CLASSES)), np.float32)
    return probs, SimpleNamespace(model_name=run_dir.name, model_path=best, model=None, temperature=None)


def score(y: np.ndarray, probs: np.ndarray) -> dict:
    """classification_metrics + ECE, the figures every evaluation reports; ``macro_present``
    averages over the classes the faces have (CK+48 has no neutral face: its macro-F1 is over six)."""
    m = classification_metrics(y, probs)
    present = [c for c, v in m["per_class"].items() if v["support"] > 0]
    m["macro_present"] = {k: float(np.mean([m["per_class"][c][k] for c in present])) for k in ("precision", "recall", "f1")}
    m["macro_present"]["classes"] = present
    return {**m, "ece": expected_calibration_error(probs, y)}


def evaluate_model(model, *, data=None, split: str = "test", class_map=None, drop=(), ferplus=None,
                   fit_temperature: bool = False, threads: int = 1) -> dict:
    """Score a .tflite/.onnx, a shipped name or a training run (its best float checkpoint) on ``split``
    of ``data``; see the module docstring."""
    from ..data.labelled import load_eval_set

    s = load_eval_set(data, split, class_map=class_map, drop=drop, ferplus=ferplus)
    probs, rec = model_probabilities(model, s.x, threads=threads)
    report = {
        "model": rec.model_name, "model_path": str(rec.model_path), "runtime": getattr(rec.model, "label", None) or getattr(rec.model, "runtime", None),
        "data": s.describe(), "data_source": s.source, "split": s.split,
        "labels": "FERPlus majority" if ferplus else ("FER2013" if s.split != "all" else "the dataset's own, mapped"),
        "left_out": s.dropped, "classes": list(CLASSES), "temperature": rec.temperature,
        **score(s.y, probs),
    }
    if "fer2013_y" in s.extra:
        fer = classification_metrics(s.extra["fer2013_y"], y_pred=probs.argmax(axis=1))
        report["fer2013_labels"] = {"accuracy": fer["accuracy"], "macro_f1": fer["macro"]["f1"],
                                    "agreement_with_ferplus": float((s.extra["fer2013_y"] == s.y).mean())}
    if fit_temperature:
        if s.split != "test":
            raise ConfigError(f"--fit-temperature fits on the validation split (PublicTest) and reports on the "
                              f"test split; this evaluation is on {s.describe()}; evaluate FER2013 with --split test")
        val = load_eval_set(data, "validation", ferplus=ferplus)
        raw_val, _ = model_probabilities(model, val.x, temperature=1.0, threads=threads)
        raw_test, _ = model_probabilities(model, s.x, temperature=1.0, threads=threads)
        report["calibration"] = {**calibration_report(raw_val, val.y, raw_test, s.y),
                                 "validation": val.describe(), "test": s.describe()}
    return report


def format_model_report(r: dict) -> str:
    """Readable summary of :func:`evaluate_model`'s report."""
    from .metrics import format_metrics

    lines = [f"{r['model']} on {r['data']} ({r['labels']} labels)"]
    if r.get("left_out"):
        lines.append("left out: " + ", ".join(f"{k} {v}" for k, v in r["left_out"].items()))
    lines.append(format_metrics(r))
    if len(r["macro_present"]["classes"]) < len(CLASSES):
        lines.append(f"macro-F1 over the {len(r['macro_present']['classes'])} classes present: "
                     f"{r['macro_present']['f1']:.4f}")
    lines.append(f"ECE (15 bins) {r['ece']:.4f}   NLL {r['loss']:.4f}"
                 + (f"   temperature {r['temperature']:g}" if r.get("temperature") else ""))
    if r.get("fer2013_labels"):
        f = r["fer2013_labels"]
        lines.append(f"same faces, FER2013 labels: accuracy {f['accuracy']:.4f}, macro-F1 {f['macro_f1']:.4f} "
                     f"(labels agree on {f['agreement_with_ferplus']:.1%})")
    c = r.get("calibration")
    if c:
        lines.append(f"temperature {c['temperature']:g} fitted on {c['validation']} (NLL {c['validation_nll_before']:.4f}"
                     f" → {c['validation_nll_after']:.4f}); on {c['test']}: ECE {c['ece_before']:.4f} → "
                     f"{c['ece_after']:.4f}, NLL {c['nll_before']:.4f} → {c['nll_after']:.4f}")
    return "\n".join(lines)


def is_model_ref(ref) -> bool:
    """Whether ``ref`` names a model file or a shipped model rather than a training run."""
    if ref is None:
        return False
    p = Path(str(ref)).expanduser()
    if p.suffix in (".tflite", ".onnx") and p.is_file():
        return True
    if p.exists():
        return False
    from ..zoo import shipped_models

    return any(str(ref) in (m.name, *(m.name + s for s in m.files)) for m in shipped_models())
