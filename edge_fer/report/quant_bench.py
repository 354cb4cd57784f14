"""Float vs PTQ-int8 vs QAT-int8 for trained runs: accuracy, agreement, size and TFLite latency.

    python -m edge_fer.report.quant_bench RUN [RUN ...] --out docs/quantization.json --md docs/quantization.md
    python -m edge_fer.report.quant_bench NEW_RUN --update --out docs/quantization.json --md docs/quantization.md

For each run (which must already have ``RUN/qat/best.h5`` from ``edgefer qat``): exports float32,
PTQ-int8 and QAT-int8 TFLite models with a fixed batch of 1 into ``RUN/bench/`` (written even
below the agreement threshold, so failures are measured, not hidden), evaluates each on the
validation split, and times batch-1 inference with the TFLite runtime (XNNPACK) on 1 and 2 threads.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from ..runs import RunLayout, read_state, resolve_run, write_json
from ..training.config import TrainConfig


def bench_run(run, *, threads=(1, 2), min_seconds: float = 2.0) -> dict:
    from ..export import export_run
    from ..runtime import measure_latency, open_model
    from ..quantization.pipeline import qat_weights
    from ..quantization.scheme import WEIGHTS

    from ..data import load_fer

    run_dir = resolve_run(run)
    out = run_dir / "bench"
    face = load_fer(None)["validation"].x[:1]  # latency does not depend on which face
    per_tensor = qat_weights(run_dir) == WEIGHTS[True]  # PTQ at the granularity QAT used, to compare like with like
    rows = []
    for source, precisions in (("ptq", ["float32", "int8"]), ("qat", ["int8"])):
        results = export_run(run_dir, formats=["tflite"], precisions=precisions, source=source, force=True,
                             out=out, batch=1, per_tensor=per_tensor if source == "ptq" else None)
        for r in results:
            row = {"artefact": Path(r.file).name, "precision": r.precision, "source": r.source,
                   "size_bytes": r.size_bytes, "float_ops": len(r.float_ops), **r.verification}
            for t in threads:
                model = open_model(r.file, threads=t)
                prepared = model.prepare(face)
                row[f"p50_ms_{t}t"] = measure_latency(model.invoke, prepared, min_seconds=min_seconds)["p50_ms"]
            rows.append(row)
    cfg = TrainConfig.load(run_dir)
    return {"run": shown_path(run_dir), "model": cfg.label + _ranges_label(run_dir) + (", per-tensor weights" if per_tensor else ""),
            "epochs": read_state(run_dir).get("epoch"), "measured": time.strftime("%Y-%m-%d"), "rows": rows}


def shown_path(path: Path) -> str:
    """``path`` as the results file records it: relative to the working directory or to ``~``, so that the
    committed JSON names no machine's home or checkout."""
    path = Path(path).resolve()
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def ranges_label(qat: dict) -> str:
    """How a QAT run's activation ranges were set, from its qat.json: e.g. '99.9th-pct ranges (auto)',
    'min/max ranges (auto)' or 'min/max ranges'."""
    asked = qat.get("range_percentile")
    chosen = qat.get("range_percentile_chosen", asked)
    name = "min/max ranges" if chosen in (None, "auto") else f"{chosen:g}th-pct ranges"
    return name + (" (auto)" if asked == "auto" else "")


def _ranges_label(run_dir: Path) -> str:
    """', ' + ranges_label for a run whose ranges were clipped or chosen; '' for plain min/max."""
    qat = RunLayout(run_dir).qat() or {}
    label = ranges_label(qat)
    return "" if label == "min/max ranges" else f", {label}"


def markdown(results: list[dict]) -> str:
    lines = ["| model | epochs | artefact | val accuracy | Δ vs float | agreement | size KB | % of float32 | "
             "p50 ms 1 thread | p50 ms 2 threads |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        ref = next(r for r in res["rows"] if r["precision"] == "float32")
        float_acc = ref["accuracy"]
        for r in res["rows"]:
            lines.append(
                f"| {res['model']} | {res['epochs']} | {r['artefact']} | {r['accuracy']:.4f} | "
                f"{100 * (r['accuracy'] - float_acc):+.2f} pt | {r['agreement']:.2%} | {r['size_bytes'] / 1024:.0f} | "
                f"{r['size_bytes'] / ref['size_bytes']:.0%} | "
                f"{r.get('p50_ms_1t', float('nan')):.3f} | {r.get('p50_ms_2t', float('nan')):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default=None, help="JSON results file")
    ap.add_argument("--md", default=None, help="Markdown table file")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--update", action="store_true",
                    help="measure only the runs named and keep the other runs' rows of the existing --out file")
    a = ap.parse_args(argv)
    new = [bench_run(r, min_seconds=a.min_seconds) for r in a.runs]
    results = new
    if a.update and a.out and Path(a.out).is_file():
        by_run = {r["run"]: r for r in json.loads(Path(a.out).read_text())["results"]}
        by_run.update({r["run"]: r for r in new})
        results = list(by_run.values())
    table = markdown(results)
    print(table)
    if a.out:
        write_json(Path(a.out), {"cpu_count": os.cpu_count(), "results": results})
    if a.md:
        Path(a.md).write_text(table)


if __name__ == "__main__":
    main()
