"""`edgefer train --weights PATH`: the study's pretrained ResNet-50 from a weights file downloaded once.

The test makes its own weights file (keras.applications' backbone with weights=None, saved as .h5):
ImageNet's cannot be fetched here. What is checked is the loading path: the file's weights are the
backbone's after building, the run records the file's name and SHA-256, the trained model still takes
raw grey 48×48 pixels, and a file for another architecture is one line naming the file expected.
"""

import hashlib
import json

import numpy as np
import pytest

from conftest import assert_user_error, pick_rows, write_subset_npz

RESNET50_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
RESNET50_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/" + RESNET50_FILE
VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _backbone_file(path, app: str, channels: int = 3):
    """keras.applications' no-top ``app`` with weights=None, its weights saved to ``path``; returns
    {layer name: weights} as saved."""
    from edge_fer._tf import keras

    backbone = getattr(keras().applications, app)(include_top=False, weights=None, input_shape=(48, 48, channels))
    backbone.save_weights(str(path))
    return {layer.name: layer.get_weights() for layer in backbone.layers if layer.weights}


@pytest.mark.slow
def test_train_starts_from_the_weights_file(run, fer, tmp_path, monkeypatch):
    """The CLI path end to end on VGG-16 (13 convolutions: the cheapest keras.applications backbone to
    train here; ResNet-50 loads through the same builder code, checked below without training)."""
    import importlib

    from edge_fer.models import load_model

    weights_file = tmp_path / VGG16_FILE
    saved = _backbone_file(weights_file, "VGG16")
    built = {}

    def create_and_keep(name, **kwargs):  # the model as built, before any training step
        model = real_create(name, **kwargs)
        built.update({layer.name: layer.get_weights() for layer in model.layers if layer.weights})
        return model

    train_module = importlib.import_module("edge_fer.training.train")  # the module, not edge_fer.training's train()
    real_create = train_module.create_model
    monkeypatch.setattr(train_module, "create_model", create_and_keep)
    data = write_subset_npz(tmp_path / "d.npz", fer, pick_rows(fer, (16, 8, 8)))
    result = run("train", "--model", "vgg16", "--weights", weights_file, "--data", data, "--epochs", 1,
                 "--batch-size", 8, "--no-augment", "--patience", 0, "--out", tmp_path / "vgg")
    assert result.exit_code == 0, result.output

    assert len(saved) == 13 and set(saved) <= set(built)  # every convolution of the backbone
    for name, values in saved.items():
        assert all(np.array_equal(a, b) for a, b in zip(values, built[name])), name
    config = json.loads((tmp_path / "vgg" / "config.json").read_text())
    assert config["weights"] == str(weights_file.resolve())
    assert config["weights_sha256"] == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    model = load_model(tmp_path / "vgg" / "best.keras")
    assert model.input_shape == (None, 48, 48, 1)  # grey → RGB and the ImageNet mean are inside the graph
    assert {"grey_to_rgb", "preprocess"} <= {layer.name for layer in model.layers}
    assert not np.array_equal(model.get_layer("block1_conv1").get_weights()[0], saved["block1_conv1"][0])  # trained


@pytest.mark.slow
def test_resnet50_backbone_is_the_files_and_other_files_are_one_line(run, fer, tmp_path):
    from edge_fer.errors import ConfigError
    from edge_fer.models import create_model

    weights_file = tmp_path / RESNET50_FILE
    saved = _backbone_file(weights_file, "ResNet50")
    model = create_model("resnet50", weights=str(weights_file))
    assert len(saved) == 106  # every convolution and BatchNorm of ResNet-50
    for name, values in saved.items():
        assert all(np.array_equal(a, b) for a, b in zip(values, model.get_layer(name).get_weights())), name
    x = np.full((1, 48, 48, 1), 128.0, np.float32)  # caffe-style: a grey 128 face is 128 - mean(B, G, R)
    rgb = model.get_layer("preprocess")(model.get_layer("grey_to_rgb")([x, x, x])).numpy()
    assert np.allclose(rgb[0, 0, 0], [128 - 103.939, 128 - 116.779, 128 - 123.68], atol=1e-3)

    grey = tmp_path / "grey" / RESNET50_FILE
    grey.parent.mkdir()
    _backbone_file(grey, "ResNet50", channels=1)  # a first convolution for 1 channel, not ImageNet's 3
    with pytest.raises(ConfigError, match=f"does not fit resnet50.*Shape mismatch.*{RESNET50_FILE}"):
        create_model("resnet50", weights=str(grey))

    vgg = tmp_path / VGG16_FILE
    _backbone_file(vgg, "VGG16")
    data = write_subset_npz(tmp_path / "d.npz", fer, pick_rows(fer, (8, 8, 8)))
    result = run("train", "--model", "resnet50", "--weights", vgg, "--data", data, "--epochs", 1,
                 "--out", tmp_path / "r50")
    assert_user_error(result, str(vgg), "does not fit resnet50", RESNET50_FILE, RESNET50_URL)
    assert not (tmp_path / "r50").exists()  # nothing half-written


def test_a_file_that_is_no_weights_file_is_one_line(run, tmp_path):
    junk = tmp_path / "weights.h5"
    junk.write_text("not HDF5")
    assert_user_error(run("train", "--model", "resnet50", "--weights", junk, "--epochs", 1),
                      "not a Keras .h5 weights file", RESNET50_FILE, RESNET50_URL)
    assert_user_error(run("train", "--model", "resnet50", "--weights", tmp_path / "missing.h5"),
                      "no such file", RESNET50_FILE)
    assert_user_error(run("train", "--model", "cnn", "--weights", junk), "cnn has no ImageNet weights",
                      "--weights none")


def test_the_card_names_the_weights_file_and_its_hash():
    from edge_fer.zoo.ship import _weights_text

    sha = "ab" * 32
    text = _weights_text({"weights": "/home/me/weights/" + RESNET50_FILE, "weights_sha256": sha})
    assert RESNET50_FILE in text and sha in text and "/home/me" not in text
    assert _weights_text({"weights": None}) == ""


def test_results_page_shows_the_pretrained_recipe_as_its_generator_writes_it():
    """docs/results.md holds the study's pretrained ResNet-50 section verbatim as report/results.py renders it
    (so a regenerated page keeps it), with both commands and the reason the row is not measured."""
    from pathlib import Path

    from edge_fer.report.results import PRETRAINED_RESNET50

    section = "\n".join(PRETRAINED_RESNET50)
    assert section in (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    assert "--model resnet50 --weights imagenet" in section
    assert f"--model resnet50 --weights {RESNET50_FILE}" in section and RESNET50_URL in section
    assert "not measured" in section
