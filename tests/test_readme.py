"""The README as a user types it: every command of its ```bash blocks runs in a shell, in a prepared
folder, and every figure it quotes from docs/results.md is the one measured there.

A command runs exactly as written unless COMMANDS below gives the line that runs instead and why
(no camera, no Pi, no GPU, hours of training). A command the README gains without an entry here
fails `test_every_readme_command_is_in_the_table`, so the table cannot fall behind the README.

The folder: `fer2013.csv` (450 real FER2013 faces, 150 per usage), `runs/cnn` (the suite's trained
half-width CNN, copied in before the first command that names it, so that the commands before it run while
another worker trains it), `photos/`, `clip.mp4`, `shots/*.jpg`, `my_boxes.csv`, `m_int8.tflite`, and a
HOME whose `~/.ssh` holds a key and known_hosts for an OpenSSH server on loopback (the "Pi":
conftest's `sshd`, the server tests/test_rpi_ssh.py uses) and whose `~/edgefer-runs` is the folder's
`runs/`.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import pick_rows, write_csv

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV_BIN = Path(sys.executable).parent
FAST = "--min-seconds 0.05"  # latency timing length: the test reads no latency, only that the command runs
QUICK = f"{FAST} --quick"  # bench: 10 timed runs, no throughput batch (tests/test_bench.py checks --quick)

# README command (as written, comment removed) → (the shell line that runs, why it differs). None: as written.
# Listed in the order they run: later commands use what earlier ones wrote (runs/mobilenetv3_small, exports).
COMMANDS = {
    "make demo": ("<the Makefile's demo recipe>",
                  f"the recipe's lines run (with this venv's edgefer) with latency timing {QUICK} instead of "
                  "--min-seconds 1 (_check_the_main_job checks what its bench writes); its `setup` "
                  "prerequisite installs the venv the test already runs in"),
    "make test": (None, "not run: it is this test suite"),
    "source .venv/bin/activate": (None, "not run: every command runs with this venv's bin/ first on PATH"),
    "edgefer predict photos/ clip.mp4": (None, None),
    "edgefer data check fer2013.csv": (None, None),
    "edgefer train --model mobilenetv3 --data fer2013.csv": (
        "edgefer train --model mobilenetv3 --data fer2013.csv --epochs 1",
        "45 epochs on FER2013 take hours: 1 epoch (every block, full width: the model card's path, whose files "
        "_check_the_card_path checks)"),
    "edgefer evaluate": (None, None),
    "edgefer qat && edgefer export --int8": (
        "edgefer qat --epochs 1 --warmup-batches 2 --range-percentile minmax && edgefer export --int8 --force",
        "a 1-epoch model is far from the 98% agreement gate and no range clipping finds it: 1 QAT epoch after 2 "
        "range warm-up batches (each runs the QAT model eagerly), min/max ranges, export --force (the gate is "
        "tested in tests/test_export.py)"),
    "edgefer bench": (f"edgefer bench {QUICK}", "latency timing only"),
    "edgefer compare runs/cnn runs/mobilenetv3_small": (None, None),
    "edgefer models": (None, None),
    "edgefer predict photos/": (None, None),
    "edgefer predict clip.mp4 --every 5 --json faces.csv --no-annotate": (None, None),
    'edgefer predict "shots/*.jpg" --model cnn_int8.onnx --detector blazeface': (None, None),
    "python3 -m venv ~/fer && ~/fer/bin/pip install 'edge_fer-0.1.0-py3-none-any.whl[camera]'": (
        f"pip wheel --no-deps --quiet -w dist {ROOT} && test -f dist/edge_fer-0.1.0-py3-none-any.whl",
        "no Pi here: the wheel it installs is built (tests/test_device_install.py installs that wheel with the "
        "device profile into the emulated Pi and runs it there)"),
    "~/fer/bin/edgefer predict --camera 0 --max-frames 300": (
        "edgefer predict --camera 0 --max-frames 300 --help", "no Pi and no camera here: the options parse"),
    "edgefer predict --camera 0 --max-frames 300": (
        "edgefer predict --camera 0 --max-frames 300 --help", "no camera here: the options parse, nothing runs"),
    "edgefer predict photos/ --boxes my_boxes.csv": (None, None),
    "edgefer bench --shipped --threads 1,2,4": (f"edgefer bench --shipped --threads 1,2,4 {QUICK}",
                                                "latency timing only"),
    "edgefer qat runs/cnn --epochs 3": (
        "edgefer qat runs/cnn --epochs 0",
        "the range warm-up and the automatic range choice in int8 without fine-tuning epochs (each is a pass over "
        "the run's 6,000 training faces; tests/test_export.py fine-tunes)"),
    "edgefer export runs/cnn --formats tflite": (None, None),
    "edgefer calibrate runs/cnn --sizes 64,256,1024 --methods minmax,entropy,percentile": (
        "edgefer calibrate runs/cnn --sizes 64 --methods minmax",
        "each size × method is one more int8 conversion: one of each"),
    "edgefer bench runs/cnn/export/*.tflite --threads 1,2,4 --json bench.json": (
        f"edgefer bench runs/cnn/export/*.tflite --threads 1,2,4 --json bench.json {QUICK}", "latency timing only"),
    "edgefer bench runs/cnn/best.keras runs/cnn/export/*": (
        f"edgefer bench runs/cnn/best.keras runs/cnn/export/* {QUICK}", "latency timing only"),
    "edgefer bench runs/cnn/export/cnn_int8_qat.tflite --device rpi --host pi@192.0.2.10 --identity ~/.ssh/id_ed25519": (
        f"edgefer bench runs/cnn/export/cnn_int8_qat.tflite --device rpi --host {{user}}@127.0.0.1 --port {{port}} "
        f"--remote-python {{python}} --identity ~/.ssh/id_ed25519 {QUICK}",
        "the Pi is the loopback OpenSSH server (its port; a python behind it that has the runtime)"),
    "edgefer bench m_int8.tflite --device rpi --host pi@pi4 --host pi@pi5 --json fleet.json": (
        f"edgefer bench m_int8.tflite --device rpi --host {{user}}@127.0.0.1 --host {{user}}@localhost --port {{port}} "
        f"--remote-python {{python}} --json fleet.json {QUICK}",
        "two Pis: the loopback server under two names; m_int8.tflite is a copy of runs/cnn's int8 export"),
    "edgefer bench runs/cnn/export/cnn_int8_qat.tflite --device gpu": (
        "edgefer bench runs/cnn/export/cnn_int8_qat.tflite --device gpu --help",
        "no GPU here: the options parse (tests/test_gpu.py runs the GPU path on SwiftShader)"),
    "edgefer bench m.tflite --device gpu --allow-cpu-fallback": (
        "edgefer bench m.tflite --device gpu --allow-cpu-fallback --help", "no GPU here: the options parse"),
    "edgefer bench m.tflite --device gpu --delegate /usr/lib/libtensorflowlite_gpu_delegate.so": (
        "edgefer bench m.tflite --device gpu --delegate /usr/lib/libtensorflowlite_gpu_delegate.so --help",
        "no GPU delegate library here: the options parse"),
    "edgefer bench runs/*/export/*.tflite --json cpu.json": (
        f"edgefer bench runs/*/export/*.tflite --json cpu.json {QUICK}", "latency timing only"),
    "edgefer compare cpu.json fleet.json --out comparison": (None, None),
    "edgefer zoo ship ~/edgefer-runs/cnn": (f"edgefer zoo ship ~/edgefer-runs/cnn {FAST}", "latency timing only"),
    "edgefer export --int8": ("edgefer export --int8 --force --help",
                              "the same export of the same latest run (the 1-epoch MobileNetV3) already ran above, "
                              "as `edgefer qat && edgefer export --int8`: the options parse"),
    "edgefer train --model cnn --epochs 12 --out runs/demo-cnn": (
        "edgefer train --model cnn --epochs 1 -o width=0.25 --out runs/demo-cnn", "1 epoch of a quarter-width CNN"),
    "edgefer zoo build cnn_int8 --data fer2013.csv": (
        "edgefer zoo build cnn_int8 --data fer2013.csv --help",
        "the recipe's 45 + 3 epochs take hours: the options parse; tests/test_shipped_graded.py runs the "
        "command for real with --epochs 1"),
}


def readme_commands() -> list[str]:
    """Each command line of the README's ```bash blocks, without its comment; a repeated one once."""
    blocks = re.findall(r"^```bash\n(.*?)^```", README.read_text(), flags=re.S | re.M)
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for block in blocks for line in block.splitlines()]
    return list(dict.fromkeys(line for line in lines if line))


