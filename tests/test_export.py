"""QAT, calibration and export on real runtimes: parity, agreement, metadata, refusal, atomicity."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_fer.calibration import CalibrationMethod, CalibrationSet
from edge_fer.cli import main
from edge_fer.data import load_fer
from edge_fer.errors import ConfigError, DataError, RunError
from edge_fer.errors import ExportRefused
from edge_fer.export import export_run
from edge_fer.runtime import open_model
from edge_fer.export import convert
from edge_fer.export.metadata import sha256
from edge_fer.runtime.metadata import read_onnx_metadata, read_tflite_metadata
from edge_fer.quantization import load_float_model, load_qat_model, qat_run
from edge_fer.quantization.config import AUTO_PERCENTILES, parse_range_percentile
from edge_fer.runs import atomic_path

from conftest import assert_user_error, pick_rows, write_subset_npz

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(subset):
    return load_fer(subset)


@pytest.fixture(scope="module")
def float_model(trained):
    return load_float_model(trained.run_dir)[0]


@pytest.fixture(scope="module")
def val_batch(data):
    return data["validation"].x[:64]


@pytest.fixture(scope="module")
def every(trained, tmp_path_factory) -> tuple[Path, list]:
    """Every format and precision, post-training, below a 0.9 gate: (folder, export results). The tests below
    read what this one export wrote."""
    out = tmp_path_factory.mktemp("every")
    return out, export_run(trained.run_dir, source="ptq", threshold=0.9, out=out)


def test_tflite_float32_parity(every, float_model, val_batch):
    got = open_model(every[0] / "cnn_float32.tflite").predict(val_batch)
    want = float_model.predict(val_batch[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_float32_parity(every, float_model, val_batch):
    got = open_model(every[0] / "cnn_float32.onnx").predict(val_batch)
    want = float_model.predict(val_batch[..., None].astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_every_format_and_precision(every):
    out, results = every
    by_name = {r.file.split("/")[-1]: r for r in results}
    assert set(by_name) == {"cnn_float32.tflite", "cnn_float16.tflite", "cnn_dynamic.tflite", "cnn_int8.tflite",
                            "cnn_float32.onnx", "cnn_int8.onnx"}
    for name, r in by_name.items():
        floor = 0.999 if "float32" in name else (0.98 if name.endswith(("float16.tflite", "dynamic.tflite")) else 0.9)
        assert r.verification["agreement"] >= floor, (name, r.verification)
        assert (out / name).stat().st_size == r.size_bytes
    size = lambda n: by_name[n].size_bytes
    assert size("cnn_int8.tflite") < 0.3 * size("cnn_float32.tflite")
    assert size("cnn_float16.tflite") < 0.55 * size("cnn_float32.tflite")
    # int8 TFLite with int8 I/O: raw 0–255 pixels map onto int8 with scale 1, zero point -128
    model = open_model(out / "cnn_int8.tflite")
    assert model.input_dtype == np.int8
    scale, zp = model.input_quantization
    assert scale == pytest.approx(1.0) and zp == -128
    report = json.loads((out / "export_report.json").read_text())
    assert set(report["artefacts"]) == set(by_name)
    # the resolved ExportConfig, saved beside what it wrote
    assert (report["config"]["source"], report["config"]["threshold"], report["config"]["calib_size"]) == ("ptq", 0.9, 256)
    assert report["artefacts"]["cnn_int8.onnx"]["config"] == report["config"]


def test_metadata_sidecar_and_embedded(every, float_model, data):
    out, results = every
    results = {r.file.split("/")[-1]: r for r in results}
    val = data["validation"]
    want = float_model.predict(val.x[..., None].astype(np.float32), verbose=0).argmax(1)
    for name, reader in (("cnn_int8.tflite", read_tflite_metadata), ("cnn_int8.onnx", read_onnx_metadata)):
        side = json.loads((out / f"{name}.json").read_text())
        assert side["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
        assert side["input"]["shape"] == [-1, 48, 48, 1] and side["input"]["color"] == "grey"
        assert side["sha256"] == sha256(out / name)
        assert side["source"] == "ptq" and side["calibration"]["size"] == 256
        assert side["train_config"]["model"] == "cnn" and "tensorflow" in side["tools"]
        # the agreement recorded is the one measured here on the validation split, and it passed the 0.9 gate
        agreement = float((open_model(out / name).predict(val.x).argmax(1) == want).mean())
        assert side["verification"]["n"] == len(val) and results[name].status == "ok"
        assert side["verification"]["agreement"] == pytest.approx(agreement, abs=2 / len(val)) and agreement >= 0.9
        embedded = reader(out / name)
        assert embedded["classes"] == side["classes"] and embedded["precision"] == "int8"
    side = json.loads((out / "cnn_int8.tflite.json").read_text())
    assert side["input"]["io_type"] == "int8" and side["input"]["quantization"][1] == -128


def test_refusal_writes_nothing(trained, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportRefused, match="nothing was written.*--force"):
        export_run(trained.run_dir, formats=["tflite"], precisions=["float16", "int8"], source="ptq",
                   threshold=1.0, out=out)
    assert not out.exists()
    results = export_run(trained.run_dir, formats=["tflite"], precisions=["int8"], source="ptq", threshold=1.0,
                         force=True, out=out)
    assert results[0].status == "forced" and (out / "cnn_int8.tflite").is_file()


def test_interrupted_export_leaves_no_partial_files(trained, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "to_onnx_float", boom)
    with pytest.raises(KeyboardInterrupt):
        export_run(trained.run_dir, formats=["tflite", "onnx"], precisions=["float32"], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


@pytest.fixture(scope="module")
def qat_data(data):
    """The run's data with 1,500 of its 6,000 training faces (validation whole): what a QAT test fine-tunes on
    when how well it learns is not what it checks; a fine-tuning epoch is a pass over the training faces."""
    import dataclasses

    train = data["train"]
    few = dataclasses.replace(train, x=train.x[:1500], y=train.y[:1500], targets=train.targets[:1500],
                              rows=train.rows[:1500])
    return dataclasses.replace(data, splits={**data.splits, "train": few})


@pytest.fixture(scope="module")
def qat(trained, qat_data):
    return qat_run(trained.run_dir, epochs=1, range_percentile="minmax", data=qat_data, verbose=0)


def test_qat_warm_up_and_fine_tune(qat, trained):
    assert qat.agreement_before >= 0.95, qat  # without the range warm-up this is ~10–20%
    assert qat.qat_val_accuracy >= qat.float_val_accuracy - 0.02
    model = load_qat_model(qat.model_path)
    assert any("quant" in l.name for l in model.layers)
    saved = json.loads((trained.run_dir / "qat" / "qat.json").read_text())
    assert saved["selected_on"] == "validation" and saved["epochs"] == 1
    assert saved["range_percentile"] is None and saved["range_trials"] == []  # minmax: no range tries


def test_qat_export_tflite_and_onnx_agree(qat, trained, tmp_path, data, monkeypatch):
    # --force: this 1-epoch QAT model sits a few faces above the 98% gate, so whether it passes is not what
    # is tested here; that the gate decides the status is, and that QAT int8 stays close to its QAT model
    results = export_run(trained.run_dir, precisions=["int8"], source="qat", force=True, out=tmp_path)
    assert [r.file.split("/")[-1] for r in results] == ["cnn_int8_qat.tflite", "cnn_int8_qat.onnx"]
    for r in results:
        assert r.status == ("ok" if r.verification["agreement"] >= 0.98 else "forced"), r
        assert r.verification["agreement"] >= 0.95, r.verification
        assert r.float_ops == []
    x = data["validation"].x[:200]
    a = open_model(tmp_path / "cnn_int8_qat.tflite").predict(x)
    b = open_model(tmp_path / "cnn_int8_qat.onnx").predict(x)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.98
    # it loads as written in ORT's exact-int8 mode, which refuses tf2onnx's shared zero points (ORT 1.32)
    import onnxruntime as ort

    from edge_fer.runtime.onnx_model import EXACT_INT8

    so = ort.SessionOptions()
    so.add_session_config_entry(EXACT_INT8, "1")
    ort.InferenceSession(str(tmp_path / "cnn_int8_qat.onnx"), so, providers=["CPUExecutionProvider"])
    # tf2onnx's own file (shared zero points, as in ONNX files edge_fer did not unshare): edge_fer's ONNX loader
    # rewrites it on loading, with the same results
    import onnx

    from edge_fer.runtime.onnx_model import unshare_initializers

    monkeypatch.setattr(convert, "unshare_initializers", lambda model: False)
    export_run(trained.run_dir, formats=["onnx"], precisions=["int8"], source="qat", out=tmp_path / "shared")
    shared = tmp_path / "shared" / "cnn_int8_qat.onnx"
    assert unshare_initializers(onnx.load(str(shared)))
    np.testing.assert_array_equal(open_model(shared).predict(x), b)
    # refused QAT export of a min/max run: the hint names `edgefer qat`'s default range choice
    with pytest.raises(ExportRefused, match="default `--range-percentile auto`"):
        export_run(trained.run_dir, formats=["tflite"], precisions=["int8"], source="qat", threshold=1.0,
                   out=tmp_path / "refused")


def test_cli_qat_then_export_int8_latest_run(qat, trained, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFER_RUNS", str(trained.run_dir.parent))
    r = CliRunner().invoke(main, ["export", "--int8", "--out", str(tmp_path)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "cnn_int8_qat.tflite" in r.output and "agreement" in r.output
    assert (tmp_path / "cnn_int8_qat.onnx").is_file()

    # the per-run summary of what qat + export gave, read back from the files they wrote
    from edge_fer.report.export_summary import main as export_summary, summarise_run

    copy = tmp_path / "runs" / "cnn"
    (copy / "qat").mkdir(parents=True)
    for f in ("config.json", "state.json", "qat/qat.json"):
        shutil.copy(trained.run_dir / f, copy / f)
    with pytest.raises(SystemExit, match="^error: .*no export/export_report.json; run `edgefer export"):
        export_summary([str(copy)])  # one line, no traceback
    shutil.copytree(tmp_path, copy / "export", ignore=shutil.ignore_patterns("runs"))
    report = json.loads((tmp_path / "export_report.json").read_text())["artefacts"]
    rows = summarise_run(copy)
    assert [r["artefact"] for r in rows] == ["cnn_int8_qat.tflite", "cnn_int8_qat.onnx"]
    assert all(r["status"] == "ok" and r["qat"] == "1 ep, min/max ranges" for r in rows)
    assert [r["agreement"] for r in rows] == [report[r["artefact"]]["verification"]["agreement"] for r in rows]
    export_summary([str(copy), "--md", str(tmp_path / "summary.md")])
    table = (tmp_path / "summary.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| cnn (width=0.5) | 4 | 1 ep, min/max ranges | cnn_int8_qat.tflite | ok |")


def test_quant_bench_table_and_update(qat, trained, tmp_path):
    """The float / PTQ-int8 / QAT-int8 benchmark of docs/benchmarks.md; --update adds a run, keeps the rest."""
    from edge_fer.report.quant_bench import main as quant_bench

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(trained.run_dir, a, ignore=shutil.ignore_patterns("export", "eval", "tb", "bench"))
    out, md = tmp_path / "q.json", tmp_path / "q.md"
    quant_bench([str(a), "--out", str(out), "--md", str(md), "--min-seconds", "0.05"])
    shutil.copytree(a, b)
    quant_bench([str(b), "--update", "--out", str(out), "--md", str(md), "--min-seconds", "0.05"])
    results = json.loads(out.read_text())["results"]
    assert [Path(r["run"]).name for r in results] == ["a", "b"]
    rows = {r["artefact"]: r for r in results[0]["rows"]}
    assert sorted(rows) == ["cnn_float32.tflite", "cnn_int8.tflite", "cnn_int8_qat.tflite"]
    assert rows["cnn_int8_qat.tflite"]["size_bytes"] < 0.3 * rows["cnn_float32.tflite"]["size_bytes"]
    assert rows["cnn_int8_qat.tflite"]["agreement"] >= 0.95 and rows["cnn_int8_qat.tflite"]["p50_ms_1t"] > 0
    table = md.read_text()
    assert table.count("| cnn (width=0.5) | 4 | cnn_int8_qat.tflite |") == 2


def test_quant_bench_records_runs_relative_to_home_or_here(tmp_path, monkeypatch):
    """The committed results name no machine's home or checkout."""
    from edge_fer.report.quant_bench import shown_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "runs" / "cnn").mkdir(parents=True)
    (tmp_path / "repo" / "runs" / "x").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo")
    assert shown_path(tmp_path / "home" / "runs" / "cnn") == "~/runs/cnn"
    assert shown_path(tmp_path / "repo" / "runs" / "x") == "runs/x"


