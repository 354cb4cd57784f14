"""TFLite and ONNX export with verification, metadata and atomic writes (running them: :mod:`edge_fer.runtime`)."""

import importlib

# Imported on first use: reading ExportConfig (the CLI's defaults) or the format table loads no NumPy.
_WHERE = {"ExportConfig": ".config", "ExportRefused": ".exporter", "ExportResult": ".exporter",
          "export_run": ".exporter", "FORMATS": ".formats", "ExportFormat": ".formats", "artefact_name": ".formats"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
