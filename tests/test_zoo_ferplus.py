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
    # the package: ferlite_int8 is the only model within 500 KB and 0.25 ms, and it is the best on FERPlus
    assert default_model() == SHIPPED_DIR / "ferlite_int8.tflite"
    d = tmp_path / "shipped"
    shutil.copytree(SHIPPED_DIR, d)
    for f in d.glob("ferlite_int8.*"):  # a second model within the budget: ferlite's files under another name
        shutil.copy(f, d / f.name.replace("ferlite_int8", "other_int8"))
    ferlite = shipped_models(d)[1].accuracy_on("ferplus")
    assert [m.name for m in shipped_models(d) if m.within_edge_budget] == ["ferlite_int8", "other_int8"]
    _set_card(d, "other_int8", ferplus=ferlite - 0.01)
    assert default_model(d).stem == "ferlite_int8"
    _set_card(d, "other_int8", ferplus=ferlite + 0.01)  # better on FERPlus: it becomes the default
    assert default_model(d).stem == "other_int8"
    # better on FERPlus but slower than the budget: out; cnn_int8 is better than both but 1.7 MB
    _set_card(d, "other_int8", p50=0.26)
    _set_card(d, "cnn_int8", ferplus=0.99, p50=0.1)
    assert default_model(d).stem == "ferlite_int8"
    _set_card(d, "other_int8", p50=0.25)  # at the budget is within it
    assert default_model(d).stem == "other_int8"
    # none within the budget: the best on FERPlus of all
    for name in ("ferlite_int8", "other_int8"):
        _set_card(d, name, p50=0.3)
    assert default_model(d).stem == "cnn_int8"