def test_calibration_sets(data, tmp_path):
    calib = CalibrationSet.from_split(data["train"], size=70, seed=1)
    counts = np.bincount(data["train"].y[np.isin(data["train"].x.reshape(len(data["train"]), -1).sum(1),
                                                 calib.x.reshape(70, -1).sum(1))], minlength=7)
    assert len(calib) == 70 and calib.x.shape == (70, 48, 48, 1)
    assert counts.max() - counts.min() <= 4  # class-balanced
    assert sum(1 for _ in calib.tflite_dataset()) == 70
    reader = calib.ort_reader("image", batch=32)
    shapes = []
    while (batch := reader.get_next()) is not None:
        shapes.append(batch["image"].shape[0])
    assert shapes == [32, 32, 6]


def test_calibration_bad_inputs(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        CalibrationSet.from_folder(empty)
    with pytest.raises(ConfigError, match="too small"):
        CalibrationSet.from_split(data["train"], size=2)
    with pytest.raises(DataError, match="empty"):
        CalibrationSet(np.zeros((0, 48, 48, 1), np.float32), "test")
    with pytest.raises(DataError, match="shape"):
        CalibrationSet(np.zeros((10, 48, 48), np.float32), "test")
    with pytest.raises(DataError, match="model takes"):
        CalibrationSet(np.zeros((10, 32, 32, 1), np.float32), "test").check_model_input((None, 48, 48, 1))
    with pytest.raises(ConfigError, match="unknown calibration method"):
        CalibrationMethod.parse("kl")


def test_calibration_from_folder(tmp_path, data):
    from PIL import Image

    for i in range(12):
        Image.fromarray(np.repeat(data["train"].x[i][..., None], 3, -1)).resize((96, 96)).save(tmp_path / f"{i}.jpg")
    calib = CalibrationSet.from_folder(tmp_path, size=10)
    assert calib.x.shape == (10, 48, 48, 1) and calib.x.max() > 100


def test_onnx_calibration_methods_differ(float_model, data):
    calib = CalibrationSet.from_split(data["train"], size=64)
    float_onnx = convert.to_onnx_float(float_model)
    blobs = {m: convert.onnx_int8_from_float(float_onnx, calib, m) for m in CalibrationMethod}
    assert len(set(blobs.values())) == 3  # entropy is not min/max in disguise


def test_calibration_sweep(trained):
    from edge_fer.report.calibration_sweep import calibration_sweep

    report = calibration_sweep(trained.run_dir, sizes=[16, 64], methods=["minmax", "percentile"])
    assert len(report["rows"]) == 2 * 3
    assert all(0.2 < r["accuracy"] < 0.7 and r["agreement"] > 0.8 for r in report["rows"])
    assert (trained.run_dir / "calibration" / "calibration.png").stat().st_size > 1000
    assert "| onnx | percentile | 64 |" in (trained.run_dir / "calibration" / "calibration.md").read_text()


def test_missing_and_corrupt_runs(tmp_path, trained):
    with pytest.raises(RunError, match="no such run"):
        export_run(tmp_path / "nope")
    broken = tmp_path / "broken"
    shutil.copytree(trained.run_dir, broken, ignore=shutil.ignore_patterns("qat", "export", "eval", "tb"))
    (broken / "best.keras").write_bytes(b"garbage")
    with pytest.raises(RunError, match="cannot load the model"):
        export_run(broken)
    (broken / "best.keras").unlink()
    with pytest.raises(RunError, match="no best.keras"):
        export_run(broken)
    with pytest.raises(RunError, match="no QAT model"):
        load_qat_model(broken / "qat" / "best.h5")


def test_bad_export_options(trained):
    with pytest.raises(ConfigError, match="ONNX has float32 and int8 only"):
        export_run(trained.run_dir, formats=["onnx"], precisions=["float16"])
    with pytest.raises(ConfigError, match="unknown format"):
        export_run(trained.run_dir, formats=["coreml"])


def test_qat_range_percentile_auto_chooses_on_validation_in_int8(trained, tmp_path, monkeypatch):
    """`edgefer qat` (default `--range-percentile auto`): candidates are tried in int8 on validation
    from the least clipping to the most, up to the first that reaches 98% agreement (else all, and
    the most agreeing is kept), and `edgefer export --int8` of the saved model reproduces the
    chosen candidate's figures.

    The warm-up's activation ranges are widened 16× (as rare outliers in the warm-up faces would),
    so min/max fails the gate and clipping has to win it back."""
    import edge_fer.quantization.pipeline as qat_module

    warm_up = qat_module.warm_up_ranges

    def warm_up_with_outliers(model, batches, **kw):
        n = warm_up(model, batches, **kw)
        for v in model.variables:
            if v.name.split("/")[-1].startswith(("post_activation_m", "output_m")) and v.shape.rank == 0:
                v.assign(v * 16.0)
        return n

    monkeypatch.setattr(qat_module, "warm_up_ranges", warm_up_with_outliers)
    run = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run, ignore=shutil.ignore_patterns("qat", "export", "tb"))
    r = CliRunner().invoke(main, ["qat", str(run), "--epochs", "0"])
    assert r.exit_code == 0, r.output
    assert r.output.count("<- kept") == 1
    q = json.loads((run / "qat" / "qat.json").read_text())
    trials = q["range_trials"]
    tried = [t["percentile"] for t in trials]
    assert q["range_percentile"] == "auto" and tried == list(AUTO_PERCENTILES[:len(tried)])
    assert trials[0]["ranges_shrunk"] == 0 and all(t["ranges_shrunk"] > 0 for t in trials[1:])
    assert len(trials) >= 2 and trials[0]["agreement"] < 0.98  # min/max failed the gate: clipping ran
    assert all(t["agreement"] < 0.98 for t in trials[:-1])  # it went on only while the gate failed
    expected = trials[-1]
    assert expected["agreement"] >= 0.98 and expected["percentile"] is not None, trials  # a clipped one passed
    assert q["range_percentile_chosen"] == expected["percentile"]
    assert q["qat_val_accuracy"] == expected["qat_accuracy"]

    (res,) = export_run(run, formats=["tflite"], precisions=["int8"], source="qat", force=True, out=tmp_path / "x")
    assert res.verification["accuracy"] == pytest.approx(expected["int8_accuracy"], abs=1e-9)
    assert res.verification["agreement"] == pytest.approx(expected["agreement"], abs=1e-9)
    # a refusal after auto no longer suggests auto (the ranges were chosen already), but more QAT epochs
    with pytest.raises(ExportRefused, match="already chose activation ranges.*--epochs 5"):
        export_run(run, formats=["tflite"], precisions=["int8"], source="qat", threshold=1.0, out=tmp_path / "y")


