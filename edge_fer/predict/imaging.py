"""The image work of predict in NumPy: grey conversion, area / bilinear resizing, sub-pixel crops and the
eye-levelling rotation, so that the device install needs no OpenCV (it comes with ``edge_fer[camera]``
for cameras, video files and the Haar detector).

Each function follows the OpenCV call it replaces (named in its docstring), with the same sampling
geometry and borders: pixel centres at integer coordinates, replicated borders, area weights when
shrinking, bilinear weights otherwise, and uint8 results rounded half to even as OpenCV's saturate_cast
does. OpenCV computes some of these in fixed point, so a pixel may differ by one grey level;
tests/test_imaging.py compares both where OpenCV is installed.
"""

from __future__ import annotations

import math

import numpy as np


def rgb_to_grey(rgb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)`` for uint8: OpenCV's 15-bit fixed-point BT.601 weights."""
    rgb = np.asarray(rgb)
    y = rgb[..., 0].astype(np.uint32) * 9798
    y += rgb[..., 1].astype(np.uint32) * 19235
    y += rgb[..., 2].astype(np.uint32) * 3735
    y += 1 << 14
    y >>= 15
    return y.astype(np.uint8)


def _area_weights(n_in: int, n_out: int, n_total: int | None = None, offset: int = 0) -> np.ndarray:
    """(n_out, n_in) weights of an area (box) shrink of ``n_total`` pixels to ``n_out``; the input is the
    slice [offset, offset + n_in) of them (the rest being zero padding)."""
    n_total = n_in if n_total is None else n_total
    s = n_total / n_out
    lo = np.arange(n_out, dtype=np.float64)[:, None] * s
    j = np.arange(offset, offset + n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(lo + s, j + 1) - np.maximum(lo, j), 0.0, None)
    return overlap / s


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of OpenCV's INTER_LINEAR resize (half-pixel centres, clamped at the edges)."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    return _sample_weights(src, n_in)


def _sample_weights(src: np.ndarray, n_in: int) -> np.ndarray:
    """(len(src), n_in) bilinear weights of sampling at coordinates ``src``, borders replicated."""
    x0 = np.floor(src)
    f = src - x0
    x0 = x0.astype(np.int64)
    w = np.zeros((len(src), n_in), np.float64)
    rows = np.arange(len(src))
    np.add.at(w, (rows, np.clip(x0, 0, n_in - 1)), 1.0 - f)
    np.add.at(w, (rows, np.clip(x0 + 1, 0, n_in - 1)), f)
    return w


def _area_up_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of OpenCV's INTER_AREA when enlarging (a sharpened bilinear)."""
    scale = n_in / n_out
    d = np.arange(n_out, dtype=np.float64)
    sx = np.floor(d * scale)
    f = (d + 1) - (sx + 1) / scale
    f = np.where(f <= 0, 0.0, f - np.floor(f))
    return _sample_weights(sx + f, n_in)


