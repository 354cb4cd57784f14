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


def confusion_figure(cm, classes, title: str = ""):
    """Rows normalised (each cell: the share of the true class predicted so), with the count in each
    cell and each class's number of faces beside its row."""
    plt = _plt()
    cm = np.asarray(cm, dtype=float)
    counts = cm.astype(int)
    totals = counts.sum(axis=1)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.2, 6.2))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [f"{c} (n={n})" for c, n in zip(classes, totals)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true class (n faces)")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", fontsize=7.5,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    what = f"rows normalised, counts in brackets; n = {int(totals.sum())}"
    ax.set_title(f"{title}\n{what}" if title else f"confusion matrix\n{what}", fontsize=10)
    return fig


def plot_confusion(cm, classes, path: Path, title: str = "") -> Path:
    return _save(confusion_figure(cm, classes, title), path)


def plot_roc(y_true, probs, classes, path: Path, title: str = "") -> Path:
    from .metrics import roc_auc, roc_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for i, c in enumerate(classes):
        pos = y_true == i
        if 0 < pos.sum() < len(y_true):
            fpr, tpr = roc_curve(pos, probs[:, i])
            ax.plot(fpr, tpr, label=f"{c} (AUC {roc_auc(pos, probs[:, i]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "ROC, one class vs rest")
    return _save(fig, path)


def history_figure(history: list[dict], title: str = ""):
    """One panel per metric, train and validation, a marker per epoch (a 1-epoch run shows its points),
    whole-number epoch ticks."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    keys = [k for k in ("accuracy", "loss", "precision", "recall", "f1", "auc") if any(k in h for h in history)]
    cols = min(3, max(len(keys), 1))
    rows = -(-max(len(keys), 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.25 * rows + 0.3), squeeze=False)
    epochs = [h["epoch"] for h in history]
    for ax, k in zip(axes.flat, keys):
        for name, key in (("train", k), ("validation", f"val_{k}")):
            ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", ms=4, label=name)
        ax.set_title(k)
        ax.set_xlabel("epoch")
        if len(set(epochs)) == 1:  # one epoch: one tick, not 0.96 … 1.04
            ax.set_xticks(epochs[:1])
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8))
        ax.margins(y=0.15)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    n = len(history)
    fig.suptitle(f"{title or 'training curves'} ({n} epoch{'s' if n != 1 else ''})")
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], path: Path, title: str = "") -> Path:
    return _save(history_figure(history, title), path)


_FORMAT_MARKERS = {"tflite": "o", "onnx": "^", "keras": "s"}


def pareto_figure(points: list[dict], device: str, front: list[int]):
    """Accuracy against p50 latency, one point per row of ``points`` (bench comparison rows): colour =
    architecture, marker = format, filled = int8 and hollow = float, area ∝ file size. The Pareto front
    is drawn and its points numbered, with a key beside the axes saying what each number is (labels on
    every point overlap each other as soon as two models are close)."""
    from matplotlib.legend import Legend
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    plt = _plt()
    archs = sorted({r["architecture"] for r in points})
    cmap = plt.get_cmap("tab10")
    colour = {a: cmap(i % 10) for i, a in enumerate(archs)}
    fig, ax = plt.subplots(figsize=(11, 5.5))
    sizes = [max(r["size_kb"] or 0, 1) for r in points]
    scale = 600 / max(sizes, default=1)
    for r, s in zip(points, sizes):
        c = colour[r["architecture"]]
        filled = r["precision"] == "int8"
        ax.scatter(r["p50_ms"], r["accuracy"], s=max(25, s * scale), marker=_FORMAT_MARKERS.get(r["format"], "D"),
                   facecolors=[c] if filled else "none", edgecolors=[c], linewidths=1.4, alpha=0.75, zorder=3)
    key = []
    if front:
        fx, fy = [points[i]["p50_ms"] for i in front], [points[i]["accuracy"] for i in front]
        ax.plot(fx, fy, "k--", lw=1, zorder=2)
        for n, i in enumerate(front, start=1):
            r = points[i]
            ax.annotate(str(n), (r["p50_ms"], r["accuracy"]), xytext=(0, 9), textcoords="offset points",
                        ha="center", fontsize=8, fontweight="bold", zorder=4)
            key.append(f"{n}  {r['architecture']} {r['format']} {r['precision']} {r['threads']}t: "
                       f"{r['p50_ms']:.3g} ms, {r['accuracy']:.4f}")
    ax.set_xscale("log")
    ax.margins(x=0.08, y=0.1)
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 2, 30 rather than 5×10⁻¹, 2×10⁰
    ax.xaxis.set_major_formatter(plain)
    xs = [r["p50_ms"] for r in points]
    if xs and max(xs) < 10 * min(xs):  # less than a decade: label the minor ticks too, else the axis has none
        ax.xaxis.set_minor_formatter(plain)
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{device}: accuracy vs latency")
    ax.grid(alpha=0.3)
    arch_handles = [Line2D([], [], ls="", marker="o", color=colour[a], label=a) for a in archs]
    formats = sorted({r["format"] for r in points})
    style_handles = [Line2D([], [], ls="", marker=_FORMAT_MARKERS.get(f, "D"), fillstyle="left", color="0.3", label=f)
                     for f in formats]  # half-filled: the shape says the format, the fill the precision
    style_handles += [Line2D([], [], ls="", marker="o", color="0.3", label="int8 (filled)"),
                      Line2D([], [], ls="", marker="o", markerfacecolor="none", color="0.3", label="float (hollow)"),
                      Line2D([], [], ls="--", color="k", lw=1, label="Pareto front")]
    # The key column right of the axes, each block placed under the one before it as drawn, so none overlaps.
    def legend(handles, title):
        return lambda y: ax.add_artist(Legend(ax, handles, [h.get_label() for h in handles], title=title, fontsize=8,
                                              title_fontsize=8, loc="upper left", bbox_to_anchor=(1.02, y),
                                              bbox_transform=ax.transAxes, borderaxespad=0))

    blocks = [legend(arch_handles, "architecture (colour)"),
              legend(style_handles, "format, precision\n(marker area ∝ file size)")]
    if key:
        blocks.append(lambda y: ax.text(1.03, y, "Pareto front (numbered)\n" + "\n".join(key), transform=ax.transAxes,
                                        va="top", ha="left", fontsize=7.5, family="monospace"))
    fig.canvas.draw()
    top = 1.0
    for make in blocks:
        box = make(top).get_window_extent(fig.canvas.get_renderer()).transformed(ax.transAxes.inverted())
        top = box.y0 - 0.04
    return fig


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
