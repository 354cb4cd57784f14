"""Classification metrics from labels and probabilities, as JSON-ready dicts.

Shared by the evaluation report (``edgefer evaluate``), the device bench and the model cards, so
their figures are computed the same way; export verification needs only accuracy and top-1
agreement and computes them itself, and training's Keras metrics are ``models/keras_metrics.py``.
Plain NumPy (the device install has no scikit-learn); each formula is scikit-learn's
(``precision_recall_fscore_support`` with ``zero_division=0``, ``log_loss``, one-vs-rest
``roc_auc_score``), and the tests hold the two equal.
"""

from __future__ import annotations

import numpy as np

from ..labels import CLASSES


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def roc_auc(positives: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted half (= the trapezoid area)."""
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # average rank (1-based) over each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos = int(positives.sum())
    n_neg = len(scores) - n_pos
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(positives: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of one class against the rest: a point per distinct score
    taken as the threshold, highest first, after (0, 0); scikit-learn's ``roc_curve`` with
    ``drop_intermediate=False``. Its trapezoid area is ``roc_auc``."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, hits = scores[order], np.asarray(positives, dtype=bool)[order]
    last = np.r_[np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]), len(hits) - 1]  # end of each score's run
    tps = np.cumsum(hits)[last]
    fps = last + 1 - tps
    return np.r_[0.0, fps / max(fps[-1], 1)], np.r_[0.0, tps / max(tps[-1], 1)]


def classification_metrics(y_true: np.ndarray, probs: np.ndarray | None = None, *,
                           y_pred: np.ndarray | None = None, classes=CLASSES) -> dict:
    """Accuracy, macro/weighted P/R/F1, per-class P/R/F1/support, confusion matrix, one-vs-rest ROC-AUC."""
    k = len(classes)
    y_true = np.asarray(y_true).astype(np.int64)
    if y_pred is None:
        y_pred = np.asarray(probs).argmax(axis=1)
    y_pred = np.asarray(y_pred).astype(np.int64)
    out: dict = {"n": int(len(y_true)), "accuracy": float((y_pred == y_true).mean())}
    cm = np.zeros((k, k), dtype=np.int64)
    inside = (y_true >= 0) & (y_true < k) & (y_pred >= 0) & (y_pred < k)
    np.add.at(cm, (y_true[inside], y_pred[inside]), 1)
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    p, r = _safe_div(tp, predicted), _safe_div(tp, support)
    f = _safe_div(2 * tp, support + predicted)
    out["macro"] = {"precision": float(p.mean()), "recall": float(r.mean()), "f1": float(f.mean())}
    w = _safe_div(support, support.sum()) if support.sum() else np.zeros(k)
    out["weighted"] = {"precision": float(p @ w), "recall": float(r @ w), "f1": float(f @ w)}
    out["per_class"] = {
        c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = cm.tolist()
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        probs = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax sums to 1 ± 1e-7
        eps = np.finfo(probs.dtype).eps
        clipped = np.clip(probs[np.arange(len(y_true)), y_true], eps, 1 - eps)
        out["loss"] = float(-np.log(clipped).mean())
        aucs = {}
        for i, c in enumerate(classes):
            positives = y_true == i
            aucs[c] = roc_auc(positives, probs[:, i]) if 0 < positives.sum() < len(y_true) else None
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