def test_every_readme_command_is_in_the_table():
    commands = readme_commands()
    assert "edgefer bench runs/cnn/best.keras runs/cnn/export/*" in commands  # the parser finds the blocks
    unknown = [c for c in commands if c not in COMMANDS]
    assert not unknown, f"README commands this test does not know; add each to COMMANDS: {unknown}"
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f"COMMANDS entries the README no longer has: {stale}"


def _demo_recipe() -> list[str]:
    """The shell lines of the Makefile's `demo` target."""
    text = (ROOT / "Makefile").read_text()
    body = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, flags=re.M).group(1)
    return [line.strip() for line in body.splitlines()]


def test_readme_says_what_make_demo_runs():
    recipe = _demo_recipe()
    bench = [line for line in recipe if "edgefer bench" in line]
    assert bench == [".venv/bin/edgefer bench --shipped --min-seconds 1 --out runs/demo-bench"], recipe
    assert "`make demo` runs `edgefer bench --shipped --min-seconds 1 --out runs/demo-bench`" in README.read_text()


@pytest.fixture
def workspace(tmp_path, fer):
    from test_predict import _astronaut, _grace, _video
    from PIL import Image

    ws = tmp_path / "ws"
    (ws / "photos").mkdir(parents=True)
    (ws / "runs").mkdir()
    write_csv(ws / "fer2013.csv", fer, pick_rows(fer, 150))
    Image.fromarray(_astronaut()).save(ws / "photos" / "astronaut.png")
    Image.fromarray(_grace()).save(ws / "photos" / "grace.jpg", quality=92)
    _video(ws / "clip.mp4", frames=8)
    (ws / "shots").mkdir()
    Image.fromarray(_astronaut()).save(ws / "shots" / "a.jpg", quality=92)
    Image.fromarray(_grace()).save(ws / "shots" / "b.jpg", quality=92)
    (ws / "my_boxes.csv").write_text("source,x,y,w,h\nastronaut.png,170,60,100,120\n")
    home = ws / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "edgefer-runs").symlink_to(ws / "runs")
    return ws