def test_qat_auto_keeps_the_best_epoch_even_when_it_is_the_warm_up(trained, qat_data, tmp_path):
    """A fine-tune that only makes the model worse: the ranges are chosen for, and saved on, the epoch-0
    (warm-up) model that best.h5 holds, not the last epoch left in memory."""
    run = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run, ignore=shutil.ignore_patterns("qat", "export", "tb", "bench"))
    r = qat_run(run, epochs=1, lr=0.5, data=qat_data, verbose=0)  # Adam at 0.5 wrecks the weights in one epoch
    q = json.loads((run / "qat" / "qat.json").read_text())
    assert q["history"][0]["val_accuracy"] < q["qat_val_accuracy_before"] - 0.05, q["history"]
    assert r.best_epoch == 0
    assert q["range_trials"][0]["qat_accuracy"] == pytest.approx(q["qat_val_accuracy_before"], abs=1e-9)


def _weight_ops(path):
    """(name, [activation, weights, bias or None] tensors) for the conv, depthwise and dense ops of a .tflite."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    codes = {3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 9: "FULLY_CONNECTED"}
    for sg in model.subgraphs:
        for i, op in enumerate(sg.operators):
            code = model.operatorCodes[op.opcodeIndex]
            kind = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode))
            if kind:
                ins = list(op.inputs) + [-1]
                yield f"{kind}:{i}", [sg.tensors[t] if t >= 0 else None for t in ins[:3]]


def _kernel_scales(path) -> dict:
    """{op name: number of scales of its int8 weight tensor} for the conv, depthwise and dense ops of a .tflite."""
    return {name: len(np.atleast_1d(t[1].quantization.scale)) for name, t in _weight_ops(path)}


def _bias_scale_ratios(path) -> list[float]:
    """For each conv, depthwise and dense op of a .tflite: max |bias scale / (input scale × weight scale) − 1|."""
    out = []
    for _, (x, w, b) in _weight_ops(path):
        if b is not None:
            want = np.asarray(x.quantization.scale, np.float64) * np.asarray(w.quantization.scale, np.float64)
            out.append(float(np.max(np.abs(np.asarray(b.quantization.scale, np.float64) / want - 1))))
    return out


def test_fix_bias_scales_requantises_an_inconsistent_bias(exported, data):
    """A bias stored at a scale other than input × weight scale (as TF 2.21 writes per-tensor QAT kernels)
    is rewritten at the scale the kernels read, and the model computes what it declared; a consistent
    model comes back byte for byte."""
    from tensorflow.lite.tools import flatbuffer_utils

    blob = (exported / "cnn_int8.tflite").read_bytes()
    assert convert.fix_bias_scales(blob) == (blob, 0)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    sg = model.subgraphs[0]
    op = next(o for o in sg.operators if model.operatorCodes[o.opcodeIndex].builtinCode == 3)
    b = sg.tensors[op.inputs[2]]
    q = np.frombuffer(bytes(bytearray(model.buffers[b.buffer].data)), "<i4")
    # The same real bias declared at 1.1× the scale: values / 1.1 (what the converter's mismatch looks like).
    b.quantization.scale = (np.asarray(b.quantization.scale) * 1.1).astype(np.float32)
    model.buffers[b.buffer].data = np.frombuffer(np.round(q / 1.1).astype("<i4").tobytes(), np.uint8)
    broken = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    repaired, n = convert.fix_bias_scales(broken)
    assert n == 1
    x = data["validation"].x[:200]
    paths = {}
    for name, bytes_ in (("ok", blob), ("broken", broken), ("repaired", repaired)):
        paths[name] = exported.parent / f"bias_{name}.tflite"
        paths[name].write_bytes(bytes_)
    p = {k: open_model(v).predict(x) for k, v in paths.items()}
    assert max(_bias_scale_ratios(paths["repaired"])) < 1e-6 < max(_bias_scale_ratios(paths["broken"]))
    assert np.abs(p["broken"] - p["ok"]).max() > 0.01  # the kernels ignore the declared scale
    assert np.abs(p["repaired"] - p["ok"]).max() <= np.abs(p["broken"] - p["ok"]).max() / 5


def test_qat_per_tensor_then_export_follows_it(trained, tmp_path):
    """`edgefer qat --per-tensor`: every int8 kernel has one scale (smaller file), export follows the QAT
    model's granularity, says so in the metadata, and refuses a contradicting flag in one line."""
    run = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run, ignore=shutil.ignore_patterns("qat", "export", "tb", "bench"))
    r = CliRunner().invoke(main, ["qat", str(run), "--epochs", "0", "--range-percentile", "minmax", "--per-tensor"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "qat" / "qat.json").read_text())["weights"] == "per-tensor"
    results = export_run(run, precisions=["int8"], source="qat", force=True, out=tmp_path / "pt")
    tfl, onnx_ = results
    assert tfl.verification["agreement"] >= 0.97 and onnx_.verification["agreement"] >= 0.97, results
    scales = _kernel_scales(tfl.file)
    assert scales and set(scales.values()) == {1}, scales
    assert max(_bias_scale_ratios(tfl.file)) < 1e-6  # see convert.fix_bias_scales
    assert read_tflite_metadata(Path(tfl.file))["weights"] == "per-tensor"
    (pc,) = export_run(trained.run_dir, formats=["tflite"], precisions=["int8"], source="ptq", force=True,
                       out=tmp_path / "pc")
    assert max(_kernel_scales(pc.file).values()) > 1 and tfl.size_bytes < pc.size_bytes
    assert read_tflite_metadata(Path(pc.file))["weights"] == "per-channel"
    r = CliRunner().invoke(main, ["export", str(run), "--int8", "--per-channel", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists(), r.output
    assert assert_user_error(r).startswith(f"Error: {run}: its QAT model was trained with per-tensor weights")
    (pt,) = export_run(trained.run_dir, formats=["tflite"], precisions=["int8"], source="ptq", per_tensor=True,
                       force=True, out=tmp_path / "ptq_pt")  # post-training int8 per tensor, on request
    assert set(_kernel_scales(pt.file).values()) == {1}


def test_run_whose_data_moved_needs_data_option(trained, subset, tmp_path, monkeypatch):
    """A run recorded with a relative data path, used from another folder: one line naming --data,
    and --data reads the same file (the split redone as in training)."""
    run = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run, ignore=shutil.ignore_patterns("qat", "export", "tb"))
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "data": "../data/fer2013.npz"}))
    monkeypatch.chdir(tmp_path)
    for cmd in (["qat", str(run), "--epochs", "0", "--range-percentile", "minmax"], ["export", str(run), "--int8"],
                ["calibrate", str(run), "--sizes", "16", "--methods", "minmax"]):
        r = CliRunner().invoke(main, cmd)
        assert assert_user_error(r).startswith("Error: ../data/fer2013.npz: no such file or folder "
                                               "(a relative path, read from"), r.output
        assert "--data PATH" in r.output
    r = CliRunner().invoke(main, ["qat", str(run), "--epochs", "0", "--range-percentile", "minmax", "--data", str(subset)])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "qat" / "qat.json").read_text())["float_val_accuracy"] == pytest.approx(
        json.loads((trained.run_dir / "state.json").read_text())["best"]["val_accuracy"], abs=1e-4)


