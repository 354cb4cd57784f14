"""``edgefer compare``: training runs side by side, or ``edgefer bench`` records side by side.

    from edge_fer.report.compare import compare
    result = compare(["cpu.json", "rpi.json"], out="comparison")   # bench records → table + Pareto plots
    result = compare(["runs/cnn", "runs/ferlite"])                  # runs → evaluated, table + bar chart

Inputs are all ``.json`` bench records or all run directories; the result holds the Markdown table,
the files written and, when accuracies come from different data sets, a ``warning``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError


def compare(inputs, *, split: str = "test", out: str | Path = "comparison") -> dict:
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise ConfigError("compare needs run directories or bench RESULTS.json files, e.g. "
                          "`edgefer compare runs/cnn runs/ferlite`")
    files = [Path(i).suffix.lower() == ".json" for i in inputs]
    if any(files) and not all(files):
        raise ConfigError("compare takes either run directories or bench RESULTS.json files, not both")
    if all(files):
        from .bench_compare import compare_bench

        result = compare_bench(inputs, out=out)
    else:
        from .evaluate import compare_runs

        result = compare_runs(inputs, split=split, out=out)
    if result.get("mixed_data"):
        from .bench_compare import mixed_warning

        result["warning"] = mixed_warning(result["mixed_data"])
    return result
