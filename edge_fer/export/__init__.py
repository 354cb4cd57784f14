"""TFLite and ONNX export with verification, metadata and atomic writes; runtimes to run them."""

from .exporter import ExportRefused, ExportResult, export_run
from .formats import FORMATS, ExportFormat, artefact_name
from .runtimes import OnnxRunner, TFLiteRunner, open_runner

__all__ = ["FORMATS", "ExportFormat", "ExportRefused", "ExportResult", "OnnxRunner", "TFLiteRunner",
           "artefact_name", "export_run", "open_runner"]
