"""Shipped models and FERPlus: the default model by rule (best FERPlus PrivateTest accuracy within the
edge budget), and a run trained on FERPlus labels shipped for real with its three evaluations."""

import json
import shutil

import pytest

from edge_fer.zoo import SHIPPED_DIR, default_model, shipped_models


def _set_card(d, name, **changes):
    path = d / f"{name}.card.json"
    card = json.loads(path.read_text())
    if "ferplus" in changes:
        card["evaluations"]["ferplus"]["int8"]["accuracy"] = changes["ferplus"]
    if "p50" in changes:
        card["latency_ms"]["tflite"]["1"] = changes["p50"]
    path.write_text(json.dumps(card))


def test_default_model_is_the_best_on_ferplus_within_the_edge_budget(tmp_path):
    # the package, its cards timed together on one machine: no model within 0.25 ms there, so the best on
    # FERPlus of those within 500 KB: the ferlite trained on FERPlus labels
    assert default_model() == SHIPPED_DIR / "ferlite_ferplus_int8.tflite"
    d = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, d)
    assert [m.name for m in shipped_models(d) if m.within_edge_size] == ["ferlite_ferplus_int8", "ferlite_int8"]
    _set_card(d, "ferlite_int8", p50=0.2)  # within the whole budget beats better on FERPlus outside it
    assert default_model(d).stem == "ferlite_int8"
    _set_card(d, "ferlite_ferplus_int8", p50=0.25)  # both within (at the budget is within): better on FERPlus
    assert default_model(d).stem == "ferlite_ferplus_int8"
    _set_card(d, "ferlite_ferplus_int8", ferplus=0.5)
    assert default_model(d).stem == "ferlite_int8"
    # none within 0.25 ms: the best on FERPlus within 500 KB; cnn_int8 is better and fast but 1.7 MB
    for name in ("ferlite_int8", "ferlite_ferplus_int8"):
        _set_card(d, name, p50=0.3)
    _set_card(d, "cnn_int8", ferplus=0.99, p50=0.1)
    assert default_model(d).stem == "ferlite_int8"
    # none within 500 KB: the best on FERPlus of all
    for f in d.glob("ferlite_*"):
        f.unlink()
    assert default_model(d).stem == "cnn_int8"


@pytest.fixture(scope="module")
def ferplus_run(fer_npz, ferplus_csv, tmp_path_factory):
    """A quarter-width ferlite trained 1 epoch on FERPlus vote distributions (full FER2013: FERPlus aligns by
    row), QAT range warm-up only, exported to int8 TFLite and ONNX: about 3 minutes here."""
    from edge_fer.export import export_run
    from edge_fer.quantization import qat_run
    from edge_fer.training import TrainConfig, train

    cfg = TrainConfig(model="ferlite", data=str(fer_npz), ferplus=str(ferplus_csv), label_mode="soft", epochs=1,
                      batch_size=256, augment=False, model_options={"width": 0.25, "blocks": [1, 1, 1]})
    run_dir = train(cfg, tmp_path_factory.mktemp("runs") / "ferlite-fp", verbose=0).run_dir
    qat_run(run_dir, epochs=0, range_percentile=None, verbose=0)  # min/max ranges: no percentile search
    export_run(run_dir, formats=["tflite", "onnx"], precisions=["int8"], force=True)
    return run_dir


