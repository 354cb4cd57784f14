"""Run directories: where they live, how the latest one is found, and atomic writes.

Runs live under ``$EDGEFER_RUNS`` (default ``./runs``), one folder per training run, named
after the model (``runs/cnn``, ``runs/cnn-2``, …) unless ``--out`` says otherwise. Like
Ultralytics, commands that take a run use the most recent one when none is named.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import RunError


def runs_root() -> Path:
    """Where runs go: $EDGEFER_RUNS, else ``runs`` in edgefer.toml, else ./runs."""
    from .settings import setting

    value, _ = setting("runs")
    return Path(str(value) if value else "runs").expanduser()


def is_run(path: Path) -> bool:
    return (path / "config.json").is_file()


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
    return max(runs, key=lambda p: (p / "state.json").stat().st_mtime if (p / "state.json").exists() else 0)


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
    p = Path(run_dir) / "state.json"
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
