"""Shared fixtures. FER2013 is read from ../shared/data (beside the project), never from the repo.

Set EDGEFER_SHARED_DATA to point elsewhere.
"""

import contextlib
import dataclasses
import fcntl
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGEFER_SHARED_DATA", ROOT.parent / "shared" / "data"))


# The longest tests run first: the README test (about 6 min: ~30 commands, some 20 of which start TensorFlow)
# and the FERPlus ship (about 2 min: a ferlite trained an epoch on all of FER2013, then shipped). pytest-xdist
# hands tests to its workers in collection order: left in place, each starts late in the run and its worker
# ends up running it alone. The README test needs no shared fixture before its eighth command, so its worker
# starts at once while the other trains the suite's cnn.
LONGEST_FIRST = ("tests/test_readme.py::test_every_readme_command_runs_as_written",
                 "tests/test_zoo_ferplus.py::test_ship_a_ferplus_run_with_three_evaluations")


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: item.nodeid not in LONGEST_FIRST)  # stable: the rest keep their order


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


def pick_rows(fer, per_usage: int | tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Row indices: ``per_usage`` random rows of each Usage (one count, or one for Training, PublicTest and
    PrivateTest in that order), in file order."""
    counts = (per_usage,) * 3 if isinstance(per_usage, int) else per_usage
    rng = np.random.default_rng(seed)
    out = [rng.choice(np.flatnonzero(fer["usage"] == u), n, replace=False)
           for u, n in zip(("Training", "PublicTest", "PrivateTest"), counts)]
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


def built_once(tmp_path_factory, name: str, build) -> Path:
    """The folder ``name`` that ``build(folder)`` filled, built once per test run however many pytest-xdist
    workers ask: the first builds it while the others wait on a lock, then all read it (xdist workers'
    basetemps share a parent). Hand each worker a copy of what a test may change."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def subset(fer, tmp_path_factory) -> Path:
    """6,000 Training, 1,000 PublicTest and 500 PrivateTest faces of FER2013, drawn at random (one file for
    every xdist worker: the runs trained on it record its path)."""
    folder = built_once(tmp_path_factory, "data",
                        lambda d: write_subset_npz(d / "subset.npz", fer, pick_rows(fer, (6000, 1000, 500))))
    return folder / "subset.npz"


def _train_cnn(subset: Path, folder: Path) -> None:
    from edge_fer.training import TrainConfig, train

    cfg = TrainConfig(model="cnn", data=str(subset), epochs=4, augment=False, model_options={"width": 0.5})
    result = train(cfg, folder / "cnn", verbose=0)
    (folder / "result.json").write_text(json.dumps({**dataclasses.asdict(result), "run_dir": "cnn"}))


@pytest.fixture(scope="session")
def trained(subset, tmp_path_factory):
    """A half-width CNN trained 4 epochs on the subset: ~40% validation accuracy, in ~40 s. Trained once per
    test run; each xdist worker gets its own copy of the run folder (tests write qat/, export/, eval/ there)."""
    from edge_fer.training.train import TrainResult

    built = built_once(tmp_path_factory, "trained", lambda d: _train_cnn(subset, d))
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    shutil.copytree(built / "cnn", run_dir)
    return TrainResult(**{**json.loads((built / "result.json").read_text()), "run_dir": run_dir})


@pytest.fixture(scope="session")
def exported(trained, tmp_path_factory):
    """The trained cnn exported (post-training) to TFLite and ONNX, float32 and int8: exported once per test run
    (from the trained run as built), a copy for each xdist worker (tests write beside it)."""
    from edge_fer.export import export_run

    def export(folder: Path) -> None:  # from a copy of the run as trained (`trained` built it already)
        shutil.copytree(built_once(tmp_path_factory, "trained", None) / "cnn", folder / "cnn")
        export_run(folder / "cnn", formats=["tflite", "onnx"], precisions=["float32", "int8"], source="ptq",
                   force=True, out=folder / "exported")

    out = tmp_path_factory.mktemp("exported")
    shutil.copytree(built_once(tmp_path_factory, "exported", export) / "exported", out, dirs_exist_ok=True)
    return out


@contextlib.contextmanager
def loopback_sshd(d: Path, *, sftp: bool = True):
    """An OpenSSH server on 127.0.0.1 (a free port) with throwaway keys made in ``d``; yields where it
    listens: ``port``, ``dir``, ``key`` (the client's), ``known_hosts`` (127.0.0.1 and localhost), ``host``,
    and ``python``: this venv's python behind a path with a space and a quote, to prove every argument is
    quoted. ``d / "other_key"`` is a key the server does not accept. ``sftp=False``: no ``Subsystem sftp``
    line, as some minimal device images ship it."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        pytest.fail("openssh-server is not installed; run scripts/setup.sh (make test does)")
    for name in ("host_key", "client_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
        + ("Subsystem sftp internal-sftp\n" if sftp else "") + "LogLevel ERROR\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    break
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"sshd did not start: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    known = d / "known_hosts"
    key_type, key = (d / "host_key.pub").read_text().split(" ")[:2]
    known.write_text(f"[127.0.0.1]:{port} {key_type} {key}\n[localhost]:{port} {key_type} {key}\n")
    pydir = d / "py dir's"
    pydir.mkdir()
    python = pydir / "python"
    python.write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    try:
        yield SimpleNamespace(port=port, dir=d, known_hosts=known, key=d / "client_key", python=str(python),
                              host=f"{getpass.getuser()}@127.0.0.1")
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """The loopback OpenSSH server the rpi target is tested against (the "Pi"), with SFTP."""
    with loopback_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


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
