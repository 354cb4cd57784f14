"""Artefact metadata: a JSON sidecar for every export, and the same JSON inside the model file.

The sidecar ``{artefact}.json`` is the source of truth for runtimes and the device bench (class
names in order, input size and preprocessing, quantisation parameters). The same document is
embedded in the model: as a TFLite metadata entry named ``edge_fer`` and as the ONNX
``metadata_props`` key ``edge_fer``. This module writes it; :mod:`edge_fer.runtime.metadata` reads it.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path

from ..labels import CLASSES
from ..runtime.metadata import METADATA_KEY

PREPROCESSING = ("raw grey pixels 0–255 as float32 (N,H,W,C), face crop resized to the input size; "
                 "normalisation happens inside the model")


def tool_versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("edge_fer", "tensorflow", "tf_keras", "tensorflow-model-optimization", "tf2onnx", "onnx",
                 "onnxruntime", "ai-edge-litert"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def base_metadata(*, model_name: str, input_shape, fmt: str, precision: str, source: str, run_dir: Path,
                  train_config: dict, io: str | None, calibration: dict | None) -> dict:
    return {
        "edge_fer_metadata": 1,
        "model": model_name,
        "format": fmt,
        "precision": precision,
        "source": source,
        "classes": list(CLASSES),
        "input": {"shape": [int(s) if s else -1 for s in input_shape], "layout": "NHWC", "color": "grey",
                  "preprocessing": PREPROCESSING, "io_type": io or "float"},
        "run": str(run_dir),
        "train_config": train_config,
        "calibration": calibration,
        "tools": tool_versions(),
    }


def embed_tflite(model_bytes: bytes, meta: dict) -> bytes:
    """Add (or replace) the ``edge_fer`` metadata entry of a TFLite flatbuffer."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import util

    model = util._convert_model_from_bytearray_to_object(model_bytes)
    data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    entry = next((m for m in (model.metadata or []) if m.name.decode() == METADATA_KEY), None)
    if entry is not None:  # replaced in its own buffer: the old text does not stay behind in the file
        model.buffers[entry.buffer].data = data
    else:
        buf = schema.BufferT()
        buf.data = data
        model.buffers.append(buf)
        entry = schema.MetadataT()
        entry.name = METADATA_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    return bytes(util._convert_model_from_object_to_bytearray(model))


def embed_onnx(model_bytes: bytes, meta: dict) -> bytes:
    import onnx

    proto = onnx.load_from_string(model_bytes)
    kept = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    return proto.SerializeToString()