def test_range_percentile_values():
    assert parse_range_percentile("auto") == "auto" and parse_range_percentile("99.9") == 99.9
    assert parse_range_percentile("minmax") is None and parse_range_percentile(None) is None


def test_qat_bad_range_percentile_is_one_line(trained):
    for bad in ("abc", "40", "101"):
        r = CliRunner().invoke(main, ["qat", str(trained.run_dir), "--range-percentile", bad])
        assert_user_error(r, "--range-percentile")
        assert len(r.output.strip().splitlines()) == 1, r.output


# Runs int8 ONNX models on the faces and saves their labels, one row per job: through edge_fer's OnnxModel, or (the
# control) a plain ORT session with default options. Needs only numpy and onnxruntime, so it starts in seconds under
# emulation.
_LABELS = """
import sys, numpy as np
faces, out, *jobs = sys.argv[1:]  # each job: HOW=MODEL
x, labels = np.load(faces), []
for job in jobs:
    how, model = job.split("=", 1)
    if how == "edge_fer":
        from edge_fer.runtime import open_model
        p = open_model(model).predict(x)
    else:
        import onnxruntime as ort
        s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        p = s.run(None, {s.get_inputs()[0].name: x[..., None].astype(np.float32)})[0]
    labels.append(p.argmax(1))
np.save(out, np.stack(labels))
"""


