"""Training defaults in one place: the study's recipe, overridable from the CLI.

The resolved config is saved as ``config.json`` in every run directory, so a run can be
resumed, evaluated, quantised and exported without repeating any option.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, RunError

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
MONITORS = ("val_accuracy", "val_loss", "val_f1")
SCHEDULES = ("plateau", "cosine")


def as_path(value: str) -> str:
    """A path setting stored absolute; a bare name that is no file here (a shipped model such as
    ``--teacher cnn_int8``) stays a name, so that a resumed run finds it wherever it starts."""
    p = Path(value).expanduser()
    if p.exists() or p.parent != Path("."):
        return str(p.resolve())
    return str(value)


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: str | None = None  # None: the embedded sample
    epochs: int = 45
    batch_size: int = 64
    lr: float = 1e-3
    precision: str = "float32"
    split_mode: str = "official"
    ferplus: str | None = None
    label_mode: str = "hard"
    label_smoothing: float = 0.0
    augment: bool = True
    aug_zoom: float = 0.1  # augmentation: scale in [1 - zoom, 1 + zoom]
    aug_shift: float = 0.1  # augmentation: shift up to this fraction of the side
    weights: str | None = None  # None, "imagenet" (keras downloads it) or a weights file's absolute path
    weights_sha256: str | None = None  # the weights file's SHA-256, computed when the config is made
    monitor: str = "val_accuracy"  # best checkpoint and early stopping
    early_stopping_patience: int = 10  # 0 disables early stopping
    lr_patience: int = 3
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    schedule: str = "plateau"  # plateau: ReduceLROnPlateau (the study's); cosine: warm-up then cosine decay to min_lr
    warmup_epochs: int = 0
    mixup: float = 0.0  # Beta(α, α) of mixup on training batches; 0 = off
    teacher: str | None = None  # a run (or .keras model) whose softened predictions are mixed into the targets
    distill_weight: float = 0.5  # targets = (1 - w) · labels + w · softmax(teacher logits / T)
    distill_temperature: float = 2.0
    seed: int = 0
    skip_bad: bool = False
    strategy: str = "auto"  # tf.distribute: auto | none | mirrored | multiworker (training/distribute.py)
    devices: tuple[str, ...] = ()  # mirrored: the devices to use; () = every visible GPU
    scale_lr: bool = False  # lr × replicas (the linear scaling rule); off: lr as given
    jit: bool = False  # XLA-compile the training step
    model_options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be ≥ 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"--monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"--warmup-epochs must be in [0, epochs), got {self.warmup_epochs}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        for name, value in (("--aug-zoom", self.aug_zoom), ("--aug-shift", self.aug_shift)):
            if not 0.0 <= value < 0.5:
                raise ConfigError(f"{name} must be in [0, 0.5) (a fraction of the face's side), got {value}")
        if not self.mixup >= 0.0:
            raise ConfigError(f"--mixup must be ≥ 0 (the Beta distribution's α; 0 disables it), got {self.mixup}")
        if not 0.0 < self.distill_weight <= 1.0:
            raise ConfigError(f"--distill-weight must be in (0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ConfigError(f"--distill-temperature must be > 0, got {self.distill_temperature}")
        if self.early_stopping_patience < 0:
            raise ConfigError(f"--patience must be ≥ 0 (0 disables early stopping), got {self.early_stopping_patience}")
        if self.lr_patience < 0 or not 0 < self.lr_factor < 1 or self.min_lr < 0:
            raise ConfigError(f"the learning-rate schedule needs lr_patience ≥ 0, 0 < lr_factor < 1 and min_lr ≥ 0; "
                              f"got {self.lr_patience}, {self.lr_factor} and {self.min_lr}")
        from .distribute import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not (self.weights is None or isinstance(self.weights, str) and self.weights.strip()):
            raise ConfigError(f"--weights must be none, imagenet or the path of a Keras weights file, got "
                              f"{self.weights!r}")
        if "weights" in (self.model_options or {}):
            raise ConfigError("-o weights=...: pass --weights none|imagenet|PATH instead")
        from ..models import check_model_options, get_spec

        check_model_options(self.model, self.model_options or {})  # before any data is read
        if self.weights is not None and not get_spec(self.model).imagenet:
            raise ConfigError(f"--weights {self.weights}: {self.model} has no ImageNet weights (resnet50 and vgg16 "
                              "have); use --weights none")
        from ..models.weights import check_weights_file, is_weights_file, sha256_file

        if is_weights_file(self.weights) and self.weights_sha256 is None:  # a new config, not a run's saved one
            path = check_weights_file(get_spec(self.model).name, self.weights)
            object.__setattr__(self, "weights", str(path.resolve()))
            object.__setattr__(self, "weights_sha256", sha256_file(path))

    def augmentation(self):
        """The training batches' :class:`~edge_fer.data.pipeline.Augment`, or None without augmentation."""
        from ..data.pipeline import Augment

        return Augment(zoom=self.aug_zoom, shift=self.aug_shift) if self.augment else None

    def lr_at(self, epoch: int) -> float:
        """The cosine schedule's learning rate for (0-based) ``epoch``."""
        import math

        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / (self.warmup_epochs + 1)
        span = max(1, self.epochs - self.warmup_epochs)
        t = min(1.0, (epoch - self.warmup_epochs) / span)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t))

    @property
    def option_args(self) -> list[str]:
        """The builder options as typed after ``-o`` (values as JSON): ``["batch_norm=true", "blocks=[1,2,2]"]``."""
        return [f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted((self.model_options or {}).items())]

    @property
    def label(self) -> str:
        """The architecture with its builder options, e.g. ``mobilenetv3_small (stem_stride=1)``."""
        options = ", ".join(self.option_args)
        return self.model + (f" ({options})" if options else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # Settings that change what is trained; a resumed run must agree on all of them.
    def identity(self) -> dict:
        """The settings a resumed run must repeat (paths compared resolved: runs made before paths
        were stored absolute hold them relative to where training was started)."""
        d = self.to_dict()
        for key in ("skip_bad", "strategy", "devices"):  # where it runs, not what it trains
            d.pop(key)
        for key in ("data", "ferplus", "teacher", "weights"):
            if d.get(key) and d[key] != "imagenet":
                d[key] = as_path(d[key])
        return d

    def load_data(self, path: str | None = None):
        """The run's data, split as it was for training (``path`` overrides where it is read from)."""
        from ..data import load_fer

        return load_fer(path or self.data, split_mode=self.split_mode, ferplus=self.ferplus,
                        label_mode=self.label_mode, skip_bad=self.skip_bad, seed=self.seed)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "devices" in d:
            d["devices"] = tuple(d["devices"] or ())
        return cls(**d)

    @classmethod
    def load(cls, run_dir: Path) -> "TrainConfig":
        from ..runs import RunLayout

        p = RunLayout(run_dir).config
        if not p.is_file():
            raise RunError(f"{run_dir}: not a run directory (no config.json); pass a directory made by `edgefer train`")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError) as e:
            raise RunError(f"{p}: unreadable run config ({e}); the run directory is damaged") from None
