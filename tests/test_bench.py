"""device_bench: latency statistics, the device script, CPU records, clear errors."""

import json
import socket

import numpy as np
import pytest
from click.testing import CliRunner

from edge_fer.cli import main
from edge_fer.runtime import latency_stats, measure_latency
from edge_fer.device_bench.bench import bench_models, cross_check, format_table
from edge_fer.errors import EdgeFerError

from conftest import assert_user_error


def test_latency_stats_on_synthetic_samples():
    ns = np.array([1, 2, 3, 4, 100], dtype=np.int64) * 1_000_000
    s = latency_stats(ns)
    assert s["runs"] == 5 and s["min_ms"] == 1 and s["max_ms"] == 100 and s["p50_ms"] == 3
    assert s["mean_ms"] == pytest.approx(22.0) and s["p90_ms"] == pytest.approx(61.6)
    with pytest.raises(ValueError):
        latency_stats([])


def test_measure_latency_honours_min_runs_and_min_time():
    calls = []
    s = measure_latency(lambda x: calls.append(x), 0, warmup=5, min_runs=50, min_seconds=0.05)
    assert s["runs"] >= 50 and len(calls) == 1 + 5 + s["runs"]
    assert s["first_inference_ms"] >= 0 and s["p99_ms"] >= s["p50_ms"] >= s["min_ms"]


@pytest.mark.slow
def test_bench_cpu_records(exported, subset):
    from sklearn.metrics import confusion_matrix, f1_score

    from edge_fer.data import load_fer
    from edge_fer.runtime import open_model

    models = [exported / "cnn_int8.tflite", exported / "cnn_float32.onnx"]
    test = load_fer(subset)["test"]
    records = bench_models(models, threads=[1, 2], data=str(subset), split="test", min_seconds=0.2)
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    for r in records:
        assert r["latency"]["runs"] >= 200 and 0 < r["latency"]["p50_ms"] < 50
        # the figures are those of the model's own labels on the 500 test faces, scored independently here
        labels = open_model(exported / r["model"]).predict(test.x).argmax(1)
        assert r["confusion_matrix"] == confusion_matrix(test.y, labels, labels=range(7)).tolist()
        assert r["accuracy"] == pytest.approx(float((labels == test.y).mean()), abs=1e-12)
        assert r["macro_f1"] == pytest.approx(f1_score(test.y, labels, labels=range(7), average="macro",
                                                       zero_division=0), abs=1e-12)
        assert 0.3 < r["accuracy"] < 0.7
        assert r["peak_rss_mb"] > 10 and r["init_ms"] > 0 and r["throughput_img_s"] > 0
    tfl = [r for r in records if r["model"] == "cnn_int8.tflite"]
    assert {r["threads"] for r in tfl} == {1, 2} and tfl[0]["runtime"] == "ai-edge-litert"
    # the same predictions whatever the thread count
    assert tfl[0]["accuracy"] == tfl[1]["accuracy"]
    assert "cnn_int8.tflite" in format_table(records)
    # int8 XNNPACK kernels give 2 threads the raw outputs of 1: the faces were labelled once, and the record says so
    assert [r.get("scored_with_threads") for r in records if r["model"] == "cnn_int8.tflite"] == [None, 1]


@pytest.mark.slow
def test_bench_failed_model_is_a_record_not_a_crash(exported, subset, tmp_path):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a model")
    (tmp_path / "broken.tflite.json").write_text((exported / "cnn_int8.tflite.json").read_text())
    records = bench_models([bad], threads=[1], data=str(subset), min_seconds=0.1)
    assert records[0]["status"] == "failed" and records[0]["reason"]


def test_cross_check_against_this_python(exported, subset, tmp_path):
    """cross_check runs the device runner under another interpreter; against this very Python it must agree
    exactly. (The emulated aarch64 Pi is the interpreter the results page uses: tests/test_zoo.py.)"""
    import sys

    r = cross_check(exported / "cnn_int8.tflite", sys.executable, data=str(subset), faces=20)
    assert r["faces"] == 20 and r["labels_equal"] == 1.0 and r["sample_outputs_equal"] and r["sample_outputs"] == 8
    assert "first 20 faces" in r["data"]
    with pytest.raises(EdgeFerError, match="no such interpreter.*arm64_pi.sh"):
        cross_check(exported / "cnn_int8.tflite", str(tmp_path / "python"), data=str(subset))