def _apply(img: np.ndarray, wy: np.ndarray, wx: np.ndarray, out_dtype, half_up: bool = False) -> np.ndarray:
    """rows mixed by ``wy``, columns by ``wx``; uint8 results rounded (half to even, or half up as OpenCV's
    integer-ratio area shrink does) and clipped."""
    a = np.asarray(img, np.float32)
    tmp = np.tensordot(wy.astype(np.float32), a, axes=(1, 0))           # (oh, w, ...)
    out = np.moveaxis(np.tensordot(tmp, wx.astype(np.float32), axes=(1, 1)), -1, 1)  # (oh, ow, ...)
    if out_dtype == np.uint8:
        return np.clip(np.floor(out + 0.5) if half_up else np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(out_dtype)


def resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(img, (width, height), interpolation=INTER_AREA)`` when shrinking, INTER_LINEAR when
    enlarging (per axis); (H,W) or (H,W,C)."""
    h, w = img.shape[:2]
    wy = _area_weights(h, height) if height < h else _linear_weights(h, height)
    wx = _area_weights(w, width) if width < w else _linear_weights(w, width)
    return _apply(img, wy, wx, img.dtype, half_up=h % height == 0 and w % width == 0)


def letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, int, int, int]:
    """The frame padded with black to a centred square and area-shrunk to size×size, as
    ``cv2.copyMakeBorder(..., BORDER_CONSTANT, 0)`` then ``cv2.resize(..., INTER_AREA)``; the padding is
    never materialised. Returns (square uint8, side, pad_x, pad_y)."""
    h, w = rgb.shape[:2]
    side = max(h, w)
    pad_x, pad_y = (side - w) // 2, (side - h) // 2
    if side < size:  # enlarging (a tiny frame): pad for real
        square = np.zeros((side, side) + rgb.shape[2:], rgb.dtype)
        square[pad_y:pad_y + h, pad_x:pad_x + w] = rgb
        wy = wx = _area_up_weights(side, size)
        return _apply(square, wy, wx, np.uint8), side, pad_x, pad_y
    wy = _area_weights(h, size, side, pad_y)
    wx = _area_weights(w, size, side, pad_x)
    return _apply(rgb, wy, wx, np.uint8, half_up=side % size == 0), side, pad_x, pad_y


def rect_subpix(img: np.ndarray, width: int, height: int, cx: float, cy: float) -> np.ndarray:
    """``cv2.getRectSubPix(img, (width, height), (cx, cy))``: a bilinear, border-replicated crop whose centre
    is (cx, cy)."""
    ys = cy - (height - 1) * 0.5 + np.arange(height, dtype=np.float64)
    xs = cx - (width - 1) * 0.5 + np.arange(width, dtype=np.float64)
    # two taps per axis, gathered: a dense (out, in) product over a camera frame is mostly zeros, and a
    # small BLAS call on a busy core can cost tens of milliseconds
    a = np.asarray(img, np.float32)
    rows = _lerp(a, ys, axis=0)
    out = _lerp(rows, xs, axis=1)
    if img.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(img.dtype)


def _lerp(a: np.ndarray, src: np.ndarray, axis: int) -> np.ndarray:
    """``a`` sampled bilinearly along ``axis`` at coordinates ``src``, borders replicated (float32)."""
    x0 = np.floor(src)
    f = (src - x0).astype(np.float32)
    x0 = x0.astype(np.int64)
    n = a.shape[axis]
    lo, hi = np.take(a, np.clip(x0, 0, n - 1), axis=axis), np.take(a, np.clip(x0 + 1, 0, n - 1), axis=axis)
    shape = [1] * a.ndim
    shape[axis] = len(src)
    f = f.reshape(shape)
    return (np.float32(1) - f) * lo + f * hi


def rotate(img: np.ndarray, angle: float) -> np.ndarray:
    """``cv2.warpAffine(img, cv2.getRotationMatrix2D(centre, angle, 1), size, INTER_LINEAR, BORDER_REPLICATE)``
    about the image centre (w/2, h/2); ``angle`` in degrees, counter-clockwise; grey uint8 (H,W).
    As OpenCV: source coordinates in steps of 1/32 pixel and 15-bit fixed-point bilinear weights."""
    h, w = img.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    a, b = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # the forward map is [[a, b], [-b, a]] about the centre; each output pixel samples its inverse
    m = np.array([[a, -b, cx - a * cx + b * cy], [b, a, cy - b * cx - a * cy]])
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    sx = (np.rint((m[0, 1] * ys + m[0, 2]) * 1024).astype(np.int64)[:, None] + 16
          + np.rint(m[0, 0] * xs * 1024).astype(np.int64)[None, :]) >> 5
    sy = (np.rint((m[1, 1] * ys + m[1, 2]) * 1024).astype(np.int64)[:, None] + 16
          + np.rint(m[1, 0] * xs * 1024).astype(np.int64)[None, :]) >> 5
    fx, fy = (sx & 31) / 32.0, (sy & 31) / 32.0
    x0, y0 = sx >> 5, sy >> 5
    weights = np.rint(np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]) * 32768).astype(np.int64)
    top = np.argmax(weights, axis=0)[None]  # the weights sum to exactly 1 << 15: the largest takes the remainder
    np.put_along_axis(weights, top, np.take_along_axis(weights, top, 0) - (weights.sum(0) - 32768)[None], 0)
    xa, xb = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    ya, yb = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    src = np.asarray(img, np.int64)
    out = (weights[0] * src[ya, xa] + weights[1] * src[ya, xb] + weights[2] * src[yb, xa]
           + weights[3] * src[yb, xb] + (1 << 14)) >> 15
    return np.clip(out, 0, 255).astype(np.uint8)