def test_ship_a_ferplus_run_with_three_evaluations(ferplus_run, fer_npz, ferplus_csv, tmp_path, run, monkeypatch):
    from edge_fer.report.model_eval import evaluate_model
    from edge_fer.training import TrainConfig
    from edge_fer.zoo.ship import shipped_name

    from conftest import assert_user_error

    ckplus = fer_npz.parent / "ckplus48.npz"
    # a missing CK+48 or FERPlus file: one line, before anything is measured or written
    r = run("zoo", "ship", ferplus_run, "--dest", tmp_path / "x", "--force", "--ckplus", tmp_path / "nope.npz")
    assert_user_error(r, "nope.npz: no such CK+48 file", "--ckplus PATH")
    r = run("zoo", "ship", ferplus_run, "--dest", tmp_path / "x", "--force", "--ferplus", tmp_path / "votes.csv")
    assert_user_error(r, "votes.csv: no such FERPlus votes file", "--ferplus PATH")
    assert not (tmp_path / "x").exists()

    # the FERPlus votes come from the run's config; the name says which labels it learned
    r = run("zoo", "ship", ferplus_run, "--dest", tmp_path / "shipped", "--force", "--ckplus", ckplus, "--threads", 1,
            "--min-seconds", 0.1)
    assert r.exit_code == 0, r.output
    card = json.loads((tmp_path / "shipped" / "ferlite_ferplus_int8.card.json").read_text())
    assert card["name"] == "ferlite_ferplus_int8"
    ev = card["evaluations"]
    assert (f"FERPlus vote distribution labels learned; int8 accuracy FER2013 {ev['fer2013']['int8']['accuracy']:.4f}, "
            f"FERPlus {ev['ferplus']['int8']['accuracy']:.4f}, CK+48 {ev['ckplus48']['int8']['accuracy']:.4f}") in r.output
    assert shipped_name(TrainConfig(model="ferlite")) == "ferlite_int8"
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == [
        f"ferlite_ferplus_int8{s}" for s in (".card.json", ".md", ".onnx", ".onnx.json", ".tflite", ".tflite.json")]
    assert card["labels"]["learned"] == "FERPlus vote distribution" and "probability mode" in card["labels"]["rule"]
    assert card["test"]["n_test"] == 3137  # the run's own test split: FERPlus majority labels
    ev = card["evaluations"]
    assert {k: ev[k]["n"] for k in ev} == {"fer2013": 3589, "ferplus": 3137, "ckplus48": 927}
    assert ev["ferplus"]["left_out"] == {"no majority": 410, "unknown": 10, "not a face": 16, "contempt": 16}
    assert ev["ckplus48"]["left_out"] == {"class contempt": 54}
    # each figure is edgefer evaluate's on the shipped file
    shipped = tmp_path / "shipped" / "ferlite_ferplus_int8"
    direct = {"fer2013": {"data": fer_npz}, "ferplus": {"data": fer_npz, "ferplus": ferplus_csv},
              "ckplus48": {"data": ckplus, "drop": ["contempt"]}}
    for key, kwargs in direct.items():
        for fmt, suffix in (("int8", ".tflite"), ("int8_onnx", ".onnx")):
            e = evaluate_model(f"{shipped}{suffix}", **kwargs)
            assert ev[key][fmt]["accuracy"] == e["accuracy"] and ev[key][fmt]["macro_f1"] == e["macro_present"]["f1"]
            assert ev[key][fmt]["per_class_recall"] == {c: v["recall"] if v["support"] else None
                                                        for c, v in e["per_class"].items()}, (key, fmt)
    assert ev["ferplus"]["int8"]["accuracy"] == pytest.approx(card["test"]["int8"]["accuracy"], abs=1e-12)
    md = (tmp_path / "shipped" / "ferlite_ferplus_int8.md").read_text()
    assert "**FERPlus vote distribution** labels." in md and "## PrivateTest, FERPlus majority labels" in md
    assert f"| CK+48 | CK+48's own, mapped | 927 | int8 ONNX | {ev['ckplus48']['int8_onnx']['accuracy']:.4f} |" in md

    # refresh: from the shipped files alone, the same figures; nothing else of the card changes
    path = tmp_path / "shipped" / "ferlite_ferplus_int8.card.json"
    before = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in before.items() if k not in ("labels", "evaluations")}))
    r = run("zoo", "refresh", "ferlite_ferplus_int8", "--data", fer_npz, "--ferplus", ferplus_csv, "--ckplus",
            tmp_path / "ck.npz", "--dest", tmp_path / "shipped")
    assert_user_error(r, "ck.npz: no such CK+48 file")
    r = run("zoo", "refresh", "ferlite_ferplus_int8", "--data", fer_npz, "--ferplus", ferplus_csv, "--ckplus", ckplus,
            "--dest", tmp_path / "shipped")
    assert r.exit_code == 0, r.output
    assert "ferlite_ferplus_int8 (FERPlus vote distribution labels): int8 accuracy FER2013 " in r.output
    assert json.loads(path.read_text()) == before
    assert (tmp_path / "shipped" / "ferlite_ferplus_int8.md").read_text() == md
    # its recipe rebuilds only with the votes it learned from, and its card's command says so
    assert card["commands"][-1].endswith("edgefer zoo build ferlite_ferplus_int8 --data fer2013.csv --ferplus "
                                         f"{ferplus_csv.name}")
    monkeypatch.setattr("edge_fer.runtime.shipped.SHIPPED_DIR", tmp_path / "shipped")
    r = run("zoo", "build", "ferlite_ferplus_int8", "--data", fer_npz, "--epochs", 1)
    assert_user_error(r, "ferlite_ferplus_int8 learned FERPlus labels (fer2013new.csv): pass --ferplus PATH")


def test_retime_times_shipped_models_together_and_rewrites_only_their_cards(tmp_path, run):
    d = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, d)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = run("zoo", "retime", "ferlite_int8", "mobilenetv3_small_int8", "--dest", d, "--threads", "1",
            "--min-seconds", "0.1")
    assert r.exit_code == 0, r.output
    changed = sorted(p.name for p in d.iterdir() if p.read_bytes() != before[p.name])
    assert changed == ["ferlite_int8.card.json", "ferlite_int8.md", "mobilenetv3_small_int8.card.json",
                       "mobilenetv3_small_int8.md"]
    card = json.loads((d / "ferlite_int8.card.json").read_text())
    assert set(card["latency_ms"]["tflite"]) == {"1"} and card["latency_ms"]["tflite"]["1"] > 0
    assert "timed with mobilenetv3_small_int8" in card["latency_machine"]
    assert f"{card['latency_ms']['tflite']['1']:.3f} ms" in (d / "ferlite_int8.md").read_text()
    r = run("zoo", "retime", "nope_int8", "--dest", d)
    assert r.exit_code == 2 and "no shipped model 'nope_int8'" in r.output