def _check_the_card_path(ws: Path, env: dict, said: str) -> None:
    """After the card's `train --model mobilenetv3`, `qat`, `export --int8` on the full-block MobileNetV3: both
    int8 files and their sidecars are written and named; the ONNX file loads as written in ORT's EXACT_INT8 mode
    (which refused tf2onnx's shared constants) and agrees with the TFLite file; so does the post-training ONNX
    file (ORT's own quantiser shares constants between DequantizeLinear nodes too)."""
    import onnxruntime as ort

    from edge_fer.data import load_fer
    from edge_fer.runtime import open_model
    from edge_fer.runtime.onnx_model import EXACT_INT8

    run_dir = ws / "runs" / "mobilenetv3_small"
    assert json.loads((run_dir / "config.json").read_text())["model_options"] == {}  # every block, full width
    export = run_dir / "export"
    tflite, onnx_file = export / "mobilenetv3_small_int8_qat.tflite", export / "mobilenetv3_small_int8_qat.onnx"
    for f in (tflite, onnx_file):
        assert f.is_file() and Path(f"{f}.json").is_file() and f.name in said, said
    so = ort.SessionOptions()
    so.add_session_config_entry(EXACT_INT8, "1")
    session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
    faces = load_fer(ws / "fer2013.csv")["test"].x
    by_onnx = session.run(None, {session.get_inputs()[0].name: faces.astype(np.float32)[..., None]})[0].argmax(1)
    assert (by_onnx == open_model(tflite).predict(faces).argmax(1)).mean() >= 0.98
    p = _sh("edgefer export runs/mobilenetv3_small --int8 --from ptq --formats onnx --force --out ptq", ws, env)
    assert p.returncode == 0, p.stderr[-3000:]
    ort.InferenceSession(str(ws / "ptq" / "mobilenetv3_small_int8.onnx"), so, providers=["CPUExecutionProvider"])


