"""The model zoo: small int8 models that ship inside the package, each with a model card.

    from edge_fer.zoo import shipped_models, resolve_model
    resolve_model("cnn_int8")            # → the packaged cnn_int8.tflite
    resolve_model("cnn_int8.onnx")       # → its ONNX twin
    resolve_model("runs/x/export/m.tflite")   # a path is a path

A shipped model ``NAME`` is ``shipped/NAME.tflite`` (+ ``.onnx``), each with its metadata sidecar
(``.json``, as written by ``edgefer export``), the model card ``NAME.md`` and its figures
``NAME.card.json`` (data and protocol, PrivateTest metrics, latency, size, and the recipe that
``edgefer zoo build NAME`` replays). Shipping is :func:`edge_fer.zoo.ship.ship_run`; finding a shipped model by
name is :mod:`edge_fer.runtime.shipped` (re-exported here), so the stages below the zoo use it too.
"""

from ..runtime.shipped import (DEFAULT_RULE, SHIPPED_DIR, ShippedModel, default_model, default_shipped, get_shipped,
                               resolve_model, shipped_models, shipped_names)

__all__ = ["DEFAULT_RULE", "SHIPPED_DIR", "ShippedModel", "default_model", "default_shipped", "get_shipped",
           "resolve_model", "shipped_models", "shipped_names"]
