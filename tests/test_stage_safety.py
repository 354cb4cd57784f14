"""Stages that must not destroy or silently consume work: `edgefer zoo ship` never replaces, deletes or
writes into the package by default and refuses a below-gate export; an interrupted `edgefer qat` is never
used by `edgefer export`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import edge_fer.zoo.ship as ship
from edge_fer.errors import RunError
from edge_fer.labels import CLASSES
from edge_fer.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def _row(acc):
    return {"accuracy": acc, "macro_precision": acc, "macro_recall": acc, "macro_f1": acc, "roc_auc_macro": 0.8,
            "per_class_f1": {c: acc for c in CLASSES}, "loss": 1.0, "confusion_matrix": []}


def _fake_measure(run_dir, tflite, onnx, **kw):
    """What ship's measurement returns, without TensorFlow: these tests are about the files."""
    test = {"data": "subset.npz", "n_test": 10, "float32": _row(0.5), "int8": {**_row(0.5), "agreement_with_float": 1.0}}
    if onnx is not None:
        test["int8_onnx"] = {**_row(0.5), "agreement_with_float": 1.0}
    sample = {"data": "embedded", "split": "test", "n": 10, "int8": {"correct": 5, "accuracy": 0.5,
                                                                    "confusion_matrix": []}}
    return {"test": test, "sample": sample, "latency_ms": {"tflite": {"1": 0.5}}, "latency_machine": "cpu",
            "bench_records": []}


CALIBRATION = {"temperature": 1.0, "fitted_on": "PublicTest", "reported_on": "PrivateTest", "ece_before": 0.05,
               "ece_after": 0.05}


def _run(tmp_path, formats=(".tflite", ".onnx"), status="ok", agreement=0.995, tag=b"new") -> Path:
    """A run folder holding a PTQ int8 export (placeholder model bytes ``tag``) with its sidecars."""
    run_dir = tmp_path / "cnn"
    (run_dir / "export").mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(TrainConfig(model="cnn", epochs=2).to_dict()))
    for suffix in formats:
        p = run_dir / "export" / f"cnn_int8{suffix}"
        p.write_bytes(tag + suffix.encode())
        meta = {"source": "ptq", "status": status, "precision": "int8", "verification": {"agreement": agreement},
                "input": {"shape": [None, 48, 48, 1], "io_type": "int8"}}
        Path(str(p) + ".json").write_text(json.dumps(meta))
    return run_dir


@pytest.fixture
def package(tmp_path, monkeypatch):
    """The package's shipped folder (a copy here), holding a shipped cnn_int8 in both formats."""
    pkg = tmp_path / "site-packages" / "edge_fer" / "zoo" / "shipped"
    pkg.mkdir(parents=True)
    for f in ("cnn_int8.tflite", "cnn_int8.tflite.json", "cnn_int8.onnx", "cnn_int8.onnx.json", "cnn_int8.md",
              "cnn_int8.card.json"):
        (pkg / f).write_text(f"shipped {f}")
    monkeypatch.setattr(ship, "SHIPPED_DIR", pkg)
    monkeypatch.setattr(ship, "measure_card", _fake_measure)
    monkeypatch.setattr(ship, "calibration_figures", lambda model, data: CALIBRATION)  # needs a real model
    monkeypatch.setattr(ship, "evaluation_figures", lambda tflite, onnx, **kw: dict.fromkeys(ship.EVALUATIONS))  # too
    monkeypatch.setattr(ship, "embed_metadata", lambda model_bytes, suffix, meta: model_bytes)  # placeholder bytes
    return pkg


def _contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_ship_writes_into_the_run_by_default_never_into_the_package(tmp_path, package):
    before = _contents(package)
    run_dir = _run(tmp_path)
    card = ship.ship_run(run_dir, threads=[1], min_seconds=0.1)
    assert _contents(package) == before  # the packaged cnn_int8 untouched
    dest = run_dir / "shipped"
    assert card["dest"] == str(dest) and card["replaced"] == []
    assert sorted(Path(f).name for f in card["files"]) == sorted(p.name for p in dest.iterdir()) == [
        "cnn_int8.card.json", "cnn_int8.md", "cnn_int8.onnx", "cnn_int8.onnx.json", "cnn_int8.tflite",
        "cnn_int8.tflite.json"]
    assert (dest / "cnn_int8.tflite").read_bytes() == b"new.tflite"


