"""Every shipped model scored against its card: the embedded sample's PrivateTest faces exactly (every
run), full PrivateTest within the card's tolerance (slow); a corrupted model misses its card's figure.
Plus `edgefer zoo build` run for real on a tiny recipe."""

import json
import shutil

import numpy as np
import pytest

from edge_fer.data import load_fer
from edge_fer.runtime import open_model
from edge_fer.labels import CLASSES
from edge_fer.zoo import shipped_models

MODELS = [(m, suffix) for m in shipped_models() for suffix in m.files]
IDS = [f"{m.name}{suffix}" for m, suffix in MODELS]
CARD_KEY = {".tflite": "int8", ".onnx": "int8_onnx"}


def score(path, split) -> dict:
    """What the card records for a model on a split: faces right, accuracy, confusion matrix."""
    pred = open_model(path).predict(split.x).argmax(1)
    cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(cm, (split.y, pred), 1)
    return {"correct": int(np.trace(cm)), "accuracy": float(np.trace(cm) / len(split)), "confusion_matrix": cm.tolist()}


@pytest.fixture(scope="module")
def sample_test():
    return load_fer(None)["test"]


@pytest.fixture(scope="module")
def full_test(fer_npz):
    return load_fer(fer_npz)["test"]


@pytest.fixture(scope="module")
def full_ferplus_test(fer_npz, ferplus_csv):
    return load_fer(fer_npz, ferplus=ferplus_csv)["test"]


def test_every_shipped_model_and_format_is_graded():
    assert {m.name for m, _ in MODELS} >= {"cnn_int8", "ferlite_int8", "mobilenetv3_small_int8"}
    assert all(len(m.files) == 2 for m in shipped_models())  # each has its ONNX twin


@pytest.mark.parametrize("model, suffix", MODELS, ids=IDS)
def test_shipped_card_states_the_size_of_the_file_as_shipped(model, suffix):
    # the file carries its metadata: the card's size is the file's, not the export's before embedding
    assert model.card["size_bytes"][suffix[1:]] == model.files[suffix].stat().st_size


@pytest.mark.parametrize("model, suffix", MODELS, ids=IDS)
def test_shipped_model_scores_its_card_figure_on_the_embedded_sample(model, suffix, sample_test):
    stated = model.card["sample"]
    assert stated["data"] == "embedded" and stated["split"] == "test" and stated["n"] == len(sample_test) == 600
    got = score(model.files[suffix], sample_test)
    assert got == stated[CARD_KEY[suffix]], (model.name, suffix, got["correct"], stated[CARD_KEY[suffix]]["correct"])


@pytest.mark.slow
@pytest.mark.parametrize("model, suffix", MODELS, ids=IDS)
def test_shipped_model_scores_its_card_figure_on_full_privatetest(model, suffix, request):
    # a model that learned FERPlus labels is reported on the PrivateTest faces with a FERPlus majority label
    ferplus = model.card["labels"]["learned"].startswith("FERPlus")
    test = request.getfixturevalue("full_ferplus_test" if ferplus else "full_test")
    card = model.card["test"]
    assert len(test) == card["n_test"] == (3137 if ferplus else 3589)
    tolerance = card["accuracy_tolerance"]
    assert 0 < tolerance <= 0.002  # a few faces of 3,589, no more
    got = score(model.files[suffix], test)["accuracy"]
    assert abs(got - card[CARD_KEY[suffix]]["accuracy"]) <= tolerance, (model.name, suffix, got)


def _flip_largest_weights(path, dest) -> None:
    """Copy ``path`` to ``dest`` with every byte of its largest weight tensor inverted."""
    blob = path.read_bytes()
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    else:
        from edge_fer.runtime.tflite import interpreter_class

        interpreter = interpreter_class()[0](model_path=str(path))
        weights = []
        for d in interpreter.get_tensor_details():
            try:
                weights.append(interpreter.get_tensor(d["index"]))
            except ValueError:  # not a constant
                continue
    raw = max(weights, key=lambda w: w.nbytes).tobytes()
    at = blob.find(raw)
    assert at >= 0 and len(raw) > 1000 and blob.find(raw, at + 1) < 0, "largest weight buffer not found once"
    dest.write_bytes(blob[:at] + bytes(b ^ 0xFF for b in raw) + blob[at + len(raw):])


