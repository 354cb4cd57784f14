"""Classification metrics from labels and probabilities (scikit-learn), as JSON-ready dicts.

Shared by the Keras evaluation report, the export verification and the device bench, so
every number in edge_fer is computed the same way.
"""

from __future__ import annotations

import numpy as np

from ..labels import CLASSES


def classification_metrics(y_true: np.ndarray, probs: np.ndarray | None = None, *,
                           y_pred: np.ndarray | None = None, classes=CLASSES) -> dict:
    """Accuracy, macro/weighted P/R/F1, per-class P/R/F1/support, confusion matrix, one-vs-rest ROC-AUC."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score

    labels = list(range(len(classes)))
    if y_pred is None:
        y_pred = probs.argmax(axis=1)
    out: dict = {"n": int(len(y_true)), "accuracy": float((y_pred == y_true).mean())}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out[avg] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 ± 1e-7
        out["loss"] = float(log_loss(y_true, probs, labels=labels))
        aucs = {}
        for i, c in enumerate(classes):
            positives = y_true == i
            aucs[c] = float(roc_auc_score(positives, probs[:, i])) if 0 < positives.sum() < len(y_true) else None
        out["roc_auc"] = aucs
        present = [v for v in aucs.values() if v is not None]
        out["roc_auc_macro"] = float(np.mean(present)) if present else None
    return out


def format_metrics(m: dict) -> str:
    """A short readable summary of :func:`classification_metrics`."""
    lines = [
        f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro']['f1']:.4f}   weighted-F1 {m['weighted']['f1']:.4f}"
        + (f"   ROC-AUC {m['roc_auc_macro']:.4f}" if m.get("roc_auc_macro") is not None else "")
        + f"   (n={m['n']})",
        f"{'class':<10}{'precision':>10}{'recall':>8}{'f1':>8}{'support':>9}",
    ]
    for c, v in m["per_class"].items():
        lines.append(f"{c:<10}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['f1']:>8.3f}{v['support']:>9d}")
    return "\n".join(lines)
