"""Every registered builder: builds, (None, 7) softmax output, fixed names, save → load identical."""

import numpy as np
import pytest

from edge_fer.errors import ConfigError
from edge_fer.models import count_macs, create_model, get_spec, load_model, model_names, resolve_name

ALL = model_names()


def test_registry_has_the_study_architectures():
    assert {"cnn", "resnet50", "vgg16", "mobilenetv3_small", "mobilenetv3_large"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_builder_output_and_save_load(name, tmp_path):
    model = create_model(name)
    assert model.output_shape == (None, 7)
    assert model.input_shape == (None, 48, 48, 1)
    assert model.get_layer("image") is not None and model.get_layer("predictions").dtype == "float32"
    assert model.get_layer("logits").units == 7
    x = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype(np.float32)
    y = model(x, training=False).numpy()  # eagerly: predict() would trace the model first
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    y2 = load_model(path)(x, training=False).numpy()
    np.testing.assert_array_equal(y, y2)


@pytest.mark.parametrize("name", ALL)
def test_builder_overrides(name):
    model = create_model(name, input_shape=(64, 64, 1), classes=5, dropout=0.1)
    assert model.output_shape == (None, 5) and model.input_shape == (None, 64, 64, 1)


def test_layer_names_are_fixed():
    a, b = create_model("mobilenetv3_small"), create_model("mobilenetv3_small")
    assert [l.name for l in a.layers] == [l.name for l in b.layers]
    assert "expanded_conv_3/squeeze_excite/Mul" in {l.name for l in a.layers}


def test_width_changes_cost():
    small, full = create_model("cnn", width=0.5), create_model("cnn")
    assert small.count_params() < full.count_params() / 3
    assert count_macs(small) < count_macs(full) / 3


def test_mobilenetv3_stem_stride_keeps_more_resolution():
    """stem_stride=1: 48×48 faces end at 3×3 instead of 2×2, the same weights at ~2.6× the MACs."""
    s2, s1 = create_model("mobilenetv3_small"), create_model("mobilenetv3_small", stem_stride=1)
    assert s1.count_params() == s2.count_params()
    assert s1.get_layer("conv_1").output.shape[1:3] == (3, 3) and s2.get_layer("conv_1").output.shape[1:3] == (2, 2)
    assert 2 * count_macs(s2) < count_macs(s1) < 3 * count_macs(s2)
    with pytest.raises(ConfigError, match="stem_stride must be 1 or 2"):
        create_model("mobilenetv3_large", stem_stride=4)


def test_vgg16_batch_norm_variant():
    """-o batch_norm=true: the same 13 convolutions under keras.applications' names, each with BatchNorm."""
    plain, bn = create_model("vgg16"), create_model("vgg16", batch_norm=True)
    convs = lambda m: [(l.name, l.kernel.shape) for l in m.layers if type(l).__name__ == "Conv2D"]
    assert convs(plain) == convs(bn) and len(convs(bn)) == 13
    assert sum(type(l).__name__ == "BatchNormalization" for l in bn.layers) == 13
    assert not any(type(l).__name__ == "BatchNormalization" for l in plain.layers)
    with pytest.raises(ConfigError, match="ImageNet weights exist for plain VGG-16 only"):
        create_model("vgg16", batch_norm=True, weights="imagenet")


def test_macs_of_a_known_layer():
    from edge_fer._tf import keras

    k = keras()
    inp = k.Input((8, 8, 3))
    m = k.Model(inp, k.layers.Dense(5)(k.layers.Flatten()(k.layers.Conv2D(4, 3, padding="same")(inp))))
    assert count_macs(m) == 8 * 8 * 3 * 3 * 3 * 4 + 8 * 8 * 4 * 5


def test_aliases_and_unknown_names():
    assert resolve_name("mobilenetv3") == "mobilenetv3_small"
    assert resolve_name("MobileNetV3-Large") == "mobilenetv3_large"
    with pytest.raises(ConfigError, match="did you mean resnet50"):
        resolve_name("resnet5")
    with pytest.raises(ConfigError, match="takes no option.*depth"):
        create_model("cnn", depth=3)


@pytest.mark.parametrize("kwargs, message", [
    ({"dropout": 1.5}, "dropout must be in"),
    ({"input_shape": (48, 48)}, "input_shape must be"),
    ({"input_shape": (48, 48, 2)}, "2 input channels"),
    ({"classes": 1}, "classes must be"),
])
def test_bad_builder_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_model("cnn", **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"blocks": (1, 2)}, "three counts"),
    ({"stem_strides": (2, 2)}, "stem_strides must be"),
])
def test_bad_ferlite_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        create_model("ferlite", **kwargs)


def test_imagenet_weights_are_explained():
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        create_model("cnn", weights="imagenet")
    with pytest.raises(ConfigError, match="--weights none"):
        create_model("mobilenetv3_small", weights="imagenet")
    assert get_spec("resnet50").imagenet and not get_spec("cnn").imagenet


def test_imagenet_download_failure_is_one_clear_error(monkeypatch):
    """Offline, keras cannot fetch the weights; the user gets the reason and the fix, not a traceback."""
    from edge_fer._tf import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: network unreachable")

    monkeypatch.setattr(keras().utils, "get_file", offline)
    monkeypatch.setattr("tf_keras.src.applications.resnet.data_utils.get_file", offline)
    with pytest.raises(ConfigError, match="could not download ImageNet weights.*--weights PATH.*"
                                          "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5.*--weights none"):
        create_model("resnet50", weights="imagenet")