@pytest.mark.parametrize("suffix", [".tflite", ".onnx"])
def test_a_corrupted_model_misses_its_card_figure(suffix, sample_test, tmp_path):
    model = next(m for m in shipped_models() if m.name == "cnn_int8")
    broken = tmp_path / f"cnn_int8{suffix}"
    _flip_largest_weights(model.files[suffix], broken)
    assert broken.stat().st_size == model.files[suffix].stat().st_size
    assert score(broken, sample_test)["correct"] != model.card["sample"][CARD_KEY[suffix]]["correct"]


@pytest.mark.slow
def test_zoo_build_runs_a_recorded_recipe_end_to_end(fer, tmp_path, monkeypatch):
    """`edgefer zoo build` for real: a shipped card whose recipe is shrunk (a quarter-width cnn, one
    QAT epoch) is rebuilt from 900 faces with --epochs 1 into OUT/shipped, with a card of its own."""
    import edge_fer.runtime.shipped as shipped_lookup
    import edge_fer.zoo.ship as ship
    from click.testing import CliRunner

    from conftest import pick_rows, write_subset_npz
    from edge_fer.cli import main

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    source = next(m for m in shipped_models() if m.name == "cnn_int8")
    for f in source.files.values():
        shutil.copy(f, shipped / f.name)
    card = json.loads(source.card_path.with_name("cnn_int8.card.json").read_text())
    card["recipe"]["train"]["model_options"] = {"width": 0.25}
    card["recipe"]["qat"].update(epochs=1, warmup_batches=2)
    (shipped / "cnn_int8.card.json").write_text(json.dumps(card))
    monkeypatch.setattr(shipped_lookup, "SHIPPED_DIR", shipped)  # where edge_fer.zoo finds its models
    measure_card = ship.measure_card  # latency: one short timing per format (its figures are not what this test reads)
    monkeypatch.setattr(ship, "measure_card", lambda *a, **k: measure_card(*a, **{**k, "threads": (1,), "min_seconds": 0.1}))
    data = write_subset_npz(tmp_path / "small.npz", fer, pick_rows(fer, 300))
    monkeypatch.chdir(tmp_path)

    r = CliRunner().invoke(main, ["zoo", "build", "cnn_int8", "--data", str(data), "--epochs", "1", "--out", "zb"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = tmp_path / "zb" / "shipped"
    assert sorted(p.name for p in out.iterdir()) == ["cnn_int8.card.json", "cnn_int8.md", "cnn_int8.onnx",
                                                     "cnn_int8.onnx.json", "cnn_int8.tflite", "cnn_int8.tflite.json"]
    assert all(f"wrote zb/shipped/{n}\n" in r.output for n in ("cnn_int8.tflite", "cnn_int8.card.json")), r.output
    built = json.loads((out / "cnn_int8.card.json").read_text())
    # the recipe it replayed, with --epochs 1; the run it trained and fine-tuned
    recipe = {**card["recipe"]["train"], "epochs": 1}
    assert {k: built["recipe"]["train"].get(k) for k in recipe} == recipe
    assert built["recipe"]["qat"]["epochs"] == 1 and built["recipe"]["export"]["source"] == "qat"
    assert built["training"]["epochs_trained"] == 1 and built["training"]["finished"]
    assert built["source_run"] == "zb" and (tmp_path / "zb" / "qat" / "qat.json").is_file()
    assert built["commands"][0].startswith("edgefer train --model cnn --data fer2013.csv --epochs 1 ")
    assert "-o width=0.25" in built["commands"][0]
    # its own figures: 300 PrivateTest faces, and the embedded sample's, which its model reproduces exactly
    assert built["test"]["n_test"] == 300 and "small.npz" in json.dumps(built["test"]["data"])
    assert built["test"]["accuracy_tolerance"] == card["test"]["accuracy_tolerance"]
    assert set(built["latency_ms"]) == {"tflite", "onnx"} and built["latency_ms"]["tflite"]["1"] > 0
    sample = load_fer(None)["test"]
    for suffix in (".tflite", ".onnx"):
        assert score(out / f"cnn_int8{suffix}", sample) == built["sample"][CARD_KEY[suffix]]
    assert built["size_bytes"]["tflite"] == (out / "cnn_int8.tflite").stat().st_size < source.files[".tflite"].stat().st_size
    side = json.loads((out / "cnn_int8.tflite.json").read_text())
    assert side["shipped_as"] == "cnn_int8" and side["precision"] == "int8" and side["source"] == "qat"
    assert "# cnn_int8 — cnn, int8" in (out / "cnn_int8.md").read_text()
    assert (shipped / "cnn_int8.card.json").read_text() == json.dumps(card)  # the recipe it read is untouched