def test_ship_replaces_nothing_without_overwrite(tmp_path, package):
    run_dir = _run(tmp_path)
    ship.ship_run(run_dir, threads=[1])
    first = _contents(run_dir / "shipped")
    _run(tmp_path, tag=b"second")
    with pytest.raises(RunError, match=r"a model named 'cnn_int8' is there already \(cnn_int8.tflite, .*"
                                       r"nothing was written; pick another --name or --dest, or pass --overwrite"):
        ship.ship_run(run_dir, threads=[1])
    assert _contents(run_dir / "shipped") == first
    # the package's own folder, named explicitly: the shipped model is not replaced either
    before = _contents(package)
    with pytest.raises(RunError, match="a model shipped with edge_fer named 'cnn_int8' is there already"):
        ship.ship_run(run_dir, dest=package, threads=[1])
    assert _contents(package) == before
    # asked for: replaced, and said so
    card = ship.ship_run(run_dir, overwrite=True, threads=[1])
    assert (run_dir / "shipped" / "cnn_int8.tflite").read_bytes() == b"second.tflite"
    assert sorted(card["replaced"]) == sorted(card["files"])
    # another name beside it leaves it alone
    ship.ship_run(run_dir, name="cnn_small_int8", threads=[1])
    assert (run_dir / "shipped" / "cnn_int8.tflite").read_bytes() == b"second.tflite"


def test_ship_never_deletes_a_format_the_run_lacks(tmp_path, package):
    run_dir = _run(tmp_path, formats=(".tflite",))
    before = _contents(package)
    with pytest.raises(RunError, match=r"cnn_int8.onnx: shipping 'cnn_int8' without .onnx would leave the model "
                                       r"it replaces beside the new one, and nothing is deleted"):
        ship.ship_run(run_dir, dest=package, overwrite=True, threads=[1])
    assert _contents(package) == before
    card = ship.ship_run(run_dir, threads=[1])  # a folder without an ONNX twin: TFLite alone ships
    assert sorted(Path(f).name for f in card["files"]) == ["cnn_int8.card.json", "cnn_int8.md", "cnn_int8.tflite",
                                                           "cnn_int8.tflite.json"]


def test_ship_refuses_a_below_gate_export_unless_forced(tmp_path, package):
    run_dir = _run(tmp_path, status="forced", agreement=0.9)
    with pytest.raises(RunError, match=r"cnn_int8.tflite: was written with --force below the export's agreement "
                                       r"gate \(agreement 90.00%, gate 98%\); nothing was shipped; pass --force"):
        ship.ship_run(run_dir, threads=[1])
    assert not (run_dir / "shipped").exists()
    card = ship.ship_run(run_dir, force=True, threads=[1])
    assert card["export"]["status"] == "forced"
    assert any(c.startswith("edgefer zoo ship") and c.endswith("--force") for c in card["commands"])


def test_zoo_ship_cli_says_what_it_wrote_where(tmp_path, package, run):
    run_dir = _run(tmp_path)
    r = run("zoo", "ship", run_dir, "--threads", "1")
    assert r.exit_code == 0, r.output
    dest = run_dir / "shipped"
    assert f"wrote {dest / 'cnn_int8.tflite'}\n" in r.output and f"wrote {dest / 'cnn_int8.card.json'}\n" in r.output
    r = run("zoo", "ship", run_dir, "--threads", "1", "--overwrite")
    assert r.exit_code == 0 and f"replaced {dest / 'cnn_int8.onnx'}\n" in r.output, r.output
    assert "default RUN/shipped" in run("zoo", "ship", "--help").output


