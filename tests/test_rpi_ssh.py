"""The rpi target against a real OpenSSH server on loopback (conftest's ``sshd``, throwaway keys).

The "Pi" is this machine: the remote python is this venv's python behind sshd, so the whole
path — host-key checks, SFTP copies, quoting, the runner, clean-up — is real; only the CPU is
not a Pi's. (An emulated aarch64 Pi under qemu-user is a separate, later test.)
"""

import getpass
import os
import socket
import sys
from pathlib import Path

import pytest

from edge_fer.device_bench.bench import bench_models
from edge_fer.device_bench.remote import RemoteTarget
from edge_fer.errors import EdgeFerError

from conftest import assert_user_error

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target(sshd, **kw):
    args = dict(port=sshd.port, identity=str(sshd.key), known_hosts=sshd.known_hosts, remote_python=sshd.python)
    return RemoteTarget(sshd.host, **{**args, **kw})


@pytest.fixture(scope="module")
def model(exported, tmp_path_factory):
    """The trained cnn's post-training int8 TFLite file, in a folder whose name has a space."""
    out = tmp_path_factory.mktemp("rpi models")
    for suffix in ("", ".json"):
        (out / f"cnn_int8.tflite{suffix}").write_bytes((exported / f"cnn_int8.tflite{suffix}").read_bytes())
    return out / "cnn_int8.tflite"


def test_full_rpi_path_matches_cpu(sshd, model, subset, monkeypatch):
    made = []  # the temporary directories this bench made on the "Pi" (not others': tests run side by side)
    run = RemoteTarget.run

    def spy(self, command, **kw):
        result = run(self, command, **kw)
        if command.startswith("mktemp -d"):
            made.append(Path(result[1].strip()))
        return result

    monkeypatch.setattr(RemoteTarget, "run", spy)
    with _target(sshd) as pi:
        info = pi.probe()
        assert info["arch"] == os.uname().machine and int(info["cores"]) >= 1 and info["python"]
        remote = bench_models([model], device="rpi", threads=[1, 2], data=str(subset), min_seconds=0.2, target=pi)
    local = bench_models([model], device="cpu", threads=[1], data=str(subset), min_seconds=0.2)
    assert [r["status"] for r in remote] == ["ok", "ok"] and remote[0]["device"] == "rpi"
    assert remote[0]["accuracy"] == local[0]["accuracy"] and remote[0]["confusion_matrix"] == local[0]["confusion_matrix"]
    assert remote[0]["device_info"]["arch"] == info["arch"]
    assert made and all(d.name.startswith("edgefer-bench.") and not d.exists() for d in made), made  # removed


def test_wrong_key_is_an_auth_failure(sshd):
    with pytest.raises(EdgeFerError, match="authentication failed"):
        _target(sshd, identity=str(sshd.dir / "other_key")).connect()


