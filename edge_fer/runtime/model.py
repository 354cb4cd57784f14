"""What every loaded model offers, whatever runs it: prepare faces, invoke, read floats, run batches.

    model = open_model("export/cnn_int8.tflite", threads=2)   # edge_fer.runtime.open_model
    probs = model.predict(faces_uint8)                         # (N, classes) float32
    raw = model.outputs(faces_uint8)                           # (N, classes) as stored (int8 for int8 I/O)
    prepared = model.prepare(faces_uint8[:1]); model.invoke(prepared)   # what a latency loop times

Subclasses (:mod:`.tflite`, :mod:`.onnx_model`) set the input's shape, dtype and quantisation and
implement :meth:`Model.invoke`; everything else is here, once.
"""

from __future__ import annotations

import numpy as np

from . import tensors


class Model:
    """A loaded model. ``input_shape``: NHWC with -1 for a dynamic size; ``static_batch``: the batch a
    fixed-batch model takes (None when dynamic); ``init_ms``: load time."""

    runtime = "unknown"
    version = "unknown"
    path = None
    init_ms = 0.0
    input_shape: tuple = (-1, -1, -1, -1)
    input_dtype = np.dtype(np.float32)
    input_quantization = None
    output_dtype = np.dtype(np.float32)
    output_quantization = None
    static_batch: int | None = None

    @property
    def label(self) -> str:
        """The runtime and its version, e.g. ``onnxruntime 1.22.0``."""
        return f"{self.runtime} {self.version}"

    @property
    def max_batch(self) -> int | None:
        return self.static_batch

    def input_spec(self) -> tuple[list[int], np.dtype]:
        """(H, W, C) of one input, dynamic sizes as 1, and the input dtype."""
        return [s if s > 0 else 1 for s in self.input_shape[1:]], self.input_dtype

    def prepare(self, x) -> np.ndarray:
        """Raw pixels (uint8 (N,H,W) faces or float (N,H,W[,C])) → the model's input tensor."""
        return tensors.prepare(x, self.input_shape, self.input_dtype, self.input_quantization)

    def invoke(self, prepared: np.ndarray) -> np.ndarray:
        """One call on an already prepared batch; the raw output tensor."""
        raise NotImplementedError

    def postprocess(self, out) -> np.ndarray:
        """A raw output → float32 (dequantised for an integer output)."""
        return tensors.to_float(out, self.output_dtype, self.output_quantization)

    def outputs(self, x, batch: int = 64) -> np.ndarray:
        """Raw outputs (N, classes) as stored, on raw pixels, in batches; a fixed-batch model's last batch is
        padded with its last face."""
        step = self.static_batch or batch
        out = []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if self.static_batch and n < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
            out.append(np.array(self.invoke(self.prepare(chunk)))[:n])
        return np.concatenate(out)

    def predict(self, x, batch_size: int = 64) -> np.ndarray:
        """Probabilities (N, classes) as float32 on raw pixels."""
        return self.postprocess(self.outputs(x, batch_size))

    def labels(self, x, batch: int = 64) -> np.ndarray:
        """The predicted class index of each face."""
        return self.outputs(x, batch).argmax(axis=1)

    def random_input(self, batch: int = 1, seed: int = 0) -> np.ndarray:
        """A prepared input of the model's own shape and type, for timing a model whose inputs nobody has
        described: uniform over 0–255 for a float input, over the type's range for an integer one."""
        shape, dtype = self.input_spec()
        dtype, rng = np.dtype(dtype), np.random.default_rng(seed)
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(info.min, info.max, size=(batch, *shape), endpoint=True).astype(dtype)
        return rng.uniform(0, 255, size=(batch, *shape)).astype(dtype)


def one_line(error: BaseException) -> str:
    """A runtime's or converter's error message whole, on one line (ORT's and LiteRT's span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def package_version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:
        return "unknown"
