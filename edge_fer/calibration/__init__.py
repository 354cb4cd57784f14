"""Calibration data for int8 quantisation: one source for TFLite and ONNX Runtime.

    from edge_fer.calibration import CalibrationSet, CalibrationMethod
    calib = CalibrationSet.from_split(data["train"], size=256, seed=0)     # class-balanced
    calib = CalibrationSet.from_folder("my_faces/", size=256)               # the user's own faces
    converter.representative_dataset = calib.tflite_dataset
    reader = calib.ort_reader("image")                                      # CalibrationDataReader

A calibration set holds raw 0–255 pixels, float32 (N,H,W,C), exactly what every edge_fer model
takes, so the same faces calibrate both runtimes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import IMAGE_SIZE, NUM_CLASSES

MIN_SIZE = 8


class CalibrationMethod(str, enum.Enum):
    """ONNX Runtime's static-quantisation calibration methods (TFLite always uses min/max)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"

    @classmethod
    def parse(cls, value: str) -> "CalibrationMethod":
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise ConfigError(f"unknown calibration method {value!r}; expected one of "
                              f"{', '.join(m.value for m in cls)}") from None

    def ort(self):
        from onnxruntime.quantization import CalibrationMethod as OrtMethod

        return {"minmax": OrtMethod.MinMax, "entropy": OrtMethod.Entropy,
                "percentile": OrtMethod.Percentile}[self.value]


@dataclass
class CalibrationSet:
    x: np.ndarray  # float32 (N, H, W, C), raw 0–255 pixels
    source: str

    def __post_init__(self) -> None:
        x = self.x
        if x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise DataError(f"calibration data from {self.source} has shape {x.shape}; expected (N, H, W, 1 or 3)")
        if len(x) == 0:
            raise DataError(f"calibration set from {self.source} is empty; give at least {MIN_SIZE} faces")
        if len(x) < MIN_SIZE:
            raise DataError(f"calibration set from {self.source} has {len(x)} face(s); "
                            f"int8 ranges need at least {MIN_SIZE} (256 or more recommended)")

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def from_split(cls, split, *, size: int = 256, seed: int = 0, channels: int = 1) -> "CalibrationSet":
        """A class-balanced sample of ``split`` (as equal per class as the class sizes allow)."""
        if size < MIN_SIZE:
            raise ConfigError(f"calibration size {size} is too small; use at least {MIN_SIZE} (256 recommended)")
        rng = np.random.default_rng(seed)
        by_class = [rng.permutation(np.flatnonzero(split.y == c)) for c in range(NUM_CLASSES)]
        picked, quota = [], size
        # Round-robin over classes until the quota is met: small classes give all they have.
        depth = 0
        while quota > 0 and any(depth < len(b) for b in by_class):
            for b in by_class:
                if depth < len(b) and quota > 0:
                    picked.append(b[depth])
                    quota -= 1
            depth += 1
        idx = np.array(sorted(picked))
        x = split.x[idx].astype(np.float32)[..., None]
        if channels != 1:
            x = np.repeat(x, channels, axis=-1)
        return cls(x, f"{split.name} split, class-balanced, seed {seed}")

    @classmethod
    def from_folder(cls, folder: str | Path, *, size: int = 256, seed: int = 0, channels: int = 1,
                    image_size: int = IMAGE_SIZE) -> "CalibrationSet":
        """Face crops from a folder (any depth), converted to grey ``image_size``² like the training data."""
        from PIL import Image, UnidentifiedImageError

        from ..data.loaders import IMAGE_SUFFIXES

        root = Path(folder).expanduser()
        if not root.is_dir():
            raise DataError(f"{root}: no such folder; --calib-data takes a folder of face images")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root}: no images (.jpg/.png/…) found; the calibration set is empty")
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.permutation(len(files))[:size])]
        faces = []
        for f in files:
            try:
                with Image.open(f) as im:
                    faces.append(np.asarray(im.convert("L").resize((image_size, image_size), Image.BILINEAR)))
            except (UnidentifiedImageError, OSError) as e:
                raise DataError(f"{f}: unreadable image ({type(e).__name__}); remove it from the calibration folder") from None
        x = np.stack(faces).astype(np.float32)[..., None]
        if channels != 1:
            x = np.repeat(x, channels, axis=-1)
        return cls(x, str(root))

    @classmethod
    def from_source(cls, folder, split, *, size: int = 256, seed: int = 0, channels: int = 1) -> "CalibrationSet":
        """The user's folder of faces when given, else a class-balanced sample of ``split``."""
        if folder:
            return cls.from_folder(folder, size=size, seed=seed, channels=channels)
        return cls.from_split(split, size=size, seed=seed, channels=channels)

    def check_model_input(self, shape) -> None:
        if tuple(self.x.shape[1:]) != tuple(int(s) for s in shape[1:]):
            raise DataError(f"calibration images are {self.x.shape[1:]} but the model takes {tuple(shape[1:])}; "
                            "use faces of the model's input size")

    def tflite_dataset(self):
        """TFLiteConverter.representative_dataset: one face per call."""
        for i in range(len(self.x)):
            yield [self.x[i:i + 1]]

    def ort_reader(self, input_name: str, *, batch: int = 1):
        """An onnxruntime CalibrationDataReader over the same faces."""
        from onnxruntime.quantization import CalibrationDataReader

        x = self.x

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(x):
                    return None
                chunk = x[self.i:self.i + batch]
                self.i += batch
                return {input_name: chunk}

            def rewind(self):
                self.i = 0

        return Reader()


__all__ = ["CalibrationMethod", "CalibrationSet", "MIN_SIZE"]
