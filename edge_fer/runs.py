"""Run directories: where they live, what each stage writes in them, how the latest one is
found, and atomic writes.

Runs live under ``$EDGEFER_RUNS`` (default ``./runs``), one folder per training run, named
after the model (``runs/cnn``, ``runs/cnn-2``, …) unless ``--out`` says otherwise. Like
Ultralytics, commands that take a run use the most recent one when none is named.

:class:`RunLayout` is the one place that names the files of a run; every stage asks it::

    RUN/config.json          train: the resolved TrainConfig (+ how it was distributed)
    RUN/state.json           train: epochs done, best epoch, history; the last checkpoint
    RUN/model.json           train: the architecture's name, input shape and size
    RUN/best.keras           train: the best epoch on validation
    RUN/last-eNNN.keras      train: the checkpoint to resume from
    RUN/eval/SPLIT/          evaluate: metrics.json, confusion_matrix.png, roc.png
    RUN/qat/best.h5          qat: the fine-tuned QAT model (best.partial.h5 while it runs)
    RUN/qat/qat.json         qat: the resolved QATConfig and what it measured; written last
    RUN/export/              export: {model}_{precision}.{tflite,onnx} + .json metadata
    RUN/export/export_report.json   export: the resolved ExportConfig and every artefact's verification
    RUN/shipped/             zoo ship: NAME.tflite/.onnx, the model card NAME.md and NAME.card.json
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError

CONFIG = "config.json"
STATE = "state.json"
BEST_MODEL = "best.keras"
MODEL_INFO = "model.json"
QAT_DIR = "qat"
QAT_MODEL = "best.h5"
# While `edgefer qat` runs, its model lives here; best.h5 and then qat.json (the stage's "finished"
# marker) are written only at the end, so an interrupted run never passes for a finished one.
QAT_PARTIAL = "best.partial.h5"
QAT_RECORD = "qat.json"
EXPORT_DIR = "export"
EXPORT_REPORT = "export_report.json"
SHIPPED_DIR = "shipped"


class RunLayout:
    """The files of one run directory, by stage (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    # train
    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def model_info(self) -> Path:
        return self.root / MODEL_INFO

    @property
    def best_model(self) -> Path:
        return self.root / BEST_MODEL

    def require_best_model(self) -> Path:
        """``best.keras``, or a RunError when no epoch has finished."""
        if not self.best_model.is_file():
            raise RunError(f"{self.root}: no {BEST_MODEL} yet (no epoch has finished); train the run first")
        return self.best_model

    def checkpoint(self, epoch: int) -> Path:
        return self.root / f"last-e{epoch:03d}.keras"

    def checkpoints(self) -> list[Path]:
        return sorted(self.root.glob("last-e*.keras"))

    def train_config(self) -> dict:
        """config.json as saved (the TrainConfig fields and ``distribute``); {} when absent."""
        return _read_json(self.config) or {}

    # evaluate
    def eval_dir(self, split: str) -> Path:
        return self.root / "eval" / split

    # qat
    @property
    def qat_dir(self) -> Path:
        return self.root / QAT_DIR

    @property
    def qat_model(self) -> Path:
        return self.qat_dir / QAT_MODEL

    @property
    def qat_partial(self) -> Path:
        return self.qat_dir / QAT_PARTIAL

    @property
    def qat_record(self) -> Path:
        return self.qat_dir / QAT_RECORD

    def qat(self) -> dict | None:
        """qat.json (the resolved QATConfig and what QAT measured), or None when QAT has not finished."""
        return _read_json(self.qat_record)

    # export
    @property
    def export_dir(self) -> Path:
        return self.root / EXPORT_DIR

    @staticmethod
    def export_report_in(export_dir: Path) -> Path:
        """The report of an export folder (RUN/export, or where ``--out`` put it)."""
        return Path(export_dir) / EXPORT_REPORT

    def export_report(self) -> dict:
        """export/export_report.json (the resolved ExportConfig and each artefact's verification); {} when absent."""
        return _read_json(self.export_report_in(self.export_dir)) or {}

    # zoo ship
    @property
    def shipped_dir(self) -> Path:
        return self.root / SHIPPED_DIR


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise RunError(f"{path}: damaged JSON; run the stage that writes it again") from None


def runs_root() -> Path:
    """Where runs go: $EDGEFER_RUNS, else ``runs`` in edgefer.toml, else ./runs."""
    from .settings import setting

    value, _ = setting("runs")
    return Path(str(value) if value else "runs").expanduser()


def next_predict_dir(root: Path | None = None) -> Path:
    """Where ``edgefer predict`` writes when no ``--out`` is given: ``root/predict``, ``predict2``, …"""
    root = root or runs_root()
    for i in range(1, 10000):
        p = root / ("predict" if i == 1 else f"predict{i}")
        if not p.exists():
            return p
    raise RunError(f"{root}: too many predict folders; pass --out")


def is_run(path: Path) -> bool:
    return RunLayout(path).config.is_file()


def next_run_dir(model: str, root: Path | None = None) -> Path:
    """``root/model``, or ``root/model-2``, ``-3``… when taken by a finished run."""
    root = root or runs_root()
    candidate, i = root / model, 1
    while candidate.exists() and read_state(candidate).get("status") == "finished":
        i += 1
        candidate = root / f"{model}-{i}"
    return candidate


def latest_run(root: Path | None = None) -> Path:
    root = root or runs_root()
    runs = [p for p in root.glob("*") if p.is_dir() and is_run(p)] if root.is_dir() else []
    if not runs:
        raise RunError(f"no runs under {root}/; train one with `edgefer train --model cnn`, or name a run directory")
    return max(runs, key=lambda p: RunLayout(p).state.stat().st_mtime if RunLayout(p).state.exists() else 0)


def resolve_run(run: str | Path | None) -> Path:
    """A run directory given by path or by name under the runs root; the latest when None."""
    if run is None:
        return latest_run()
    p = Path(run).expanduser()
    for candidate in (p, runs_root() / p):
        if candidate.is_dir() and is_run(candidate):
            return candidate
    if p.is_dir():
        raise RunError(f"{p}: not a run directory (no config.json); pass a directory made by `edgefer train`")
    raise RunError(f"{p}: no such run; list runs with `ls {runs_root()}` or train one with `edgefer train`")


def read_state(run_dir: Path) -> dict:
    p = RunLayout(run_dir).state
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError:
        raise RunError(f"{p}: damaged state file; delete the run directory or train into a new --out") from None


@contextmanager
def atomic_path(path: Path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix or path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
