"""edgefer compare on bench results: table, CSV, Pareto front and plot per device, clear errors."""

import csv
import json

from click.testing import CliRunner

from edge_fer.cli import main
from edge_fer.report.bench_compare import compare_bench, pareto_front

from conftest import assert_user_error


def _rec(arch, precision, device, p50, acc, size, status="ok", **extra):
    r = {"model": f"{arch}_{precision}.tflite", "architecture": arch, "format": "tflite", "precision": precision,
         "source": "qat" if precision == "int8" else "ptq", "device": device, "size_bytes": size, "status": status,
         **extra}
    if status == "ok":
        r.update(threads=1, accuracy=acc, macro_f1=acc - 0.1, latency={"p50_ms": p50, "p90_ms": p50 * 1.2})
    else:
        r["reason"] = "no Vulkan device"
    return r


def test_pareto_front_keeps_only_undominated_points():
    pts = [(1.0, 0.60), (0.5, 0.55), (2.0, 0.58), (0.4, 0.50), (3.0, 0.70), (0.5, 0.54)]
    assert pareto_front(pts) == [3, 1, 0, 4]  # (2.0, 0.58) and (0.5, 0.54) are beaten
    assert pareto_front([]) == []


def test_compare_bench_writes_table_csv_and_one_plot_per_device(tmp_path):
    a = tmp_path / "cpu.json"
    b = tmp_path / "rpi.json"
    a.write_text(json.dumps([_rec("cnn", "int8", "cpu", 0.2, 0.62, 600_000), _rec("cnn", "float32", "cpu", 0.5, 0.63, 2_400_000),
                             _rec("cnn", "int8", "gpu", None, None, 600_000, status="unavailable")]))
    b.write_text(json.dumps({"records": [_rec("cnn", "int8", "rpi", 2.0, 0.62, 600_000, host="pi@10.0.0.7")]}))
    result = compare_bench([a, b], out=tmp_path / "cmp")
    names = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert names == ["bench_comparison.csv", "bench_comparison.json", "bench_comparison.md", "pareto_cpu.png",
                     "pareto_rpi_pi_10.0.0.7.png"]  # no plot for gpu: nothing ran there
    assert (tmp_path / "cmp" / "pareto_cpu.png").read_bytes()[:4] == b"\x89PNG"
    md = result["markdown"]
    assert "| cnn_int8 | cnn | tflite | int8 (qat) | cpu | 1 | 0.6200 |" in md
    assert "unavailable: no Vulkan device" in md and "rpi:pi@10.0.0.7" in md
    rows = list(csv.DictReader((tmp_path / "cmp" / "bench_comparison.csv").open()))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok", "unavailable: no Vulkan device"}


def test_compare_cli_bad_inputs_are_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = CliRunner().invoke(main, ["compare", str(bad)])
    assert_user_error(r, "bad.json: not a JSON results file")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"a": 1}))
    r = CliRunner().invoke(main, ["compare", str(other)])
    assert r.exit_code == 2 and "no bench records" in r.output
    r = CliRunner().invoke(main, ["compare", str(other), str(tmp_path)])
    assert r.exit_code == 2 and "not both" in r.output
    r = CliRunner().invoke(main, ["compare", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "no such results file" in r.output