def test_onnx_int8_is_exact_on_x86_without_vnni(exported, data, tmp_path):
    """ORT's fast u8s8 int8 kernels add products in pairs into 16 bits on x86 CPUs without VNNI (AVX2 and the
    first AVX-512 generations), which saturates: the CI machine once measured cnn_int8.onnx at 57.6% agreement.
    A Haswell emulated by qemu-user has no VNNI, so both kernels run here, whatever this machine's CPU. One
    emulated process runs every session (starting Python and ORT under emulation is most of the cost)."""
    qemu = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
    if not qemu:
        pytest.fail("no qemu-x86_64-static: run scripts/setup.sh (it installs Debian's qemu-user-static)")
    model, faces = exported / "cnn_int8.onnx", tmp_path / "faces.npy"
    shipped = Path(__file__).resolve().parents[1] / "edge_fer" / "zoo" / "shipped" / "cnn_int8.onnx"  # from QAT
    x = data["validation"].x[:200]
    np.save(faces, x)
    out = tmp_path / "labels.npy"
    subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-c", _LABELS, str(faces), str(out),
                    f"plain={model}", f"edge_fer={model}", f"edge_fer={shipped}"],
                   cwd=Path(__file__).resolve().parents[1], check=True, capture_output=True, timeout=600)
    plain, exact, exact_shipped = np.load(out)
    here = open_model(model).predict(x).argmax(1)
    agreement = (plain == here).mean()
    assert agreement < 0.95, f"a default ORT session agrees {agreement:.1%} on the emulated Haswell: no saturation"
    assert (exact == here).mean() >= 0.99
    # a shipped model from the QAT route (tf2onnx from TFLite)
    assert (exact_shipped == open_model(shipped).predict(x).argmax(1)).mean() >= 0.99