def test_quick_bench_times_briefly_and_scores_as_usual(run, tmp_path):
    """`edgefer bench --quick` (what the emulated Pi's bench runs): 10 runs after 1 warm-up, no throughput batch,
    no minimum duration, and the same labels as a full bench; the settings line says so."""
    records, said = {}, {}
    for name, extra in (("full", ["--min-seconds", "0"]), ("quick", ["--quick"])):
        r = run("bench", "cnn_int8", "--threads", "1", "--json", tmp_path / f"{name}.json", *extra)
        assert r.exit_code == 0, r.output
        (records[name],), said[name] = json.loads((tmp_path / f"{name}.json").read_text()), r.output
    full, quick = records["full"], records["quick"]
    assert quick["latency"]["runs"] == 10 and quick["latency"]["warmup_runs"] == 1, quick["latency"]
    assert quick["throughput_img_s"] is None and full["throughput_img_s"] > 0
    assert full["latency"]["runs"] >= 200 and full["latency"]["warmup_runs"] == 50
    assert quick["n"] == full["n"] == 600 and quick["confusion_matrix"] == full["confusion_matrix"]
    quick_line = said["quick"].splitlines()[0]
    assert "≥ 0 s and ≥ 10 runs after 1 warm-up run, no throughput batch" in quick_line, quick_line
    assert "≥ 200 runs after 50 warm-up runs" in said["full"].splitlines()[0], said["full"]


def test_bench_refuses_a_file_that_is_no_model(tmp_path):
    m = tmp_path / "m.tflite"
    m.write_bytes(b"x")
    with pytest.raises(EdgeFerError, match="not a readable TFLite model"):
        bench_models([m])


def test_rpi_without_host_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEFER_RPI_HOST", raising=False)
    monkeypatch.delenv("EDGEFER_CONFIG", raising=False)
    r = CliRunner().invoke(main, ["bench", "--device", "rpi"])
    assert r.exit_code == 2
    assert "no Raspberry Pi address: pass --host user@pi, set EDGEFER_RPI_HOST" in r.output
    (tmp_path / "edgefer.toml").write_text('[rpi]\nhost = "pi@127.0.0.1"\n')
    with socket.socket() as s:  # a port nothing listens on: the host from edgefer.toml is tried and unreachable
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = CliRunner().invoke(main, ["bench", "--device", "rpi", "--port", str(port)])
    assert assert_user_error(r).startswith(f"Error: pi@127.0.0.1:{port}: unreachable"), r.output


