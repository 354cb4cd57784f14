"""What `edgefer qat` then `edgefer export --int8` gave, run by run, from the files they wrote.

    python -m edge_fer.report.export_summary RUN [RUN ...] [--md docs/export_summary.md]

For each run: the model and its options, epochs trained, how QAT set its activation ranges, and
for every int8 artefact in ``RUN/export/export_report.json`` its status (``ok``: passed the
agreement gate; ``forced``: written below it with ``--force``), validation accuracy against the
float model and against its Keras source, top-1 agreement, and the ops left in float. Nothing is
re-measured: this reads ``config.json``, ``state.json``, ``qat/qat.json`` and ``export_report.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EdgeFerError, RunError
from ..runs import RunLayout, atomic_path, read_state, resolve_run
from ..training.config import TrainConfig
from .quant_bench import ranges_label


def summarise_run(run) -> list[dict]:
    """One row per int8 artefact of the run's export report."""
    run_dir = resolve_run(run)
    layout = RunLayout(run_dir)
    report = layout.export_report()
    if not report:
        raise RunError(f"{run_dir}: no export/export_report.json; run `edgefer export {run_dir} --int8` first")
    qat = layout.qat()
    cfg, state = TrainConfig.load(run_dir), read_state(run_dir)
    float_acc = qat["float_val_accuracy"] if qat else None
    rows = []
    for name, a in report["artefacts"].items():
        if a.get("precision") != "int8":
            continue
        v = a["verification"]
        rows.append({
            "run": str(run_dir), "model": cfg.label, "epochs": state.get("epoch"),
            "qat": f"{qat['epochs']} ep, {ranges_label(qat)}" if a.get("source") == "qat" and qat else "none (PTQ)",
            "artefact": name, "status": a.get("status"), "accuracy": v["accuracy"],
            "delta_vs_float": None if float_acc is None else v["accuracy"] - float_acc,
            "delta_vs_source": v["accuracy_delta"], "agreement": v["agreement"],
            "float_ops": len(a.get("float_ops") or []), "threshold": report.get("threshold"),
        })
    return rows


def markdown(rows: list[dict]) -> str:
    def pt(x):
        return "—" if x is None else f"{100 * x:+.2f} pt"

    header = ("| model | epochs | QAT | artefact | status | val accuracy | Δ vs float | Δ vs Keras source | "
              "agreement | ops in float |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['epochs']} | {r['qat']} | {r['artefact']} | {r['status']} | "
                     f"{r['accuracy']:.4f} | {pt(r['delta_vs_float'])} | {pt(r['delta_vs_source'])} | "
                     f"{r['agreement']:.2%} | {r['float_ops']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--md", default=None, help="also write the table to this Markdown file")
    a = ap.parse_args(argv)
    try:
        table = markdown([row for run in a.runs for row in summarise_run(run)])
    except EdgeFerError as e:
        raise SystemExit(f"error: {e}") from None
    print(table, end="")
    if a.md:
        with atomic_path(Path(a.md)) as tmp:
            Path(tmp).write_text(table)


if __name__ == "__main__":
    main()