def _check_the_main_job(out: Path) -> None:
    """`make demo`'s bench: one record per shipped file and thread count, each measured on the embedded sample's
    600 PrivateTest faces, the table naming every shipped model apart (two share an architecture), a plot."""
    from edge_fer.zoo import shipped_models

    records = json.loads((out / "bench.json").read_text())
    files = sorted(f"{m.name}{suffix}" for m in shipped_models() for suffix in m.files)
    said = [(r["model"], r["status"], r.get("threads"), r.get("data"), r.get("n")) for r in records]
    assert sorted({r["model"] for r in records}) == files and len(records) == 2 * len(files), said
    assert all(r["status"] == "ok" and "sample" in r["data"] and r["n"] == 600 for r in records), said
    assert (out / "pareto_cpu.png").stat().st_size > 10_000
    table = (out / "bench_comparison.md").read_text()
    assert all(f"| {m.name} | " in table for m in shipped_models()), table


def _sh(line: str, ws: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=ws, env=env, capture_output=True, text=True, timeout=900)


def _add_the_trained_cnn(ws: Path, request) -> None:
    """`runs/cnn`: the suite's trained run (the `trained` fixture, built once per test run), as trained."""
    trained = request.getfixturevalue("trained")
    shutil.copytree(trained.run_dir, ws / "runs" / "cnn", ignore=shutil.ignore_patterns("qat", "export", "tb"))


@pytest.mark.slow
def test_every_readme_command_runs_as_written(workspace, sshd, request):
    ws = workspace
    home = ws / "home"
    shutil.copy(sshd.key, home / ".ssh" / "id_ed25519")
    os.chmod(home / ".ssh" / "id_ed25519", 0o600)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFER_")}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}", HOME=str(home))
    user = sshd.host.split("@")[0]
    ran = []
    for readme, (line, why) in COMMANDS.items():
        if readme in ("make test", "source .venv/bin/activate"):
            continue
        if readme == "make demo":
            lines = [l.replace(".venv/bin/", f"{VENV_BIN}/").replace("--min-seconds 1 ", f"{QUICK} ")
                     for l in _demo_recipe()]
        else:
            lines = [(line or readme).format(user=user, port=sshd.port, python=shlex.quote(sshd.python))]
        if readme.startswith("edgefer bench m_int8.tflite"):
            for suffix in ("", ".json"):
                shutil.copy(ws / "runs" / "cnn" / "export" / f"cnn_int8_qat.tflite{suffix}", ws / f"m_int8.tflite{suffix}")
        for shell_line in lines:
            if re.search(r"runs/cnn\b", shell_line) and not (ws / "runs" / "cnn").exists():
                _add_the_trained_cnn(ws, request)
            t0 = time.monotonic()
            p = _sh(shell_line, ws, env)
            ran.append(f"{time.monotonic() - t0:6.1f} s  {shell_line}")
            assert p.returncode == 0 and "Traceback" not in p.stderr, (
                f"README command failed: {readme}\nran: {shell_line}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}\n"
                "before it:\n" + "\n".join(ran))
            if readme == "edgefer qat && edgefer export --int8":
                _check_the_card_path(ws, env, p.stdout + p.stderr)
            if readme == "edgefer bench runs/cnn/best.keras runs/cnn/export/*":
                # the glob brings the .json sidecars and export_report.json along: skipped, every model measured
                assert "skipped" in p.stderr and "metadata file(s)" in p.stderr, p.stderr
                models = sorted(f.name for f in (ws / "runs" / "cnn" / "export").iterdir() if f.suffix == ".tflite")
                for name in ["best.keras", *models]:
                    assert f"{name} × 1 thread(s)" in p.stdout, (name, p.stdout)
    # what the README says these commands write; `make demo`: every shipped file, on the embedded sample
    for f in ("bench.json", "bench_comparison.md", "bench_comparison.csv", "bench_comparison.json", "pareto_cpu.png"):
        assert (ws / "runs" / "demo-bench" / f).is_file(), f
    _check_the_main_job(ws / "runs" / "demo-bench")
    fleet = json.loads((ws / "fleet.json").read_text())
    assert {r["host"] for r in fleet} == {f"{user}@127.0.0.1", f"{user}@localhost"}
    assert all(r["status"] == "ok" for r in fleet)
    assert (ws / "faces.csv").is_file() and (ws / "comparison" / "bench_comparison.md").is_file()
    assert sorted(p.name for p in (ws / "runs" / "cnn" / "shipped").glob("*.tflite")) == ["cnn_int8.tflite"]
    assert len(ran) == len(COMMANDS) - 2 + len(_demo_recipe()) - 1  # make demo is its recipe's lines
    print("\n".join(ran))  # the time each command took (pytest -s, or -rP)



