"""Run exported models: load a .tflite or .onnx with its metadata, prepare faces, run batches, time them.

    from edge_fer.runtime import open_model, read_metadata
    model = open_model("export/cnn_int8.tflite", threads=2)   # TFLiteModel / OnnxModel
    probs = model.predict(faces_uint8)                         # (N, classes) float32
    meta, source = read_metadata(model.path)

Numpy and one runtime each (ai-edge-litert or tflite-runtime for .tflite, onnxruntime for .onnx), no
TensorFlow and no other part of edge_fer but its errors: every stage imports it, and the benchmark
script copied to a device (:mod:`.device`, bundled by :func:`.standalone.build_device_script`) is
made of it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, ModelError
from .latency import latency_stats, measure_latency
from .metadata import read_metadata
from .model import Model, one_line
from .tensors import dequantize, quantize

MODEL_SUFFIXES = (".tflite", ".onnx")


def open_model(path, threads: int | None = None, *, xnnpack: bool = True, accelerator: str = "cpu",
               cpu_fallback: bool = False, delegate: str | None = None) -> Model:
    """A .tflite (LiteRT) or .onnx (ONNX Runtime) model, on the CPU or with ``accelerator="gpu"`` on LiteRT's
    GPU accelerator, a TFLite ``delegate`` library, or ONNX Runtime's GPU provider."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: no such model file; export one with `edgefer export`")
    if p.suffix not in MODEL_SUFFIXES:
        raise ConfigError(f"{p}: unknown model format {p.suffix!r}; expected .tflite or .onnx")
    if p.suffix == ".onnx":
        from .onnx_model import OnnxModel

        return OnnxModel(p, threads, gpu=accelerator == "gpu", cpu_fallback=cpu_fallback)
    from .tflite import DelegateModel, LiteRTGpuModel, TFLiteModel

    if accelerator == "gpu":
        if delegate:
            return DelegateModel(p, threads, delegate=delegate)
        return LiteRTGpuModel(p, threads or 1, cpu_fallback=cpu_fallback)
    return TFLiteModel(p, threads, xnnpack)


__all__ = ["MODEL_SUFFIXES", "Model", "dequantize", "latency_stats", "measure_latency", "one_line", "open_model", "quantize",
           "read_metadata"]
