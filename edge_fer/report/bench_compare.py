"""Side-by-side comparison of ``edgefer bench`` results: Markdown, CSV and a Pareto plot per device.

    from edge_fer.report.bench_compare import compare_bench
    compare_bench(["cpu.json", "rpi.json"], out="comparison")

Every record of every file becomes a row, failed and unavailable ones included (with their
status), so a comparison never hides what did not run. Every row names the data its accuracy was
measured on and n; records from different data side by side are said (``mixed_data``, a warning
in the table), and records of an interrupted bench are marked (``incomplete``). The Pareto plot of a device puts each
``ok`` record at (p50 latency, accuracy), marker area proportional to file size, and draws the
front: the records no other record beats on both latency and accuracy (drawn when matplotlib is
installed; the device install writes the tables and says so).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path

from ..errors import DataError
from ..extras import installed
from ..runs import atomic_path, write_json

log = logging.getLogger(__name__)

COLUMNS = ("architecture", "format", "precision", "source", "device", "threads", "accuracy", "macro_f1",
           "p50_ms", "p90_ms", "size_kb", "data", "split", "n", "status", "model")


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


def data_label(r: dict) -> str:
    """What a record's accuracy was measured on: its data and split, with n; "?" for older records without it."""
    if r.get("data_source") is not None:
        return f"{r['data_source']} [{r.get('split')}, n={r.get('n')}]"
    return str(r.get("data") or "?")


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
        "data": data_label(r) if r.get("accuracy") is not None or not ok else "-", "split": r.get("split") or "",
        "n": r.get("n"), "status": r["status"] if ok else f"{r['status']}: {r.get('reason', '')}", "model": r["model"],
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


def mixed_data(rows: list[dict]) -> list[str]:
    """The distinct data the accuracies in ``rows`` were measured on, when there is more than one."""
    datas = sorted({r["data"] for r in rows if r["accuracy"] is not None})
    return datas if len(datas) > 1 else []


def mixed_warning(datas: list[str]) -> str:
    return (f"warning: accuracies from {len(datas)} different data sets side by side ({'; '.join(datas)}); compare "
            "accuracies only between rows with the same data")


def markdown(rows: list[dict]) -> str:
    head = ("| model | architecture | format | precision | device | threads | accuracy | macro-F1 | p50 ms | p90 ms "
            "| size KB | data | status |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {Path(str(r['model'])).stem} | {r['architecture']} | {r['format']} | {r['precision']}{' (' + r['source'] + ')' if r['source'] else ''} "
                     f"| {r['device']} | {r['threads'] or '-'} | {_fmt(r['accuracy'], '.4f')} | {_fmt(r['macro_f1'], '.4f')} "
                     f"| {_fmt(r['p50_ms'], '.3f')} | {_fmt(r['p90_ms'], '.3f')} | {_fmt(r['size_kb'], '.0f')} "
                     f"| {r['data'].replace('|', '/')} | {r['status'].replace('|', '/')} |")
    notes = []
    datas = mixed_data(rows)
    if datas:
        notes.append(f"**{mixed_warning(datas).replace('warning: ', 'Mixed data: ', 1)}**")
    interrupted = sum(r["status"].startswith("interrupted") for r in rows)
    if interrupted:
        notes.append(f"**Incomplete: the bench was interrupted; {interrupted} row(s) not measured.**")
    return "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in notes)


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def plot_pareto(rows: list[dict], device: str, path: Path) -> Path:
    from .plots import _save, pareto_figure

    pts = [r for r in rows if r["device"] == device and r["p50_ms"] is not None and r["accuracy"] is not None]
    fig = pareto_figure(pts, device, pareto_front([(r["p50_ms"], r["accuracy"]) for r in pts]))
    return _save(fig, path)


def compare_bench(paths, out: Path | str = "comparison") -> dict:
    records = load_records(paths)
    rows = sorted((row(r) for r in records), key=lambda r: (r["device"], r["architecture"], str(r["model"]), r["format"],
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
    devices = sorted({r["device"] for r in rows if r["p50_ms"] is not None and r["accuracy"] is not None})
    if devices and not installed("matplotlib"):  # the device install: tables only, said once
        log.warning("Pareto plot not drawn: matplotlib is not installed (pip install 'edge_fer[train]', "
                    "or pip install matplotlib)")
        devices = []
    for device in devices:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", device)
        outputs.append(str(plot_pareto(rows, device, out / f"pareto_{safe}.png")))
    return {"rows": rows, "markdown": table, "outputs": outputs, "mixed_data": mixed_data(rows),
            "incomplete": any(r["status"].startswith("interrupted") for r in rows)}
