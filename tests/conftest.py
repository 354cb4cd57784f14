"""Shared fixtures. FER2013 is read from ../shared/data (beside the project), never from the repo.

Set EDGEFER_SHARED_DATA to point elsewhere.
"""

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGEFER_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def fer_npz() -> Path:
    p = SHARED_DATA / "fer2013.npz"
    if not p.is_file():
        pytest.fail(f"FER2013 not found at {p}; put ../shared/data beside the project or set EDGEFER_SHARED_DATA")
    return p


@pytest.fixture(scope="session")
def ferplus_csv() -> Path:
    p = SHARED_DATA / "fer2013new.csv"
    if not p.is_file():
        pytest.fail(f"FERPlus labels not found at {p}")
    return p


@pytest.fixture(scope="session")
def fer(fer_npz):
    with np.load(fer_npz) as d:
        return {k: d[k] for k in ("pixels", "labels", "usage")}


def pick_rows(fer, per_usage: int, seed: int = 0) -> np.ndarray:
    """Row indices: ``per_usage`` random rows of each Usage, in file order."""
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(fer["usage"] == u), per_usage, replace=False)
           for u in ("Training", "PublicTest", "PrivateTest")]
    return np.sort(np.concatenate(out))


def write_csv(path: Path, fer, rows, header="emotion,pixels,Usage") -> Path:
    lines = [header]
    for i in rows:
        lines.append(f"{fer['labels'][i]},{' '.join(map(str, fer['pixels'][i].ravel()))},{fer['usage'][i]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_subset_npz(path: Path, fer, rows) -> Path:
    np.savez(path, pixels=fer["pixels"][rows], labels=fer["labels"][rows], usage=fer["usage"][rows])
    return path


def assert_user_error(result, *fragments) -> str:
    """A CliRunner result is a user error as the CLI reports one: exit code 2 through Click's SystemExit, and
    one `Error:` line holding every fragment; returns that line. An exception that escaped the CLI (what a
    user sees as a traceback) fails here: CliRunner keeps it in ``result.exception`` with exit code 1 (with
    ``catch_exceptions=False`` it propagates instead). ``"Traceback" in result.output`` cannot tell: CliRunner
    never writes a traceback there."""
    assert isinstance(result.exception, SystemExit) and result.exit_code == 2, (result.exception, result.output)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


@pytest.fixture(scope="session")
def subset(fer, tmp_path_factory) -> Path:
    """6,000 Training, 1,000 PublicTest and 500 PrivateTest faces of FER2013, drawn at random."""
    rng = np.random.default_rng(0)
    parts = [rng.choice(np.flatnonzero(fer["usage"] == u), n, replace=False)
             for u, n in (("Training", 6000), ("PublicTest", 1000), ("PrivateTest", 500))]
    return write_subset_npz(tmp_path_factory.mktemp("data") / "subset.npz", fer, np.sort(np.concatenate(parts)))


@pytest.fixture(scope="session")
def trained(subset, tmp_path_factory):
    """A half-width CNN trained 4 epochs on the subset: ~40% validation accuracy, in ~40 s."""
    from edge_fer.training import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "cnn"
    cfg = TrainConfig(model="cnn", data=str(subset), epochs=4, augment=False, model_options={"width": 0.5})
    return train(cfg, out, verbose=0)


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The trained cnn exported (post-training) to TFLite and ONNX, float32 and int8."""
    from edge_fer.export import export_run

    out = tmp_path_factory.mktemp("exported")
    export_run(trained.run_dir, formats=["tflite", "onnx"], precisions=["float32", "int8"], source="ptq",
               force=True, out=out)
    return out


@pytest.fixture
def run(tmp_path, monkeypatch):
    """`edgefer ARGS...` through Click's CliRunner, in an empty folder with no runs, data or config set."""
    from click.testing import CliRunner

    from edge_fer.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEFER_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("EDGEFER_DATA", raising=False)
    monkeypatch.delenv("EDGEFER_CONFIG", raising=False)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke
