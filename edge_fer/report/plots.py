"""PNG plots rendered from edge_fer's JSON results (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runs import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    _plt().close(fig)
    return Path(path)


def plot_confusion(cm, classes, path: Path, title: str = "") -> Path:
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title or "confusion matrix (rows normalised)")
    return _save(fig, path)


def plot_roc(y_true, probs, classes, path: Path, title: str = "") -> Path:
    from sklearn.metrics import auc, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for i, c in enumerate(classes):
        pos = y_true == i
        if 0 < pos.sum() < len(y_true):
            fpr, tpr, _ = roc_curve(pos, probs[:, i])
            ax.plot(fpr, tpr, label=f"{c} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "ROC, one class vs rest")
    return _save(fig, path)


def plot_history(history: list[dict], path: Path, title: str = "") -> Path:
    plt = _plt()
    keys = [k for k in ("accuracy", "loss", "precision", "recall", "f1", "auc") if any(k in h for h in history)]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    epochs = [h["epoch"] for h in history]
    for ax, k in zip(axes.flat, keys):
        ax.plot(epochs, [h.get(k) for h in history], label="train")
        ax.plot(epochs, [h.get(f"val_{k}") for h in history], label="validation")
        ax.set_title(k)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, path)


def plot_bars(names, values: dict[str, list[float]], path: Path, title: str = "", ylabel: str = "") -> Path:
    """Grouped bars: one group per name, one bar per metric in ``values``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5))
    width = 0.8 / max(len(values), 1)
    x = np.arange(len(names))
    for i, (metric, vals) in enumerate(values.items()):
        bars = ax.bar(x + i * width - 0.4 + width / 2, vals, width, label=metric)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title)
    return _save(fig, path)