def test_unknown_host_key_refused_unless_trusted(sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    with pytest.raises(EdgeFerError, match="unknown host key.*--trust-new-host"):
        _target(sshd, known_hosts=empty).connect()
    with _target(sshd, known_hosts=empty, trust_new_host=True) as pi:
        assert pi.run("echo ok")[1].strip() == "ok"
    assert f"[127.0.0.1]:{sshd.port}" in empty.read_text()
    with _target(sshd, known_hosts=empty) as pi:  # now known
        assert pi.run("true")[0] == 0


def test_changed_host_key_always_refused(sshd, tmp_path):
    other = (sshd.dir / "other_key.pub").read_text().split(" ")
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    for trust in (False, True):
        with pytest.raises(EdgeFerError, match="CHANGED"):
            _target(sshd, known_hosts=kh, trust_new_host=trust).connect()


def test_unreachable_host(sshd):
    with pytest.raises(EdgeFerError, match="unreachable"):
        _target(sshd, port=_free_port()).connect()


def _wrapper(sshd, name: str, body: str) -> str:
    p = sshd.dir / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


def test_missing_runtime_says_how_to_fix(sshd, model, subset):
    py = _wrapper(sshd, "py-no-runtime", f"exec {sys.executable} -c \"import runpy, sys; "
                  "sys.modules['ai_edge_litert'] = None; sys.modules['tflite_runtime'] = None; "
                  "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\" \"$@\"")
    with _target(sshd, remote_python=py) as pi:
        [r] = bench_models([model], device="rpi", data=str(subset), min_seconds=0.1, target=pi)
    assert r["status"] == "unavailable" and "pip install ai-edge-litert" in r["reason"]


def _python_without_edge_fer(sshd) -> str:
    """This venv's python with its packages but no edge_fer (-S: no .pth, so no editable install), as on a
    Pi that has numpy and the TFLite runtime only."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    bare = sshd.dir / "site-without-edge_fer"
    if not bare.is_dir():
        bare.mkdir()
        for p in site.iterdir():
            if not (p.name.startswith(("edge_fer", "__editable__", "_edgefer")) or p.suffix == ".pth"):
                (bare / p.name).symlink_to(p)
    return _wrapper(sshd, "py-without-edge_fer", f"PYTHONPATH='{bare}' exec {sys.executable} -S \"$@\"")


def test_rpi_uses_the_edge_fer_installed_there_else_copies_the_runner(sshd, subset, monkeypatch):
    """A device whose python imports this edge_fer runs `python -m edge_fer.runtime.device` and is sent
    no runner; one without edge_fer is sent the standalone .pyz. Same records either way."""
    from edge_fer import __version__
    from edge_fer.runtime.standalone import SCRIPT_NAME
    from edge_fer.zoo import resolve_model

    model = resolve_model("ferlite_int8")
    commands, copied = [], []
    run, put = RemoteTarget.run, RemoteTarget.put_files
    monkeypatch.setattr(RemoteTarget, "run", lambda self, command, **kw: commands.append(command) or run(self, command, **kw))
    monkeypatch.setattr(RemoteTarget, "put_files", lambda self, files: copied.extend(r for _, r in files) or put(self, files))
    records = {}
    for name, python in (("installed", sshd.python), ("standalone", _python_without_edge_fer(sshd))):
        commands.clear(), copied.clear()
        with _target(sshd, remote_python=python) as pi:
            assert (pi.probe()["edge_fer"] == __version__) == (name == "installed"), pi.probe()
            [records[name]] = bench_models([model], device="rpi", data=str(subset), min_seconds=0.1, target=pi)
        [bench] = [c for c in commands if c.startswith("cd ")]
        sent_runner = any(r.endswith("/" + SCRIPT_NAME) for r in copied)
        if name == "installed":
            assert "-m edge_fer.runtime.device" in bench and not sent_runner, (bench, copied)
        else:
            assert SCRIPT_NAME in bench and "-m edge_fer" not in bench and sent_runner, (bench, copied)
    installed, standalone = records["installed"], records["standalone"]
    assert installed["status"] == standalone["status"] == "ok", (installed, standalone)
    assert installed["runner"] == f"installed edge_fer {__version__}"
    assert standalone["runner"] == f"standalone {SCRIPT_NAME}"
    same = ("accuracy", "confusion_matrix", "n", "runtime", "runtime_version", "threads", "xnnpack")
    assert {k: installed[k] for k in same} == {k: standalone[k] for k in same}
    assert set(installed) == set(standalone)


def test_timeout_and_non_zero_exit(sshd, model, subset):
    # a python that hangs in the bench (the probe's `python -c` answers: it would wait out the probe's own timeouts)
    slow = _wrapper(sshd, "py-slow", f'case "$1" in -c) exec {sys.executable} "$@";; esac; sleep 30')
    with _target(sshd, remote_python=slow) as pi:
        [r] = bench_models([model], device="rpi", data=str(subset), timeout=1.0, target=pi)
    assert r["status"] == "failed" and "timed out after 1 s" in r["reason"]
    with _target(sshd, remote_python=_wrapper(sshd, "py-fail", "echo boom >&2; exit 3")) as pi:
        [r] = bench_models([model], device="rpi", data=str(subset), target=pi)
    assert r["status"] == "failed" and "exited with code 3: boom" in r["reason"]


def test_cli_bench_rpi(sshd, model, subset):
    from click.testing import CliRunner

    from edge_fer.cli import main

    r = CliRunner().invoke(main, [
        "bench", str(model), "--device", "rpi", "--host", sshd.host, "--port", str(sshd.port), "--identity",
        str(sshd.key), "--known-hosts", str(sshd.known_hosts), "--remote-python", sshd.python, "--threads", "1",
        "--data", str(subset), "--min-seconds", "0.1"])
    assert r.exit_code == 0, r.output
    assert f"{sshd.host}: " in r.output and "cores" in r.output
    assert "cnn_int8.tflite" in r.output and f"rpi:{sshd.host}" in r.output
    bad = CliRunner().invoke(main, ["bench", str(model), "--device", "rpi", "--host", sshd.host, "--port",
                                    str(sshd.port), "--identity", str(sshd.dir / "other_key"), "--known-hosts",
                                    str(sshd.known_hosts), "--data", str(subset)])
    assert_user_error(bad, "authentication failed")


def test_fleet_runs_every_host_and_reports_the_unreachable_one(sshd, model, subset):
    """Two "Pis" (the loopback sshd under two names) and one that does not answer, concurrently."""
    from edge_fer.device_bench.bench import bench_fleet

    user = getpass.getuser()
    hosts = [sshd.host, f"{user}@localhost", f"{user}@127.0.0.2"]  # sshd listens on 127.0.0.1 only
    records = bench_fleet([model], hosts, port=sshd.port, identity=str(sshd.key), known_hosts=sshd.known_hosts,
                          remote_python=sshd.python, threads=[1], data=str(subset), min_seconds=0.1)
    by_host = {r["host"]: r for r in records}
    assert set(by_host) == set(hosts) and len(records) == 3
    assert by_host[hosts[0]]["status"] == by_host[hosts[1]]["status"] == "ok"
    assert by_host[hosts[0]]["accuracy"] == by_host[hosts[1]]["accuracy"]
    assert by_host[hosts[2]]["status"] == "unavailable" and "127.0.0.2" in by_host[hosts[2]]["reason"]
    from edge_fer.device_bench.bench import format_table

    assert f"rpi:{user}@127.0.0.2" in format_table(records)


ARM64_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "arm64-pi" / "python"


def test_emulated_aarch64_pi_gives_the_x86_int8_outputs(sshd, model, fer, tmp_path):
    """The rpi path against an aarch64 Python (Debian arm64 under qemu-user; scripts/arm64_pi.sh).

    The same int8 model must give the same outputs and labels on the emulated Pi as here. XNNPACK's
    aarch64 (NEON) and x86 (AVX-512) int8 kernels may round a requantisation differently: an output
    may differ by one int8 step, never more. Emulated latency means nothing and is not checked: the bench
    times briefly (quick), or qemu would spend most of the test in the timing loops.
    """
    import numpy as np

    from conftest import write_subset_npz

    assert ARM64_PYTHON.is_file(), f"{ARM64_PYTHON} missing: run `bash scripts/setup.sh` (or scripts/arm64_pi.sh)"
    rows = np.concatenate([np.flatnonzero(fer["usage"] == u)[:40] for u in ("Training", "PublicTest", "PrivateTest")])
    data = write_subset_npz(tmp_path / "faces.npz", fer, rows)
    with _target(sshd, remote_python=str(ARM64_PYTHON)) as pi:
        remote = bench_models([model], device="rpi", threads=[1], data=str(data), min_seconds=0, quick=True, target=pi)
    local = bench_models([model], device="cpu", threads=[1], data=str(data), min_seconds=0, quick=True)
    assert remote[0]["status"] == "ok", remote[0].get("reason")
    assert remote[0]["machine"]["machine"] == "aarch64" and local[0]["machine"]["machine"] == "x86_64"
    assert remote[0]["runtime"] == "ai-edge-litert"
    a, b = np.array(remote[0]["sample_outputs"]), np.array(local[0]["sample_outputs"])
    assert a.dtype.kind == "i" and np.abs(a - b).max() <= 1 and (a == b).mean() >= 0.9, (a - b)
    assert remote[0]["confusion_matrix"] == local[0]["confusion_matrix"]


def test_emulated_aarch64_pi_on_the_shipped_mobilenetv3(sshd, fer, tmp_path):
    """The shipped QAT MobileNetV3-Small int8 model (minimalistic: depthwise-separable inverted residuals,
    ReLU) on the emulated Cortex-A72: the same labels as here, raw int8 outputs at most one step apart (XNNPACK's NEON
    and AVX-512 kernels may round a requantisation differently; docs/results.md shows which models are
    bit-exact)."""
    import numpy as np

    from conftest import write_subset_npz
    from edge_fer.zoo import resolve_model

    model = resolve_model("mobilenetv3_small_int8")
    rows = np.flatnonzero(fer["usage"] == "PrivateTest")[:64]
    data = write_subset_npz(tmp_path / "faces.npz", fer, rows)
    with _target(sshd, remote_python=str(ARM64_PYTHON)) as pi:
        remote = bench_models([model], device="rpi", threads=[1], data=str(data), split="test", min_seconds=0,
                              quick=True, target=pi)
    local = bench_models([model], device="cpu", threads=[1], data=str(data), split="test", min_seconds=0, quick=True)
    assert remote[0]["status"] == "ok", remote[0].get("reason")
    assert remote[0]["machine"]["machine"] == "aarch64"
    a, b = np.array(remote[0]["sample_outputs"]), np.array(local[0]["sample_outputs"])
    assert np.abs(a - b).max() <= 1 and (a == b).mean() >= 0.9, (a - b)
    assert remote[0]["confusion_matrix"] == local[0]["confusion_matrix"]
