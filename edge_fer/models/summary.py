"""Loading saved models and counting what a model costs (parameters, multiply-accumulates)."""

from __future__ import annotations

from pathlib import Path

from .._tf import keras as _keras
from ..errors import RunError


def load_model(path: str | Path, *, compile: bool = False):
    """Load a ``.keras`` model saved by edge_fer (custom layers included).

    Without ``compile`` (inference, export, QAT), the weights are read from a copy of the archive's
    ``model.weights.h5`` on disk: tf_keras reads them through the zip member, and on Python 3.11 every
    backward seek there re-reads the member from its start, so loading grows with the square of the file
    (a saved ResNet-50, 95 MB: 18.5 s that way, 2.4 s this way; docs/benchmarks.md). ``compile=True``
    (resuming training, which needs the optimizer's state) goes through tf_keras.
    """
    from .layers import CUSTOM_OBJECTS
    from .keras_metrics import METRIC_OBJECTS

    p = Path(path)
    if not p.is_file():
        raise RunError(f"{p}: no such model file; train a model first with `edgefer train`")
    keras = _keras()
    objects = {**CUSTOM_OBJECTS, **METRIC_OBJECTS}
    try:
        if compile:
            return keras.models.load_model(p, custom_objects=objects, compile=True)
        return _load_uncompiled(p, objects)
    except Exception as e:  # a truncated or foreign file
        raise RunError(f"{p}: cannot load the model ({type(e).__name__}: {str(e)[:160]}); retrain or restore it") from None


def _load_uncompiled(path: Path, objects: dict):
    """What ``keras.models.load_model(path, compile=False)`` returns, from the archive's config and its
    weights file extracted to a temporary folder."""
    import json
    import tempfile
    import zipfile

    keras = _keras()
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="edgefer-load-") as tmp:
        config = json.loads(archive.read("config.json"))
        config["compile_config"] = None
        model = keras.saving.deserialize_keras_object(config, custom_objects=objects)
        model.load_weights(archive.extract("model.weights.h5", tmp))
    return model


def count_macs(model) -> int:
    """Multiply-accumulates of one forward pass (convolutions and dense layers; batch 1)."""
    keras = _keras()
    L = keras.layers
    total = 0
    for layer in model.layers:
        if isinstance(layer, L.DepthwiseConv2D):
            _, h, w, _ = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * layer.input_shape[-1] * layer.depth_multiplier
        elif isinstance(layer, L.Conv2D):
            _, h, w, c_out = layer.output_shape
            kh, kw = layer.kernel_size
            total += h * w * kh * kw * (layer.input_shape[-1] // layer.groups) * c_out
        elif isinstance(layer, L.Dense):
            total += int(layer.input_shape[-1]) * layer.units
    return int(total)


def describe_model(model) -> dict:
    return {
        "name": model.name,
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "input_shape": list(model.input_shape[1:]),
        "layers": len(model.layers),
    }