def test_qat_distils_from_a_teacher_and_the_card_replays_it(trained, fer, tmp_path, monkeypatch):
    """qat --teacher: fine-tuning batches carry (1-w)·labels + w·softmax(log p / T) of the teacher on the
    same augmented faces; qat.json records the teacher; the shipped card's recipe and commands repeat it
    and zoo build passes it back to qat; bad combinations are one clear line with nothing written."""
    import edge_fer.data.pipeline as pipeline
    import edge_fer.zoo.ship as ship
    from edge_fer.training.train import TFLiteTeacher
    from edge_fer.zoo import resolve_model

    run_dir = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run_dir, ignore=shutil.ignore_patterns("qat", "export", "eval", "tb"))
    for args, message in (
            (["--teacher", "no_such_model"], "no_such_model"),
            (["--teacher", "cnn_int8", "--epochs", "0"], "--teacher needs fine-tuning epochs"),
            (["--distill-weight", "0.3"], "need --teacher"),
            (["--teacher", "cnn_int8", "--distill-weight", "2"], "--distill-weight must be in (0, 1]")):
        r = CliRunner().invoke(main, ["qat", str(run_dir), *args])
        assert_user_error(r, message)
        assert len(r.output.strip().splitlines()) == 1, r.output
        assert not (run_dir / "qat").exists()

    seen = []
    real = pipeline.make_dataset

    def spy(*a, **kw):
        if kw.get("training"):
            seen.append(kw.get("teacher"))
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "make_dataset", spy)
    # 1,000 training faces: the teacher runs on each (what is tested is what reaches the batches, not the learning)
    few = write_subset_npz(tmp_path / "few.npz", fer, pick_rows(fer, (1000, 400, 100)))
    r = CliRunner().invoke(main, ["qat", str(run_dir), "--epochs", "1", "--range-percentile", "minmax", "--data",
                                  str(few), "--teacher", "cnn_int8", "--distill-weight", "0.3"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert len(seen) == 1 and seen[0] is not None
    saved = json.loads((run_dir / "qat" / "qat.json").read_text())
    assert (saved["teacher"], saved["distill_weight"], saved["distill_temperature"]) == ("cnn_int8", 0.3, 2.0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, 16)]
    _, t = seen[0](x, y)
    teacher = TFLiteTeacher(resolve_model("cnn_int8"))
    z = np.log(np.clip(teacher.probabilities(x), teacher.floor, 1)) / 2.0
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(t.numpy(), 0.7 * y + 0.3 * soft, atol=1e-5)

    export_run(run_dir, precisions=["int8"], formats=["tflite"], source="qat", force=True)
    card = ship.ship_run(run_dir, dest=tmp_path / "shipped", force=True, threads=[1], min_seconds=0.1)
    assert card["recipe"]["qat"]["teacher"] == "cnn_int8" and card["recipe"]["qat"]["distill_weight"] == 0.3
    qat_cmd = next(c for c in card["commands"] if c.startswith("edgefer qat"))
    assert qat_cmd.endswith("--teacher cnn_int8 --distill-weight 0.3 --distill-temperature 2"), qat_cmd
    assert "distilling from cnn_int8 (weight 0.3, temperature 2)" in (tmp_path / "shipped" / "cnn_int8.md").read_text()

    # zoo build hands the recorded teacher back to qat (train, qat, export and ship stubbed: wiring only)
    import edge_fer.export as export_pkg
    import edge_fer.quantization as quantization
    import edge_fer.training as training

    calls = {}
    monkeypatch.setattr(ship, "get_shipped", lambda name: type("S", (), {"card": card})())
    monkeypatch.setattr(training, "train", lambda cfg, out=None, verbose=2: type("R", (), {"run_dir": run_dir})())
    monkeypatch.setattr(quantization, "qat_run", lambda run, config, **kw: calls.update(config.to_dict()))
    monkeypatch.setattr(export_pkg, "export_run", lambda *a, **kw: None)
    monkeypatch.setattr(ship, "ship_run", lambda *a, **kw: {})
    ship.build("cnn_int8", data_path="fer.npz", out=tmp_path / "rebuilt")
    assert (calls["teacher"], calls["distill_weight"], calls["distill_temperature"]) == ("cnn_int8", 0.3, 2.0)
