"""The shipped int8 models: files, cards, name resolution, and the README's main job (bench of the
shipped models on the embedded sample), plus `edgefer zoo ship` on a small trained run."""

import json
import shutil
from pathlib import Path

import pytest

from edge_fer.errors import ConfigError, EdgeFerError
from edge_fer.runtime import open_model
from edge_fer.labels import CLASSES
from edge_fer.zoo import resolve_model, shipped_models

from conftest import assert_user_error


def test_shipped_models_are_small_int8_with_cards():
    models = shipped_models()
    assert models
    for m in models:
        for suffix, path in m.files.items():
            assert path.stat().st_size <= 5 * 2**20
            meta = json.loads(path.with_name(path.name + ".json").read_text())
            assert meta["classes"] == list(CLASSES) and meta["precision"] == "int8"
            assert meta["input"]["shape"][1:] == [48, 48, 1]
        r = open_model(m.files[".tflite"])
        assert r.input_dtype.kind == "i"  # int8 in, int8 out
        card = m.card
        for key in ("int8", "float32"):
            assert 0.14 < card["test"][key]["accuracy"] <= 1.0  # better than chance on PrivateTest
            assert set(card["test"][key]["per_class_f1"]) == set(CLASSES)
        # PrivateTest as the model was trained: FER2013 labels (3,589 faces) or FERPlus majority labels (3,137)
        fer2013_labels = card["labels"]["learned"] == "FER2013"
        assert card["test"]["n_test"] == (3589 if fer2013_labels else 3137)
        assert card["latency_ms"]["tflite"]["1"] > 0
        text = m.card_path.read_text()
        assert "edgefer train --model" in text and "edgefer zoo build" in text and "PrivateTest" in text
        # every card has the same three evaluations, of both formats, on the full data
        ev = card["evaluations"]
        assert {k: ev[k]["n"] for k in ev} == {"fer2013": 3589, "ferplus": 3137, "ckplus48": 927}, m.name
        for e in ev.values():
            assert set(e) >= {"int8", "int8_onnx"} and list(e["int8"]["per_class_recall"]) == list(CLASSES)
        assert ev["ckplus48"]["int8"]["per_class_recall"]["neutral"] is None  # CK+48 has no neutral face
        assert ev["ckplus48"]["int8"]["macro_f1_classes"] == 6
        if fer2013_labels:  # the same faces and labels as the card's own PrivateTest figures
            for fmt in ("int8", "int8_onnx"):
                assert ev["fer2013"][fmt]["accuracy"] == card["test"][fmt]["accuracy"]
                assert ev["fer2013"][fmt]["macro_f1"] == pytest.approx(card["test"][fmt]["macro_f1"], abs=1e-12)
        assert f"**{card['labels']['learned']}** labels. {card['labels']['rule']}" in text
        assert "| FERPlus PrivateTest | FERPlus majority | 3,137 | int8 TFLite | " in text and "Not measured" not in text


def test_readme_states_the_labels_each_shipped_model_learned(tmp_path):
    """README's table is the cards' (python -m edge_fer.zoo.catalogue README.md writes it)."""
    from edge_fer.zoo.catalogue import LABELS_END, LABELS_START, render_labels_table

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme[readme.index(LABELS_START): readme.index(LABELS_END) + len(LABELS_END)]
    models = shipped_models()
    assert block == render_labels_table(models)
    assert all(f"| `{m.name}`" in block for m in models)
    # a card that learned other labels, or measured another figure, no longer matches the README
    d = tmp_path / "shipped"
    shutil.copytree(models[0].path.parent, d)
    card = json.loads((d / f"{models[0].name}.card.json").read_text())
    card["labels"]["learned"] = "FERPlus majority"
    (d / f"{models[0].name}.card.json").write_text(json.dumps(card))
    assert render_labels_table(shipped_models(d)) != block


def test_resolve_model_names_and_paths(tmp_path):
    m = shipped_models()[0]
    assert resolve_model(m.name) == m.files[".tflite"]
    assert resolve_model(f"{m.name}.onnx") == m.files[".onnx"]
    assert resolve_model(m.files[".tflite"]) == m.files[".tflite"]
    with pytest.raises(ConfigError, match="unknown model 'nope'.*" + m.name):
        resolve_model("nope")
    with pytest.raises(EdgeFerError, match="no such model file"):
        resolve_model(tmp_path / "x.tflite")