@pytest.mark.slow
def test_cli_bench_json(exported, subset, tmp_path):
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["bench", str(exported / "cnn_int8.tflite"), "--threads", "1", "--data", str(subset),
                                  "--min-seconds", "0.1", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "threads [1]" in r.output.splitlines()[0]
    assert json.loads(out.read_text())[0]["status"] == "ok"
    r = CliRunner().invoke(main, ["compare", str(out), "--out", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert "| cnn_int8 | cnn | tflite | int8" in r.output and (tmp_path / "cmp" / "pareto_cpu.png").is_file()


@pytest.mark.slow
def test_keras_float_baseline(trained, exported, subset):
    """The run's .keras model with TensorFlow, beside its float32 TFLite export: same labels."""
    keras_model = trained.run_dir / "best.keras"
    records = bench_models([keras_model, exported / "cnn_float32.tflite"], threads=[1, 2], data=str(subset),
                           min_seconds=0.1, quick=True)  # no latency is read here
    assert [r["status"] for r in records] == ["ok"] * 4
    k = [r for r in records if r["model"] == "best.keras"]
    t = [r for r in records if r["model"] == "cnn_float32.tflite"]
    assert {r["threads"] for r in k} == {1, 2} and k[0]["runtime"] == "tensorflow" and k[0]["format"] == "keras"
    assert k[0]["confusion_matrix"] == t[0]["confusion_matrix"]
    np.testing.assert_allclose(k[0]["sample_outputs"], t[0]["sample_outputs"], atol=1e-5)
    gpu = bench_models([keras_model], device="gpu", data=str(subset), min_seconds=0.1)
    assert gpu[0]["status"] == "unavailable" and "float baseline" in gpu[0]["reason"]


def _device_script(tmp_path, *args, block_tflite=False):
    """The one-file device script, run as on a device (fresh process, PYTHONPATH cleared)."""
    import os
    import subprocess
    import sys

    from edge_fer.runtime.standalone import build_device_script

    script = str(build_device_script(tmp_path))
    cmd = [sys.executable, script, *map(str, args)]
    if block_tflite:  # a device without a TFLite runtime
        cmd = [sys.executable, "-c", "import runpy, sys; sys.modules['ai_edge_litert'] = None; "
               "sys.modules['tflite_runtime'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], "
               "run_name='__main__')", script, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})


def test_device_script_holds_the_runtime_only_and_reports_a_typed_status(tmp_path):
    """The script copied to a device is edge_fer.runtime and the errors it raises, nothing of a stage; a run
    that cannot finish prints its status (unavailable / failed) and error class, which the bench keeps as is."""
    from edge_fer.device_bench.script import read_result
    from edge_fer.errors import RemoteError
    from edge_fer.runtime.standalone import script_files

    names = sorted(script_files())
    assert all(n.startswith("edge_fer/runtime/") or n in ("__main__.py", "edge_fer/__init__.py", "edge_fer/errors.py")
               for n in names) and "edge_fer/runtime/device.py" in names, names
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"not a model")
    r = _device_script(tmp_path, "--model", bad, "--min-runs", 1)
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 3 and doc["status"] == "failed" and doc["error_type"] == "ModelError", (r.stdout, r.stderr)
    assert "not a loadable TFLite model" in doc["error"]
    r = _device_script(tmp_path, "--model", bad, block_tflite=True)
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    assert doc["status"] == "unavailable" and doc["error_type"] == "RuntimeMissing", r.stdout
    with pytest.raises(RemoteError, match="no TFLite runtime; pip install ai-edge-litert.*numpy") as e:
        read_result(r.returncode, r.stdout, r.stderr)
    assert e.value.status == "unavailable"
    # the status is read, not parsed out of the message
    with pytest.raises(RemoteError) as e:
        read_result(3, json.dumps({"error": "no Vulkan device", "status": "unavailable", "error_type": "X"}), "")
    assert e.value.status == "unavailable" and str(e.value) == "no Vulkan device"


def test_the_device_script_labels_again_a_thread_count_whose_outputs_differ(tmp_path):
    """`runtime.device.run` labels the faces once and reuses the labels for a thread count whose raw outputs on
    the first 8 faces are the same; where they differ it labels every face again. (A stand-in model whose outputs
    change with the thread count: no runtime here does that on demand.)"""
    from edge_fer.runtime import device

    faces = np.arange(20 * 48 * 48, dtype=np.uint8).reshape(20, 48, 48) % 251
    np.savez(tmp_path / "faces.npz", x=faces, y=np.zeros(20, np.int64))
    labelled = []

    class Model:
        runtime, version, init_ms, max_batch = "stand-in", "0", 0.0, None

        def __init__(self, threads):
            self.threads = threads

        def prepare(self, x):
            return np.asarray(x, np.float32)

        def invoke(self, x):  # 4 threads add a rounding difference to class 0
            out = np.stack([x.mean(axis=(1, 2)) % 7 == k for k in range(7)], axis=1).astype(np.float32)
            out[:, 0] += 1e-3 * (self.threads == 4)
            return out

        def labels(self, x):
            labelled.append(self.threads)
            return self.invoke(self.prepare(x)).argmax(1)

    doc = device.run(tmp_path / "m.tflite", tmp_path / "faces.npz", [1, 2, 4], min_runs=1, min_seconds=0, warmup=0,
                     throughput_batch=0, opener=lambda path, threads, **_: Model(threads))
    assert labelled == [1, 4]
    assert [r.get("scored_with_threads") for r in doc["results"]] == [None, 1, None]
    assert doc["results"][1]["predictions"] == doc["results"][0]["predictions"]
