"""Run exported artefacts: TFLite (ai-edge-litert, else tflite-runtime) and ONNX (onnxruntime).

Both runners take raw pixels — uint8 (N,48,48) faces or float32 (N,H,W,C) — quantise them with
the model's own input parameters when the input is integer, and return float32 probabilities.

    runner = open_runner("export/cnn_int8.tflite", threads=2)
    probs = runner.predict(faces_uint8)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..device_bench.runner import ort_session
from ..errors import ConfigError, EdgeFerError


def one_line(error: BaseException) -> str:
    """A runtime's or converter's error message whole, on one line (ORT's and LiteRT's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise EdgeFerError("no TFLite runtime; pip install ai-edge-litert (or tflite-runtime)") from None


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * scale


def to_input(x: np.ndarray, shape) -> np.ndarray:
    """uint8 faces (N,H,W) or float (N,H,W[,C]) → float32 (N,H,W,C) raw 0–255 pixels for ``shape``."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    channels = int(shape[-1])
    if x.shape[-1] != channels:
        x = np.repeat(x, channels, axis=-1)
    if tuple(x.shape[1:3]) != tuple(int(s) for s in shape[1:3]):
        raise ConfigError(f"images are {x.shape[1]}x{x.shape[2]}, the model takes {shape[1]}x{shape[2]}")
    return x.astype(np.float32)


class Runner:
    """What every runner offers: prepare (raw pixels → input tensor), invoke, postprocess, predict."""

    static_batch: int | None = None

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, classes) for raw pixels, in batches (padded for a fixed-batch model)."""
        prepared = self.prepare(x)
        step = self.static_batch or batch_size
        outs = []
        for i in range(0, len(prepared), step):
            chunk = prepared[i:i + step]
            n = len(chunk)
            if self.static_batch and n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            outs.append(self.postprocess(self.invoke(chunk))[:n])
        return np.concatenate(outs)


class TFLiteRunner(Runner):
    def __init__(self, path: str | Path, *, threads: int | None = None, xnnpack: bool = True):
        Interpreter, self.runtime = _interpreter_class()
        kwargs = {"model_path": str(path), "num_threads": threads}
        if not xnnpack:
            from ai_edge_litert.interpreter import OpResolverType

            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = Interpreter(**kwargs)
        except (ValueError, RuntimeError) as e:
            raise EdgeFerError(f"{path}: not a loadable TFLite model ({one_line(e)})") from None
        self.path = Path(path)
        self._inp = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(s) for s in self._inp["shape"])
        self.input_dtype = np.dtype(self._inp["dtype"])
        self.static_batch = int(self._inp["shape_signature"][0]) if self._inp["shape_signature"][0] > 0 else None
        self._batch = None
        from .._tf import quiet_native_stderr

        with quiet_native_stderr():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line, once
            self._allocate(self.static_batch or 1)

    def _allocate(self, batch: int) -> None:
        if batch != self._batch:
            if self.static_batch is None:
                self.interpreter.resize_tensor_input(self._inp["index"], [batch, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._batch = batch

    @property
    def input_quantization(self):
        return self._inp["quantization"]

    @property
    def output_quantization(self):
        return self._out["quantization"]

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Raw pixels → the model's input tensor (quantised when the input is integer)."""
        x = to_input(x, self.input_shape)
        if self.input_dtype.kind in "iu":
            scale, zp = self._inp["quantization"]
            return quantize(x, scale, zp, self.input_dtype)
        return x.astype(self.input_dtype)

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        """One call on an already prepared batch; returns the raw output tensor."""
        self._allocate(len(prepared))
        self.interpreter.set_tensor(self._inp["index"], prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out["index"])

    def postprocess(self, out: np.ndarray) -> np.ndarray:
        if np.dtype(self._out["dtype"]).kind in "iu":
            scale, zp = self._out["quantization"]
            return dequantize(out, scale, zp)
        return out.astype(np.float32)

    def ops(self) -> list[dict]:
        """Every op of the graph with the dtypes of its inputs and outputs."""
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        out = []
        for op in self.interpreter._get_ops_details():
            dt = lambda idx: [np.dtype(tensors[i]["dtype"]).name for i in idx if i >= 0 and i in tensors]
            out.append({"op": op["op_name"], "inputs": dt(op["inputs"]), "outputs": dt(op["outputs"])})
        return out


class OnnxRunner(Runner):
    def __init__(self, path: str | Path, *, threads: int | None = None, providers=None):
        from .._tf import quiet_onnxruntime

        ort = quiet_onnxruntime()  # no warning lines in raw colour codes on stderr; errors arrive as exceptions
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        try:  # exact int8 kernels on x86 CPUs without VNNI (see device_bench.runner.EXACT_INT8)
            self.session = ort_session(path, so, providers or ["CPUExecutionProvider"])
        except Exception as e:
            raise EdgeFerError(f"{path}: not a loadable ONNX model ({one_line(e)})") from None
        self.path = Path(path)
        self.runtime = f"onnxruntime {ort.__version__}"
        i = self.session.get_inputs()[0]
        self._input_name = i.name
        self.input_shape = tuple(s if isinstance(s, int) else -1 for s in i.shape)
        self.static_batch = self.input_shape[0] if self.input_shape[0] > 0 else None
        self.input_dtype = np.dtype(np.float32)

    def prepare(self, x):
        return to_input(x, self.input_shape)

    def invoke(self, prepared):
        return self.session.run(None, {self._input_name: prepared})[0]

    def postprocess(self, out):
        return out.astype(np.float32)


def open_runner(path: str | Path, **kwargs):
    p = Path(path)
    if not p.is_file():
        raise EdgeFerError(f"{p}: no such model file; export one with `edgefer export`")
    if p.suffix == ".tflite":
        return TFLiteRunner(p, **kwargs)
    if p.suffix == ".onnx":
        return OnnxRunner(p, **kwargs)
    raise ConfigError(f"{p}: unknown model format {p.suffix!r}; expected .tflite or .onnx")