def test_models_lists_the_shipped(run):
    from edge_fer.zoo import DEFAULT_RULE, default_model

    r = run("models")
    assert r.exit_code == 0
    for m in shipped_models():
        assert m.name in r.output
    default = default_model().stem
    assert [line.split()[0] for line in r.output.splitlines() if line.split()[1:2] == ["*"]] == [default]
    assert f"* the default of `edgefer predict` and Recognizer(): {DEFAULT_RULE}." in r.output
    assert " ".join(run("predict", "--help").output.split()).count(DEFAULT_RULE) == 1


def test_bench_of_a_shipped_name_without_runs_runs_on_the_embedded_sample(run, tmp_path):
    """Without runs a shipped name is a model, measured on the embedded sample (what `make demo` benches, all
    shipped models at once: tests/test_readme.py checks its table and plot)."""
    name = shipped_models()[0].name
    r = run("bench", name, "--threads", "1", "--min-seconds", "0", "--quick", "--json", tmp_path / "b.json")
    assert r.exit_code == 0 and f"{name}.tflite" in r.output, r.output
    records = json.loads((tmp_path / "b.json").read_text())
    assert [(x["model"], x["status"], x["n"]) for x in records] == [(f"{name}.tflite", "ok", 600)], records
    assert "sample" in records[0]["data"]


def test_ship_a_run_with_its_card(trained, exported, subset, tmp_path, monkeypatch):
    import edge_fer.zoo.ship as ship

    run_dir = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run_dir)
    (run_dir / "export").mkdir(exist_ok=True)
    for f in exported.glob("cnn_int8.*"):
        shutil.copy(f, run_dir / "export" / f.name)
    # the fixture exports with force=True, perhaps below the agreement gate: shipping that needs force too
    card = ship.ship_run(run_dir, dest=tmp_path / "shipped", force=True, threads=[1], min_seconds=0.1)
    names = sorted(p.name for p in (tmp_path / "shipped").iterdir())
    assert names == ["cnn_int8.card.json", "cnn_int8.md", "cnn_int8.onnx", "cnn_int8.onnx.json", "cnn_int8.tflite",
                     "cnn_int8.tflite.json"]
    assert card["test"]["n_test"] == 500
    # the card's int8 figures are those of the shipped file on the 500 test faces, measured here independently
    from edge_fer.data import load_fer
    from edge_fer.models import load_model

    test = load_fer(subset)["test"]
    q = open_model(tmp_path / "shipped" / "cnn_int8.tflite").predict(test.x).argmax(1)
    f = load_model(trained.run_dir / "best.keras").predict(test.x[..., None].astype("float32"), verbose=0).argmax(1)
    assert card["test"]["int8"]["agreement_with_float"] == pytest.approx(float((q == f).mean()), abs=2 / 500)
    assert card["test"]["int8"]["accuracy"] == pytest.approx(float((q == test.y).mean()), abs=1e-12)
    assert card["recipe"]["train"]["model_options"] == {"width": 0.5} and "data" not in card["recipe"]["train"]
    assert card["commands"][0].endswith("--epochs 4 --batch-size 64 --lr 0.001 --no-augment -o width=0.5 --out runs/cnn")
    # post-training quantised: the card's recipe has no QAT step, and its commands say so
    assert card["recipe"]["qat"] is None and not any(c.startswith("edgefer qat") for c in card["commands"])
    assert card["commands"][1].startswith("edgefer export runs/cnn --int8 --from ptq"), card["commands"]
    md = (tmp_path / "shipped" / "cnn_int8.md").read_text()
    assert "- No QAT: post-training quantisation" in md and "quantised to int8 post-training" in md
    assert "augmentation off, ReduceLROnPlateau." in md
    assert ship._schedule_text({"schedule": "cosine", "warmup_epochs": 2, "label_smoothing": 0.1, "mixup": 0.2}) == (
        "cosine decay after 2 warm-up epoch(s), label smoothing 0.1, mixup α 0.2")
    side = json.loads((tmp_path / "shipped" / "cnn_int8.tflite.json").read_text())
    assert side["shipped_as"] == "cnn_int8" and side["run"] == "cnn"
    assert [m.name for m in shipped_models(tmp_path / "shipped")] == ["cnn_int8"]
    # the results page from the same run: table row, per-class F1, figures copied, Pareto plot
    from edge_fer.report.results import main as results_main

    (run_dir / "notes.md").write_text("Epoch 1 ran slower than the rest.\n")
    results_main([str(run_dir), "--out", str(tmp_path / "docs" / "results.md"), "--threads", "1",
                  "--min-seconds", "0.1", "--rpi-faces", "16"])
    page = (tmp_path / "docs" / "results.md").read_text()
    acc = card["test"]["int8"]["accuracy"]
    # the run's builder options name the row; the emulated aarch64 Pi gives the same labels
    assert f"| cnn (width=0.5) | 4/4 (short plan) | " in page and f"{acc:.4f}" in page and "neutral" in page
    # a plan shorter than the study's 45 epochs is labelled a budget run, with its recipe
    assert "**Short plan**: 4 epochs instead of the study's 45" in page, page
    assert "Recipe: batch 64, Adam 0.001, ReduceLROnPlateau (flags: `--no-augment -o width=0.5`)." in page
    assert "\nEpoch 1 ran slower than the rest.\n" in page  # the run's notes.md, in its section
    assert "| 16/16 labels, " in page, page.splitlines()[10]
    [row] = json.loads((tmp_path / "docs" / "results" / "results.json").read_text())
    assert row["emulated_pi"]["machine"]["machine"] == "aarch64"
    for fig in ("results/cnn_confusion_matrix.png", "results/cnn_roc.png", "results/cnn_training_curves.png",
                "results/pareto_cpu.png"):
        assert f"({fig})" in page and (tmp_path / "docs" / fig).stat().st_size > 5000, fig
    monkeypatch.setattr(ship, "MAX_SHIPPED_BYTES", 1000)
    with pytest.raises(ConfigError, match="only models ≤ 5 MB ship"):
        ship.ship_run(run_dir, dest=tmp_path / "big")
    shutil.rmtree(run_dir / "export")
    with pytest.raises(EdgeFerError, match="no int8 TFLite export"):
        ship.ship_run(run_dir, dest=tmp_path / "none")
    # its directory gone (measured on another machine, or deleted since), the run keeps its measured
    # row and bench records on the next update; a run never measured is listed as not started
    records = json.loads((tmp_path / "docs" / "results" / "bench.json").read_text())
    shutil.rmtree(run_dir)
    results_main([str(run_dir), str(tmp_path / "vgg16"), "--out", str(tmp_path / "docs" / "results.md"),
                  "--rpi-python", "none"])
    again = (tmp_path / "docs" / "results.md").read_text()
    assert again.splitlines()[10] == page.splitlines()[10] and "- vgg16: not started" in again
    assert json.loads((tmp_path / "docs" / "results" / "bench.json").read_text()) == records


