"""Faces → a model's input tensor and its output → float: the one int8 ↔ float conversion of edge_fer.

    x = to_input(faces_uint8, shape=(1, 48, 48, 1))      # float32 (N,48,48,1) raw 0–255 pixels
    q = quantize(x, scale, zero_point, np.int8)          # an integer input
    p = dequantize(q_out, scale, zero_point)             # an integer output → float32

edge_fer's models take raw pixels (normalisation happens inside the graph), so preparing an input is
adding the channel axis, repeating grey to the model's channel count and, for an integer input,
quantising with the input's own (scale, zero point).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError


def quantize(x, scale: float, zero_point: int, dtype) -> np.ndarray:
    """float → integer ``dtype``: round(x / scale + zero_point), clipped to the type's range."""
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float32) / np.float32(scale) + zero_point), info.min,
                   info.max).astype(dtype)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """integer → float32: (q - zero_point) × scale."""
    return (np.asarray(q).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def is_integer(dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def to_input(x, shape) -> np.ndarray:
    """uint8 faces (N,H,W) or float (N,H,W[,C]) → float32 (N,H,W,C) raw pixels for an input of ``shape``
    (NHWC; a size of -1 or 0 is dynamic)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    channels = int(shape[-1])
    if x.shape[-1] != channels and channels > 0:
        x = np.repeat(x, channels, axis=-1)
    want = tuple(int(s) for s in shape[1:3])
    if all(s > 0 for s in want) and tuple(x.shape[1:3]) != want:
        raise ConfigError(f"images are {x.shape[1]}x{x.shape[2]}, the model takes {want[0]}x{want[1]}; "
                          f"resize the faces to {want[0]}x{want[1]}")
    return x.astype(np.float32)


def prepare(x, shape, dtype, quantization=None) -> np.ndarray:
    """Raw pixels → the input tensor of ``shape`` and ``dtype``: quantised with ``quantization`` (scale,
    zero point) for an integer input; an integer input without parameters (a model edge_fer did not
    export) takes the pixels rounded."""
    x = to_input(x, shape)
    if is_integer(dtype):
        scale, zero_point = quantization if quantization and quantization[0] else (1.0, 0)
        return quantize(x, scale, zero_point, dtype)
    return x.astype(dtype)


def to_float(out, dtype, quantization=None) -> np.ndarray:
    """A raw output tensor → float32 (dequantised when the output is integer)."""
    if is_integer(dtype) and quantization and quantization[0]:
        return dequantize(out, *quantization)
    return np.asarray(out).astype(np.float32)
