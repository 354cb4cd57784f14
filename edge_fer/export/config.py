"""Export defaults in one place: what ``edgefer export`` writes unless told otherwise.

    from edge_fer.export import ExportConfig, export_run
    export_run("runs/cnn", ExportConfig(precisions=("int8",)))

The CLI's defaults are read from here and the resolved config is saved in the export's
``export_report.json`` (key ``config``), where ``edgefer zoo ship`` reads it for the model card.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..quantization.config import AGREEMENT_GATE
from ..quantization.converter import IO_TYPES
from .formats import FORMAT_NAMES, select_formats

SOURCES = ("auto", "qat", "ptq")


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = FORMAT_NAMES
    precisions: tuple[str, ...] = ("float32", "float16", "dynamic", "int8")
    source: str = "auto"  # int8 from: qat (RUN/qat), ptq (post-training), auto = qat when RUN/qat exists
    io: str = "int8"  # input/output type of int8 TFLite models
    calib_size: int = 256  # calibration faces: a class-balanced sample of the training split
    calib_data: str | None = None  # or a folder of face images
    calib_method: str = "minmax"  # ONNX Runtime's calibration method for PTQ int8 ONNX
    threshold: float = AGREEMENT_GATE  # minimum top-1 agreement with the Keras source on validation
    force: bool = False  # write artefacts below the threshold too
    batch: int | None = None  # fixed batch size (GPU delegates need one); None = dynamic
    per_tensor: bool | None = None  # None: as QAT trained the QAT model; per channel for PTQ
    keep_float: tuple[str, ...] = ()  # PTQ int8: layers computed in float; ("auto",) searches them

    def __post_init__(self) -> None:
        for name in ("formats", "precisions", "keep_float"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value or ()))
        if self.source not in SOURCES:
            raise ConfigError(f"--from must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.io not in IO_TYPES:
            raise ConfigError(f"--io must be one of {', '.join(IO_TYPES)}, got {self.io!r}")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)
                and 0.0 <= self.threshold <= 1.0):
            raise ConfigError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"--batch must be ≥ 1, got {self.batch}")
        if self.calib_size < 1:
            raise ConfigError(f"--calib-size must be ≥ 1, got {self.calib_size}")
        from ..calibration import CalibrationMethod

        CalibrationMethod.parse(self.calib_method)
        select_formats(list(self.formats), list(self.precisions))  # unknown names: one line, before any work

    @property
    def int8(self) -> bool:
        return any(f.precision == "int8" for f in select_formats(list(self.formats), list(self.precisions)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "ExportConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in known})
