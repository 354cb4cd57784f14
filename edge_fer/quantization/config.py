"""QAT defaults in one place: what ``edgefer qat`` does unless told otherwise.

    from edge_fer.quantization import QATConfig, qat_run
    qat_run("runs/cnn", QATConfig(epochs=2))

The CLI's defaults are read from here, the resolved config is saved in ``RUN/qat/qat.json``
(key ``config``), a shipped model's card records it and ``edgefer zoo build`` replays it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import ConfigError

# The top-1 agreement an int8 artefact must reach with its Keras source on validation: the export's
# gate (ExportConfig.threshold), which the QAT range search aims for too.
AGREEMENT_GATE = 0.98
# From the least clipping to the most; None: the min/max ranges QAT ended with.
AUTO_PERCENTILES = (None, 99.99, 99.95, 99.9, 99.8, 99.7, 99.5)
QAT_STRATEGIES = ("none", "mirrored")


def parse_range_percentile(value) -> float | str | None:
    """``"auto"``, ``None`` (min/max; also spelt ``"minmax"``) or a percentile in (50, 100]; anything
    else is a ConfigError naming the option."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str) and value.strip().lower() in ("minmax", "min/max", "none"):
        return None
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--range-percentile must be auto, minmax or a number in (50, 100], got {value!r}") from None
    if not 50.0 < p <= 100.0:
        raise ConfigError(f"--range-percentile must be auto, minmax or a number in (50, 100], got {value}")
    return p


@dataclass(frozen=True)
class QATConfig:
    epochs: int = 3  # fine-tuning epochs; 0: range warm-up only
    lr: float = 1e-4
    batch_size: int = 64
    warmup_batches: int = 50  # batches that set the fake-quant ranges before fine-tuning
    range_percentile: float | str | None = "auto"  # "auto", None (min/max) or a percentile in (50, 100]
    per_tensor: bool = False  # one weight scale per kernel instead of one per output channel
    teacher: str | None = None  # distil while fine-tuning: a run, a .keras/.tflite model or a shipped name
    distill_weight: float | None = None  # None: the run's own, else training's default
    distill_temperature: float | None = None
    strategy: str = "none"  # tf.distribute: none | mirrored (training/distribute.py)
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "range_percentile", parse_range_percentile(self.range_percentile))
        object.__setattr__(self, "devices", tuple(self.devices or ()))
        if self.epochs < 0:
            raise ConfigError(f"--epochs must be ≥ 0 (0: range warm-up only), got {self.epochs}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.warmup_batches < 1:
            raise ConfigError(f"--warmup-batches must be ≥ 1 (they set the int8 ranges), got {self.warmup_batches}")
        if not self.teacher and (self.distill_weight is not None or self.distill_temperature is not None):
            raise ConfigError("--distill-weight and --distill-temperature need --teacher (e.g. --teacher cnn_int8)")
        if self.teacher and self.epochs == 0:
            raise ConfigError("--teacher needs fine-tuning epochs: with --epochs 0 nothing is trained; "
                              "pass --epochs 1 or more, or drop --teacher")
        if self.strategy == "multiworker":
            raise ConfigError("qat runs on one machine: use --strategy none; train with --strategy multiworker, then "
                              "fine-tune on the chief's host")
        if self.strategy not in QAT_STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(QAT_STRATEGIES)}, got {self.strategy!r}")

    @property
    def weights(self) -> str:
        """The weight granularity, as qat.json and the export metadata name it."""
        return "per-tensor" if self.per_tensor else "per-channel"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_record(cls, record: dict | None) -> "QATConfig":
        """The config a qat.json (or a model card's ``recipe.qat``) was made with. The settings recorded
        beside the results are the resolved ones (a teacher's weight and temperature as used) and win
        over the saved ``config``; a record without ``range_percentile`` predates the option and used
        min/max ranges; other missing settings take the defaults above."""
        record = record or {}
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in (record.get("config") or {}).items() if k in known}
        d.update({k: v for k, v in record.items() if k in known})
        if "weights" in record:
            d["per_tensor"] = record["weights"] == "per-tensor"
        d.setdefault("range_percentile", None)
        return cls(**d)

    def recipe(self) -> dict:
        """What a model card records (and ``zoo build`` replays): the settings, weights by name, without
        where it ran."""
        d = {k: v for k, v in self.to_dict().items() if k not in ("per_tensor", "strategy", "devices")}
        return {**d, "weights": self.weights}

    def replay(self) -> "QATConfig":
        """This recipe as a fresh run on one device repeats it (zoo build)."""
        return dataclasses.replace(self, strategy="none", devices=())