def test_zoo_build_needs_full_data_and_a_shipped_name(run):
    name = shipped_models()[0].name
    r = run("zoo", "build", name)
    assert_user_error(r, "needs --data")
    r = run("zoo", "build", "nope_int8", "--data", "x.csv")
    assert r.exit_code == 2 and "no shipped model 'nope_int8'" in r.output
    r = run("zoo", "ship", "no/such/run")
    assert r.exit_code == 2 and "no such run" in r.output


def test_results_page_checks_the_edge_native_targets():
    from edge_fer.report.results import edge_targets, markdown

    rows = json.loads((Path(__file__).parents[1] / "docs" / "results" / "results.json").read_text())
    [ferlite] = [r for r in rows if r["architecture"] == "ferlite"]
    checks = {what: (v, met) for what, v, _, met in edge_targets(ferlite)}
    assert checks["int8 PrivateTest accuracy"] == (f"{ferlite['test']['int8']['accuracy']:.4f}",
                                                   ferlite["test"]["int8"]["accuracy"] >= 0.72)
    assert checks["int8 TFLite size (KB)"][1] is (ferlite["sizes"]["int8_tflite"] <= 500 * 1024)
    slow = dict(ferlite, latency_ms={"tflite": {"1": 0.26}}, train_seconds=7300.0)
    checks = {what: met for what, _, _, met in edge_targets(slow)}
    assert checks["batch-1 p50, 1 thread (ms)"] is False and checks["training + QAT wall time (h)"] is False
    assert edge_targets(dict(ferlite, latency_ms={}))[2][3] is None  # not measured: neither met nor missed
    page = markdown([slow], "cmd", None)
    assert "| batch-1 p50, 1 thread (ms) | 0.260 | ≤ 0.250 | **no** |" in page
    assert "Edge-native targets" not in markdown([dict(slow, architecture="cnn")], "cmd", None)
