"""The one table of export formats (format, precision, whether it needs calibration).

``edgefer export`` picks its artefacts from it (:func:`select_formats`) and names them with
:func:`artefact_name`. A format's file suffix is ``runtime.MODEL_SUFFIXES``'s (``.tflite``/``.onnx``):
loading, benchmarking and the shipped models go by the suffix alone, and runtime owns that list.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..runtime import MODEL_SUFFIXES


@dataclass(frozen=True)
class ExportFormat:
    format: str  # "tflite" | "onnx"
    precision: str  # "float32" | "float16" | "dynamic" | "int8"
    needs_calibration: bool
    description: str

    @property
    def suffix(self) -> str:
        return f".{self.format}"


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("tflite", "float32", False, "TFLite float32"),
    ExportFormat("tflite", "float16", False, "TFLite float16 weights (float compute)"),
    ExportFormat("tflite", "dynamic", False, "TFLite dynamic-range: int8 weights, float activations"),
    ExportFormat("tflite", "int8", True, "TFLite full-integer int8"),
    ExportFormat("tflite", "int16x8", True, "TFLite 16-bit activations, int8 weights (float I/O)"),
    ExportFormat("onnx", "float32", False, "ONNX float32 (tf2onnx)"),
    ExportFormat("onnx", "int8", True, "ONNX int8, QDQ format"),
)
FORMAT_NAMES = tuple(s.lstrip(".") for s in MODEL_SUFFIXES)  # ("tflite", "onnx")
PRECISIONS = ("float32", "float16", "dynamic", "int8", "int16x8")


def select_formats(formats: list[str], precisions: list[str]) -> list[ExportFormat]:
    bad_f = [f for f in formats if f not in FORMAT_NAMES]
    if bad_f:
        raise ConfigError(f"unknown format(s) {', '.join(bad_f)}; expected {', '.join(FORMAT_NAMES)}")
    bad_p = [p for p in precisions if p not in PRECISIONS]
    if bad_p:
        raise ConfigError(f"unknown precision(s) {', '.join(bad_p)}; expected {', '.join(PRECISIONS)}")
    chosen = [f for f in FORMATS if f.format in formats and f.precision in precisions]
    if not chosen:
        raise ConfigError(f"no export matches formats {formats} and precisions {precisions}; "
                          "ONNX has float32 and int8 only")
    return chosen


def artefact_name(model: str, precision: str, source: str, suffix: str) -> str:
    """``{model}_{precision}.{ext}``; int8 from quantisation-aware training gets ``_qat``."""
    return f"{model}_{precision}{'_qat' if source == 'qat' else ''}{suffix}"
