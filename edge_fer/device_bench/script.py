"""Run the device benchmark script (:mod:`edge_fer.runtime.device`) here in a fresh process, and read what
it printed, here or on a device.

    result = run_local(Path("m.tflite"), Path("faces.npz"), [1, 2], min_seconds=2.0)

Here it runs as on a device: the bundled one-file script (:mod:`edge_fer.runtime.standalone`) with
``PYTHONPATH`` cleared, so memory and crashes are its own and the numbers are those the same file gives on
a Raspberry Pi. A .keras model (the float baseline, TensorFlow) runs through
:mod:`edge_fer.device_bench.keras_baseline` instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import RemoteError
from ..runtime.standalone import build_device_script

PIP_FIX = "pip install ai-edge-litert numpy (64-bit OS) or pip install tflite-runtime 'numpy<2' (older systems)"
DEFAULT_MIN_SECONDS = 2.0  # the script's minimum timed duration per model and thread count


def resolve_min_seconds(min_seconds: float | None, quick: bool) -> float:
    """``--min-seconds`` as given, else 2 s, or 0 with ``--quick`` (a quick bench times its 10 runs only)."""
    if min_seconds is None:
        return 0.0 if quick else DEFAULT_MIN_SECONDS
    return min_seconds


def script_args(model: str, faces: str | None, threads, *, min_seconds: float, xnnpack: bool = True,
                accelerator: str = "cpu", cpu_fallback: bool = False, delegate: str | None = None,
                extra: tuple[str, ...] = ()) -> list[str]:
    """The script's command-line arguments."""
    args = ["--model", str(model), *(["--data", str(faces)] if faces is not None else []),
            "--threads", ",".join(map(str, threads)), "--min-seconds", str(min_seconds)]
    if accelerator != "cpu":
        args += ["--accelerator", accelerator]
    if not xnnpack:
        args.append("--no-xnnpack")
    if cpu_fallback:
        args.append("--allow-cpu-fallback")
    if delegate:
        args += ["--delegate", str(delegate)]
    return args + list(extra)


def run_local(model: Path, faces: Path | None, threads, *, min_seconds: float, timeout: float, xnnpack: bool = True,
              accelerator: str = "cpu", cpu_fallback: bool = False, delegate: str | None = None,
              python: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    """The script in a fresh local process (``python``: another interpreter, e.g. an emulated aarch64 one;
    default this one). ``faces`` None: latency of random inputs only. RemoteError when it cannot finish."""
    args = script_args(model, faces, threads, min_seconds=min_seconds, xnnpack=xnnpack, accelerator=accelerator,
                       cpu_fallback=cpu_fallback, delegate=delegate, extra=extra)
    env = {**os.environ, "PYTHONPATH": ""}
    with tempfile.TemporaryDirectory(prefix="edgefer-script-") as d:
        if Path(model).suffix == ".keras":
            cmd = [python or sys.executable, "-m", "edge_fer.device_bench.keras_baseline", *args]
        else:
            cmd = [python or sys.executable, str(build_device_script(d)), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"timed out after {timeout:.0f} s") from None
    return read_result(proc.returncode, proc.stdout, proc.stderr, python=python or sys.executable)


def read_result(code: int, out: str, err: str, *, where: str = "", python: str = "python3") -> dict:
    """What a run of the script printed (its exit code, stdout, stderr), local or remote: its JSON result, or
    RemoteError with the script's own status (``unavailable`` / ``failed``) and message."""
    prefix = f"{where}: " if where else ""
    result = last_json(out)
    if result and "error" in result:
        message, status = result["error"], result.get("status", "failed")
        if result.get("error_type") == "RuntimeMissing" and "onnxruntime" not in message:
            message += f"; {PIP_FIX}"
        raise RemoteError(prefix + message, status=status)
    if code == 127 or ("No such file or directory" in err and code != 0 and not out.strip()):
        raise RemoteError(f"{prefix}python {python!r} not found; pass --remote-python", status="unavailable")
    if code != 0 or result is None:
        if "ModuleNotFoundError" in err and "numpy" in err:
            raise RemoteError(f"{prefix}numpy is missing; {PIP_FIX}", status="unavailable")
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise RemoteError(f"{prefix}the device script exited with code {code}: {last}")
    return result


def last_json(stdout: str):
    for line in reversed(stdout.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None
