"""Read the edge_fer metadata of a model file: its ``{file}.json`` sidecar, else the copy embedded in it.

    meta, source = read_metadata(Path("cnn_int8.tflite"))   # source: "sidecar", "embedded" or "none"

The document (class names in order, input size and preprocessing, quantisation parameters, the run's
config) is written by :mod:`edge_fer.export.metadata`; it is embedded as the TFLite metadata entry
``edge_fer`` and as the ONNX ``metadata_props`` key ``edge_fer``. No TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, RuntimeMissing

METADATA_KEY = "edge_fer"


def read_tflite_metadata(path: Path) -> dict | None:
    try:  # LiteRT carries TFLite's flatbuffer schema
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise RuntimeMissing("reading a .tflite file's metadata needs ai-edge-litert; pip install ai-edge-litert") \
            from None

    data = Path(path).read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if m.Name().decode() == METADATA_KEY:
            return json.loads(model.Buffers(m.Buffer()).DataAsNumpy().tobytes())
    return None


def read_onnx_metadata(path: Path) -> dict | None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return json.loads(p.value)
    return None


def read_metadata(path: Path) -> tuple[dict | None, str]:
    """The edge_fer metadata of a model file and where it came from: ``(meta, "sidecar")`` from
    ``{file}.json``, else ``(meta, "embedded")`` from inside the .tflite/.onnx, else ``(None, "none")``
    for a model edge_fer did not export. A file that is not a readable model is a DataError."""
    path = Path(path)
    side = Path(str(path) + ".json")
    if side.is_file():
        try:
            return json.loads(side.read_text()), "sidecar"
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{side}: unreadable metadata sidecar ({e}); re-export the model or delete the "
                            "sidecar to use the metadata embedded in the model") from None
    readers = {".tflite": read_tflite_metadata, ".onnx": read_onnx_metadata}
    if path.suffix not in readers:
        raise DataError(f"{path}: not a model file (expected .tflite or .onnx, got {path.suffix or 'no suffix'!r})")
    try:
        meta = readers[path.suffix](path)
    except RuntimeMissing:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: its embedded edge_fer metadata is unreadable ({e}); re-export the model") from None
    except Exception as e:  # flatbuffer / protobuf parse errors have no common base class
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: not a readable {path.suffix[1:].upper() if path.suffix == '.onnx' else 'TFLite'} "
                        f"model ({type(e).__name__}: {first}); pass a model file written by a converter") from None
    return (meta, "embedded") if meta is not None else (None, "none")