def test_zoo_ship_refusal_is_one_line(tmp_path):
    run_dir = _run(tmp_path)
    (run_dir / "shipped").mkdir()
    (run_dir / "shipped" / "cnn_int8.tflite").write_bytes(b"mine")
    p = subprocess.run([sys.executable, "-m", "edge_fer.cli", "zoo", "ship", str(run_dir)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("Error: ") and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--overwrite" in p.stderr and (run_dir / "shipped" / "cnn_int8.tflite").read_bytes() == b"mine"


def test_zoo_build_refreshes_only_its_own_folder(tmp_path, monkeypatch):
    """zoo build ships into OUT/shipped, which running the same build again refreshes; a --dest given
    to it keeps ship's refusal to replace. Its recipe exports with --force, so it ships what that wrote."""
    import edge_fer.export as export_pkg
    import edge_fer.quantization as quantization
    import edge_fer.training as training
    from edge_fer.zoo import shipped_models

    card = next(m for m in shipped_models() if m.name == "cnn_int8").card  # FER2013 labels: no --ferplus needed
    run_dir = tmp_path / "rebuilt"
    calls = []
    monkeypatch.setattr(ship, "get_shipped", lambda name: type("S", (), {"card": card})())
    monkeypatch.setattr(training, "train", lambda cfg, out=None, verbose=2: type("R", (), {"run_dir": run_dir})())
    monkeypatch.setattr(quantization, "qat_run", lambda run, *config, **kw: None)
    monkeypatch.setattr(export_pkg, "export_run", lambda *a, **kw: None)
    monkeypatch.setattr(ship, "ship_run", lambda run, **kw: calls.append(kw) or {})
    ship.build(card["name"], data_path="fer.npz", out=run_dir)
    ship.build(card["name"], data_path="fer.npz", out=run_dir, dest=tmp_path / "elsewhere")
    assert [(c["dest"], c["overwrite"], c["force"]) for c in calls] == [
        (run_dir / "shipped", True, True), (tmp_path / "elsewhere", False, True)]


# ------------------------------------------------------------------------------------------- qat → export

def test_an_interrupted_qat_is_never_exported(trained, tmp_path, monkeypatch):
    import shutil

    import edge_fer.quantization.pipeline as qat
    from edge_fer.export import export_run

    run_dir = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run_dir, ignore=shutil.ignore_patterns("qat", "export"))
    cheap = dict(epochs=0, warmup_batches=2, batch_size=16)

    def interrupt(*a, **kw):
        raise KeyboardInterrupt

    # Ctrl-C while the ranges are chosen (after the model was first saved)
    monkeypatch.setattr(qat, "choose_range_percentile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        qat.qat_run(run_dir, **cheap)
    assert not (run_dir / "qat" / "qat.json").exists()
    with pytest.raises(RunError, match=r"an `edgefer qat` run did not finish \(best.partial.h5 left behind\); run "
                                       rf"`edgefer qat {run_dir}` again to finish it, or export --from ptq$"):
        export_run(run_dir, precisions=["int8"], formats=["tflite"])
    # what an interrupted qat left before: best.h5 without qat.json — refused too, by the same check
    (run_dir / "qat" / "best.partial.h5").rename(run_dir / "qat" / "best.h5")
    with pytest.raises(RunError, match=r"best.h5: QAT did not finish \(no qat.json beside it\); run `edgefer qat"):
        export_run(run_dir, precisions=["int8"], formats=["tflite"], source="qat")

    # run again, it finishes; interrupted once more, the finished model and its qat.json stay as they were
    monkeypatch.undo()
    qat.qat_run(run_dir, range_percentile="minmax", **cheap)
    assert qat.unfinished_qat(run_dir) is None and not (run_dir / "qat" / "best.partial.h5").exists()
    saved = json.loads((run_dir / "qat" / "qat.json").read_text())["config"]  # the resolved QATConfig
    assert (saved["range_percentile"], saved["epochs"], saved["warmup_batches"], saved["lr"]) == (None, 0, 2, 1e-4)
    finished = {f: (run_dir / "qat" / f).read_bytes() for f in ("best.h5", "qat.json")}
    monkeypatch.setattr(qat, "choose_range_percentile", interrupt)
    with pytest.raises(KeyboardInterrupt):
        qat.qat_run(run_dir, **cheap)
    assert {f: (run_dir / "qat" / f).read_bytes() for f in ("best.h5", "qat.json")} == finished
    with pytest.raises(RunError, match=r"or delete .*best.partial.h5 to use the QAT model that finished before it"):
        export_run(run_dir, precisions=["int8"], formats=["tflite"])
