"""Side-by-side comparison of ``edgefer bench`` results: Markdown, CSV and a Pareto plot per device.

    from edge_fer.report.bench_compare import compare_bench
    compare_bench(["cpu.json", "rpi.json"], out="comparison")

Every record of every file becomes a row, failed and unavailable ones included (with their
status), so a comparison never hides what did not run. The Pareto plot of a device puts each
``ok`` record at (p50 latency, accuracy), marker area proportional to file size, and draws the
front: the records no other record beats on both latency and accuracy.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from ..errors import DataError
from ..runs import atomic_path, write_json

COLUMNS = ("architecture", "format", "precision", "source", "device", "threads", "accuracy", "macro_f1",
           "p50_ms", "p90_ms", "size_kb", "status", "model")


def load_records(paths) -> list[dict]:
    """Records from bench JSON files (a list of records, or an object with a ``records`` list)."""
    records = []
    for p in map(Path, paths):
        if not p.is_file():
            raise DataError(f"{p}: no such results file; write one with `edgefer bench ... --json {p}`")
        try:
            data = json.loads(p.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{p}: not a JSON results file ({e}); pass files written by `edgefer bench --json`") from None
        data = data.get("records") if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(r, dict) and "status" in r and "model" in r for r in data):
            raise DataError(f"{p}: no bench records in it; pass files written by `edgefer bench --json`")
        records.extend(data)
    if not records:
        raise DataError("the results files hold no records")
    return records


def device_label(r: dict) -> str:
    """``cpu``, ``gpu`` or ``rpi``, with the host for devices reached over SSH (one label per Pi)."""
    host = r.get("host")
    return f"{r['device']}:{host}" if host else str(r["device"])


def row(r: dict) -> dict:
    ok = r["status"] == "ok"
    lat = r.get("latency") or {}
    return {
        "architecture": r.get("architecture") or "?", "format": r.get("format") or "?",
        "precision": r.get("precision") or "?", "source": r.get("source") or "", "device": device_label(r),
        "threads": r.get("threads") if ok else "", "accuracy": r.get("accuracy") if ok else None,
        "macro_f1": r.get("macro_f1") if ok else None, "p50_ms": lat.get("p50_ms") if ok else None,
        "p90_ms": lat.get("p90_ms") if ok else None,
        "size_kb": round(r["size_bytes"] / 1024, 1) if r.get("size_bytes") is not None else None,
        "status": r["status"] if ok else f"{r['status']}: {r.get('reason', '')}", "model": r["model"],
    }


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (latency, accuracy) that no other point beats on both, fastest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _fmt(v, spec: str) -> str:
    return "-" if v is None or v == "" else format(v, spec)


def markdown(rows: list[dict]) -> str:
    head = ("| architecture | format | precision | device | threads | accuracy | macro-F1 | p50 ms | p90 ms | size KB "
            "| status |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['architecture']} | {r['format']} | {r['precision']}{' (' + r['source'] + ')' if r['source'] else ''} "
                     f"| {r['device']} | {r['threads'] or '-'} | {_fmt(r['accuracy'], '.4f')} | {_fmt(r['macro_f1'], '.4f')} "
                     f"| {_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p90_ms'], '.3f')} | {_fmt(r['size_kb'], '.0f')} "
                     f"| {r['status'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot_pareto(rows: list[dict], device: str, path: Path) -> Path:
    from .plots import _plt, _save

    plt = _plt()
    pts = [r for r in rows if r["device"] == device and r["p50_ms"] is not None]
    xy = [(r["p50_ms"], r["accuracy"]) for r in pts]
    front = pareto_front(xy)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = [max(r["size_kb"] or 0, 1) for r in pts]
    scale = 900 / max(sizes)
    for i, (r, (x, y), s) in enumerate(zip(pts, xy, sizes)):
        ax.scatter(x, y, s=max(20, s * scale), alpha=0.55)
        ax.annotate(f"{r['architecture']} {r['format']} {r['precision']} {r['threads']}t", (x, y), fontsize=7,
                    xytext=(4, 4 - 10 * (i % 4)), textcoords="offset points")  # staggered: equal accuracies overlap
    if front:
        ax.plot([xy[i][0] for i in front], [xy[i][1] for i in front], "k--", lw=1, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{device}: accuracy vs latency (marker area ∝ file size)")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def compare_bench(paths, out: Path | str = "comparison") -> dict:
    records = load_records(paths)
    rows = sorted((row(r) for r in records), key=lambda r: (r["device"], r["architecture"], r["format"],
                                                              r["precision"], str(r["threads"])))
    out = Path(out)
    table = markdown(rows)
    outputs = []
    for name, text in (("bench_comparison.md", table), ("bench_comparison.csv", to_csv(rows))):
        with atomic_path(out / name) as tmp:
            tmp.write_text(text)
        outputs.append(str(out / name))
    write_json(out / "bench_comparison.json", rows)
    outputs.append(str(out / "bench_comparison.json"))
    for device in sorted({r["device"] for r in rows if r["p50_ms"] is not None}):
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", device)
        outputs.append(str(plot_pareto(rows, device, out / f"pareto_{safe}.png")))
    return {"rows": rows, "markdown": table, "outputs": outputs}