def _results_rows() -> dict:
    rows = json.loads((ROOT / "docs" / "results" / "results.json").read_text())
    return {r["architecture"]: r for r in rows}


def test_readme_figures_are_those_of_the_results_page():
    """The stride-2 MobileNetV3-Small figures and the emulated-Pi paragraph say what docs/results.md measured."""
    text = " ".join(README.read_text().split())
    rows = _results_rows()
    stride2 = rows["mobilenetv3_small"]["test"]
    m = re.search(r"stride-2 design reaches only ([\d.]+)% PrivateTest accuracy at 48×48, ([\d.]+)% in int8", text)
    assert m, "the README no longer quotes the stride-2 MobileNetV3-Small's accuracy; update this test"
    assert (m[1], m[2]) == (f"{stride2['float32']['accuracy']:.1%}"[:-1], f"{stride2['int8']['accuracy']:.1%}"[:-1])

    assert ("every int8 model of [docs/results.md](docs/results.md) gave x86's labels on the first 200 PrivateTest "
            "faces (100 for ResNet-50), and raw outputs of 8 faces equal bit for bit except the stride-1 full-block "
            "MobileNetV3-Small's, within one int8 step") in text
    pi = {name: r["emulated_pi"] for name, r in rows.items()}
    assert all(p["labels_equal"] == 1.0 and p["sample_outputs"] == 8 for p in pi.values()), pi
    assert {n: p["faces"] for n, p in pi.items() if p["faces"] != 200} == {"resnet50": 100}
    assert [n for n, p in pi.items() if not p["sample_outputs_equal"]] == ["mobilenetv3_small (stem_stride=1)"]
    assert pi["mobilenetv3_small (stem_stride=1)"]["sample_outputs_max_diff"] == 1.0


def test_bench_skips_the_metadata_files_a_glob_brings(tmp_path):
    """`edgefer bench runs/cnn/export/*` hands bench each model's .json sidecar and export_report.json too:
    those are skipped; a .json that belongs to no model given is still judged (and refused) as a model."""
    from edge_fer.device_bench.bench import without_metadata_files

    export = tmp_path / "export"
    export.mkdir()
    for name in ("a.tflite", "a.tflite.json", "b.onnx", "b.onnx.json", "c.tflite.json", "export_report.json"):
        (export / name).write_text("x")
    given = [str(p) for p in sorted(export.iterdir())]
    assert without_metadata_files(given) == [str(export / "a.tflite"), str(export / "b.onnx"),
                                             str(export / "c.tflite.json")]
    assert without_metadata_files([str(export / "a.tflite.json")]) == [str(export / "a.tflite.json")]
