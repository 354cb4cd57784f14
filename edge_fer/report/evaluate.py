"""``edgefer evaluate`` and ``edgefer compare``: the study's evaluation report for runs.

    from edge_fer.report import evaluate_run
    report = evaluate_run("runs/cnn", split="test")   # writes runs/cnn/eval/test/*

Outputs per run and split: ``metrics.json``, ``confusion_matrix.png``, ``roc.png``; per run:
``training_curves.png``. ``compare_runs`` puts several runs side by side (Markdown + bars).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..data.pipeline import as_model_input
from ..labels import CLASSES
from ..runs import RunLayout, atomic_path, read_state, resolve_run, write_json
from .metrics import classification_metrics
from .plots import plot_bars, plot_confusion, plot_history, plot_roc

log = logging.getLogger(__name__)


def predict_keras(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return model.predict(as_model_input(x, model.input_shape[-1]), batch_size=batch_size, verbose=0)


def evaluate_run(run: str | Path | None, *, split: str = "test", data_path: str | None = None, data=None) -> dict:
    """Evaluate a run's best checkpoint on ``split``; writes metrics.json and the plots."""
    from ..models import load_model
    from ..training import TrainConfig

    run_dir = resolve_run(run)
    cfg = TrainConfig.load(run_dir)
    model = load_model(RunLayout(run_dir).require_best_model())
    data = data or cfg.load_data(data_path)
    s = data[split]
    probs = predict_keras(model, s.x)
    metrics = classification_metrics(s.y, probs)
    state = read_state(run_dir)
    report = {
        "run": str(run_dir),
        "model": cfg.model,
        "split": split,
        "data": data.source,
        "best_epoch": state.get("best", {}).get("epoch"),
        "epochs_trained": state.get("epoch"),
        "train_seconds": state.get("seconds"),
        "classes": list(CLASSES),
        **metrics,
    }
    out = RunLayout(run_dir).eval_dir(split)
    write_json(out / "metrics.json", report)
    title = f"{cfg.model} · {split} · acc {metrics['accuracy']:.3f}"
    plot_confusion(metrics["confusion_matrix"], CLASSES, out / "confusion_matrix.png", title)
    plot_roc(s.y, probs, CLASSES, out / "roc.png", title)
    if state.get("history"):
        plot_history(state["history"], run_dir / "training_curves.png", f"{cfg.model} training curves")
    report["outputs"] = sorted(str(p) for p in [*out.glob("*"), run_dir / "training_curves.png"] if p.exists())
    return report


def compare_runs(runs: list[str | Path], *, split: str = "test", out: Path | None = None) -> dict:
    """Side-by-side table of evaluated runs (evaluating any that lack ``split`` metrics)."""
    rows = []
    for r in runs:
        run_dir = resolve_run(r)
        p = RunLayout(run_dir).eval_dir(split) / "metrics.json"
        m = json.loads(p.read_text()) if p.is_file() else evaluate_run(run_dir, split=split)
        model_info = RunLayout(run_dir).model_info
        info = json.loads(model_info.read_text()) if model_info.is_file() else {}
        rows.append({
            "run": run_dir.name, "model": m["model"], "accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"],
            "macro_precision": m["macro"]["precision"], "macro_recall": m["macro"]["recall"],
            "roc_auc": m.get("roc_auc_macro"), "loss": m.get("loss"), "epochs": m.get("epochs_trained"),
            "params": info.get("params"), "macs": info.get("macs"), "data": m.get("data") or "?", "split": split,
            "n": int(np.sum(m["confusion_matrix"])) if m.get("confusion_matrix") is not None else None,
        })
    out = Path(out) if out else Path("comparison")
    table = comparison_markdown(rows, split)
    with atomic_path(out / "comparison.md") as tmp:
        tmp.write_text(table)
    write_json(out / "comparison.json", rows)
    plot_bars([r["run"] for r in rows],
              {"accuracy": [r["accuracy"] for r in rows], "macro-F1": [r["macro_f1"] for r in rows],
               "ROC-AUC": [r["roc_auc"] or 0 for r in rows]},
              out / "comparison.png", title=f"architectures on {split}")
    return {"rows": rows, "markdown": table, "mixed_data": mixed_run_data(rows),
            "outputs": [str(out / n) for n in ("comparison.md", "comparison.json", "comparison.png")]}


def _data_label(r: dict) -> str:
    return f"{r.get('data') or '?'} [{r.get('split')}, n={r.get('n') if r.get('n') is not None else '?'}]"


def mixed_run_data(rows: list[dict]) -> list[str]:
    """The distinct data the runs were evaluated on, when there is more than one."""
    datas = sorted({_data_label(r) for r in rows})
    return datas if len(datas) > 1 else []


def comparison_markdown(rows: list[dict], split: str) -> str:
    head = (f"| run | model | {split} accuracy | macro-F1 | macro precision | macro recall | ROC-AUC | epochs | params "
            "| MACs | data |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['model']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['macro_precision']:.4f} | "
            f"{r['macro_recall']:.4f} | {(r['roc_auc'] or 0):.4f} | {r['epochs'] or '-'} | "
            f"{(r['params'] or 0) / 1e6:.2f} M | {(r['macs'] or 0) / 1e6:.1f} M | {_data_label(r).replace('|', '/')} |"
        )
    datas = mixed_run_data(rows)
    note = (f"\n**Mixed data: these runs were evaluated on {len(datas)} different data sets ({'; '.join(datas)}); "
            "compare their figures only between rows with the same data.**\n") if datas else ""
    return "\n".join(lines) + "\n" + note
