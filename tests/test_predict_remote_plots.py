"""edgefer predict on oversized images, the Recognizer's record shape, the rpi target against an SSH
server without SFTP, the figures the reports draw, and what model cards and stderr carry."""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge_fer.errors import EdgeFerError

README = Path(__file__).resolve().parents[1] / "README.md"


def _png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit grey PNG declaring side×side pixels: a few tens of KB on disk, gigabytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def photos(tmp_path):
    import skimage.data
    from PIL import Image

    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skimage.data.coffee()).save(d / "coffee.jpg")
    _png_bomb(d / "bomb.png")
    return d


def _records(path: Path) -> dict:
    by_source = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    return by_source


# ------------------------------------------------------------------ predict: decompression bombs

def test_a_huge_image_is_one_error_line_and_the_rest_of_the_folder_runs(run, photos, tmp_path):
    out = tmp_path / "out"
    r = run("predict", photos, "--out", out)
    assert r.exit_code == 0 and r.exception is None, (r.exception, r.output)
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "bomb.png" in errors[0], r.stderr
    assert "20000×20000" in errors[0] and "above the limit of 180,000,000" in errors[0] \
        and "--max-pixels 400000000" in errors[0], errors[0]
    recs = _records(out / "predictions.jsonl")
    assert [x["status"] for x in recs["bomb.png"]] == ["error"] and "--max-pixels" in recs["bomb.png"][0]["error"]
    assert [x["status"] for x in recs["astronaut.png"]] == ["ok"]
    assert [x["status"] for x in recs["coffee.jpg"]] == ["no_face"]  # the records file keeps faceless frames
    assert (out / "astronaut.annotated.png").stat().st_size > 0


def test_max_pixels_is_stated_in_help_and_can_be_changed(run, photos, tmp_path):
    from edge_fer.predict.sources import DEFAULT_MAX_PIXELS

    h = run("predict", "--help")
    assert "--max-pixels" in h.output and "decompression" in h.output and f"{DEFAULT_MAX_PIXELS}" in h.output
    # a lower limit skips the astronaut (512×512) too; the coffee (400×600 = 240,000) still runs
    r = run("predict", photos, "--out", tmp_path / "o", "--max-pixels", 250_000)
    assert r.exit_code == 0, r.output
    errors = sorted(l for l in r.stderr.splitlines() if l.startswith("error:"))
    assert len(errors) == 2 and "astronaut.png: 512×512 = 262,144 pixels" in errors[0] and "bomb.png" in errors[1]
    bad = run("predict", photos, "--max-pixels", 0)
    assert bad.exit_code == 2 and "--max-pixels" in bad.output and "must be ≥ 1 pixel, got 0" in bad.output


def test_read_image_refuses_from_the_header(tmp_path):
    from edge_fer.predict.sources import read_image

    bomb = _png_bomb(tmp_path / "b.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(EdgeFerError, match=r"20000×20000 = 400,000,000 pixels, above the limit of 1,000"):
        read_image(bomb, max_pixels=1000)
    small = _png_bomb(tmp_path / "s.png", side=100)
    assert read_image(small, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(EdgeFerError, match="10,000 pixels, above the limit of 9,999"):
        read_image(small, max_pixels=9_999)


# ------------------------------------------------------------------ Recognizer: one record shape

RECORD_KEYS = {"source", "frame", "time", "face", "status", "box", "score", "landmarks", "label", "probability",
               "probabilities", "detector", "model"}


def test_recognizer_returns_faces_only_with_one_shape():
    import skimage.data

    from edge_fer.predict import Recognizer

    rec = Recognizer("cnn_int8")
    faces = rec.predict(skimage.data.astronaut())
    assert len(faces) == 1 and set(faces[0]) == RECORD_KEYS and faces[0]["status"] == "ok"
    assert rec.predict(skimage.data.coffee()) == []
    assert rec.predict(np.zeros((240, 320, 3), np.uint8)) == []  # a blank frame


def test_readme_recognizer_snippet_runs_on_a_frame_with_and_without_a_face(capsys):
    import skimage.data

    text = README.read_text()
    start = text.index('for face in Recognizer("cnn_int8").predict(rgb_frame):')
    snippet = "\n".join(text[start:].splitlines()[:2])
    from edge_fer import Recognizer

    for rgb_frame, lines in ((skimage.data.astronaut(), 1), (np.zeros((240, 320, 3), np.uint8), 0)):
        exec(snippet, {"Recognizer": Recognizer, "rgb_frame": rgb_frame})
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == lines, printed


# ------------------------------------------------------------------ rpi target: an SSH server without SFTP

@pytest.fixture(scope="module")
def sshd_no_sftp(tmp_path_factory):
    """A loopback OpenSSH server (throwaway keys) with no ``Subsystem sftp`` line, as some minimal
    device images ship it; the remote python is this venv's."""
    import sys

    from conftest import loopback_sshd

    with loopback_sshd(tmp_path_factory.mktemp("sshd-no-sftp"), sftp=False) as server:
        server.python = sys.executable
        yield server


@pytest.fixture(scope="module")
def few_faces(fer, tmp_path_factory):
    from conftest import write_subset_npz

    rows = np.concatenate([np.flatnonzero(fer["usage"] == u)[:30] for u in ("Training", "PublicTest", "PrivateTest")])
    return write_subset_npz(tmp_path_factory.mktemp("faces") / "faces.npz", fer, rows)


def _no_sftp_target(server):
    from edge_fer.device_bench.remote import RemoteTarget

    return RemoteTarget(server.host, port=server.port, identity=str(server.key), known_hosts=server.known_hosts,
                        remote_python=server.python)


def test_rpi_without_sftp_copies_through_the_shell(sshd_no_sftp, few_faces):
    import paramiko

    from edge_fer.device_bench.bench import bench_models
    from edge_fer.zoo import resolve_model

    model = resolve_model("cnn_int8")
    before = set(Path("/tmp").glob("edgefer-bench.*"))
    with _no_sftp_target(sshd_no_sftp) as pi:
        with pytest.raises((paramiko.SSHException, EOFError)):
            pi.client.open_sftp()  # the server really has no SFTP
        remote = bench_models([model], device="rpi", threads=[1], data=str(few_faces), min_seconds=0.05, target=pi)
    local = bench_models([model], device="cpu", threads=[1], data=str(few_faces), min_seconds=0.05)
    assert remote[0]["status"] == "ok", remote[0].get("reason")
    assert remote[0]["accuracy"] == local[0]["accuracy"]
    assert remote[0]["confusion_matrix"] == local[0]["confusion_matrix"]
    assert set(Path("/tmp").glob("edgefer-bench.*")) == before  # the temporary directory is gone


def test_rpi_without_sftp_or_a_working_shell_copy_is_an_unavailable_record(sshd_no_sftp, few_faces, monkeypatch):
    from edge_fer.device_bench.bench import bench_models
    from edge_fer.device_bench.remote import RemoteTarget
    from edge_fer.zoo import resolve_model

    real_run = RemoteTarget.run

    def run(self, command, **kw):  # a device whose /tmp refuses writes from the shell
        if command.startswith("cat > "):
            return 1, "", "sh: 1: cannot create /tmp/x/runner.py: Read-only file system\n"
        return real_run(self, command, **kw)

    monkeypatch.setattr(RemoteTarget, "run", run)
    with _no_sftp_target(sshd_no_sftp) as pi:
        [r] = bench_models([resolve_model("cnn_int8")], device="rpi", threads=[1], data=str(few_faces),
                           min_seconds=0.05, target=pi)
    assert r["status"] == "unavailable", r
    assert "no SFTP" in r["reason"] and "Read-only file system" in r["reason"] and "Subsystem sftp" in r["reason"]
    assert "\n" not in r["reason"]


def test_cli_bench_rpi_without_sftp_has_no_traceback(sshd_no_sftp, few_faces, tmp_path):
    import subprocess
    import sys

    from edge_fer.zoo import resolve_model

    p = subprocess.run(
        [sys.executable, "-m", "edge_fer.cli", "bench", str(resolve_model("cnn_int8")), "--device", "rpi", "--host",
         sshd_no_sftp.host, "--port", str(sshd_no_sftp.port), "--identity", str(sshd_no_sftp.key), "--known-hosts",
         str(sshd_no_sftp.known_hosts), "--remote-python", sshd_no_sftp.python, "--threads", "1", "--data",
         str(few_faces), "--min-seconds", "0.05"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert f"rpi:{sshd_no_sftp.host}" in p.stdout and " ok" in p.stdout, p.stdout


# ------------------------------------------------------------------ figures

def _bench_rows():
    rows = []
    for arch, acc, base, kb in (("cnn", 0.69, 3.0, 1700), ("ferlite", 0.67, 1.5, 400), ("mobilenetv3_small", 0.62, 1.2, 900),
                                ("resnet50", 0.70, 40, 90000), ("vgg16", 0.695, 60, 56000)):
        for fmt in ("tflite", "onnx"):
            for prec in ("float32", "int8"):
                for t in (1, 2):
                    lat = base * (1 if prec == "float32" else 0.45) * (1 if t == 1 else 0.6) * (1 if fmt == "tflite" else 1.1)
                    rows.append({"architecture": arch, "format": fmt, "precision": prec, "device": "cpu", "threads": t,
                                 "accuracy": acc - (0.003 if prec == "int8" else 0), "p50_ms": lat,
                                 "size_kb": kb / (4 if prec == "int8" else 1)})
    return rows


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions save, kept open to be inspected."""
    from edge_fer.report import plots

    figs = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig) or real(fig, path))
    return figs


def _boxes(fig, artists):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()  # saved figures are closed: draw again on a canvas of their own
    r = fig.canvas.get_renderer()
    return [a.get_window_extent(r) for a in artists]


def test_pareto_colours_mean_architecture_and_nothing_overlaps(tmp_path, drawn):
    from matplotlib.colors import to_hex

    from edge_fer.report.bench_compare import pareto_front, plot_pareto

    rows = [{**r, "status": "ok", "source": "", "macro_f1": None, "p90_ms": None, "model": "m"} for r in _bench_rows()]
    front = pareto_front([(r["p50_ms"], r["accuracy"]) for r in rows])
    assert plot_pareto(rows, "cpu", tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    [fig] = drawn
    ax = fig.axes[0]
    colour_of = {}
    for r, coll in zip(rows, ax.collections):
        colour_of.setdefault(r["architecture"], set()).add(to_hex(coll.get_edgecolor()[0], keep_alpha=False))
    assert all(len(c) == 1 for c in colour_of.values()), colour_of  # one colour per architecture
    assert len(set().union(*colour_of.values())) == len(colour_of)  # and a different one for each
    legends = [a for a in ax.artists if type(a).__name__ == "Legend"]
    titles = {lg.get_title().get_text().split("\n")[0] for lg in legends}
    assert "architecture (colour)" in titles and set(colour_of) <= {t.get_text() for lg in legends for t in lg.get_texts()}
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    key = [t for t in ax.texts if t.get_text().startswith("Pareto front")]
    assert [t.get_text() for t in numbers] == [str(i) for i in range(1, len(front) + 1)] and len(key) == 1
    assert len(key[0].get_text().splitlines()) == len(front) + 1
    axes_box, *side = _boxes(fig, [ax] + legends + key)
    for b in side:  # the legends and the key sit beside the axes, not on the points or the ticks
        assert b.x0 >= axes_box.x1, (b, axes_box)
    for i, a in enumerate(side):
        for b in side[i + 1:]:
            assert not a.overlaps(b), (a, b)
    for b in _boxes(fig, numbers):
        assert axes_box.contains(b.x0, b.y0) and axes_box.contains(b.x1, b.y1)


def test_one_epoch_training_curves_show_points_on_whole_epochs(tmp_path, drawn):
    from edge_fer.report.plots import plot_history

    one = [{"epoch": 1, "accuracy": 0.3, "val_accuracy": 0.35, "loss": 1.7, "val_loss": 1.6}]
    assert plot_history(one, tmp_path / "h1.png").read_bytes()[:4] == b"\x89PNG"
    fig = drawn[0]
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 2  # one panel per recorded metric, no empty ones
    for ax in panels:
        assert [l.get_marker() for l in ax.lines] == ["o", "o"]
        assert list(ax.get_xticks()) == [1.0]
    assert "1 epoch" in fig._suptitle.get_text()
    five = [{"epoch": e, "accuracy": 0.1 * e, "val_accuracy": 0.1 * e} for e in range(1, 6)]
    plot_history(five, tmp_path / "h5.png")
    ax = drawn[1].axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_confusion_matrix_says_rows_normalised_and_shows_counts(tmp_path, drawn):
    from edge_fer.labels import CLASSES
    from edge_fer.report.plots import plot_confusion

    rng = np.random.default_rng(0)
    cm = rng.integers(0, 40, (7, 7))
    np.fill_diagonal(cm, rng.integers(100, 300, 7))
    assert plot_confusion(cm.tolist(), CLASSES, tmp_path / "c.png", "cnn on test").read_bytes()[:4] == b"\x89PNG"
    ax = drawn[0].axes[0]
    title = ax.get_title()
    assert "cnn on test" in title and "rows normalised" in title and f"n = {cm.sum()}" in title
    cells = [t.get_text() for t in ax.texts]
    for i in range(7):
        for j in range(7):
            share = cm[i, j] / cm[i].sum()
            assert f"{share:.2f}\n({cm[i, j]})" in cells
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{c} (n={n})" for c, n in zip(CLASSES, cm.sum(axis=1))]


# ------------------------------------------------------------------ model cards and stderr

def test_model_card_describes_its_data_portably(fer, tmp_path):
    """A run trained on data reached through a symlink: the card names the file and its SHA-256, never a path
    of the machine it was made on, and says nothing about that machine beyond its CPU."""
    import hashlib
    import os

    from conftest import pick_rows, write_subset_npz
    from edge_fer.export import export_run
    from edge_fer.training import TrainConfig, train
    from edge_fer.zoo.ship import ship_run

    store = tmp_path / "store"
    store.mkdir()
    real = write_subset_npz(store / "blob-7f3a.npz", fer, pick_rows(fer, 120))
    link = tmp_path / "fer_small.npz"
    os.symlink(real, link)
    cfg = TrainConfig(model="cnn", data=str(link), epochs=1, batch_size=32, augment=False,
                      model_options={"width": 0.25})
    run = train(cfg, tmp_path / "runs" / "cnn", verbose=0).run_dir
    export_run(run, formats=["tflite"], precisions=["int8"], source="ptq", force=True)
    card = ship_run(run, data_path=str(link), dest=tmp_path / "shipped", force=True, threads=(1,), min_seconds=0.05)
    assert card["test"]["data"] == {"file": "fer_small.npz", "bytes": real.stat().st_size,
                                    "sha256": hashlib.sha256(real.read_bytes()).hexdigest()}
    for f in ("cnn_int8.card.json", "cnn_int8.md", "cnn_int8.tflite.json"):
        text = (tmp_path / "shipped" / f).read_text()
        assert str(tmp_path) not in text and str(tmp_path.resolve()) not in text and "blob-7f3a" not in text, f
    md = (tmp_path / "shipped" / "cnn_int8.md").read_text()
    assert "fer_small.npz" in md and "sha256" in md and "shared with other work" not in md


_ORT_PROBE = """
import numpy as np
from onnx import TensorProto, helper, numpy_helper
from edge_fer.calibration import CalibrationSet
from edge_fer.export import convert

rng = np.random.default_rng(0)
inits = [numpy_helper.from_array(rng.normal(size=(48 * 48, 7)).astype(np.float32), "w"),
         numpy_helper.from_array(np.array([-1, 48 * 48], np.int64), "shape"),
         numpy_helper.from_array(np.zeros(3, np.float32), "unused")]  # ORT warns that it removes it
graph = helper.make_graph([helper.make_node("Reshape", ["image", "shape"], ["flat"]),
                           helper.make_node("MatMul", ["flat", "w"], ["logits"]),
                           helper.make_node("Softmax", ["logits"], ["probs"], axis=-1)], "tiny",
                          [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 48, 48, 1])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, 7])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
calib = CalibrationSet(rng.uniform(0, 255, (16, 48, 48, 1)).astype(np.float32), "random faces")
print(len(convert.onnx_int8_from_float(model.SerializeToString(), calib)))
"""


def test_onnx_int8_export_route_writes_no_colour_coded_log_lines(tmp_path):
    """The ONNX post-training int8 route of `edgefer export --int8` and `edgefer calibrate` (ONNX Runtime's
    quantisation tools) on a model ORT warns about: nothing in raw terminal colour codes on stderr."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "EDGEFER_TF_LOGS"}
    p = subprocess.run([sys.executable, "-c", _ORT_PROBE], capture_output=True, text=True, timeout=300, env=env,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert int(p.stdout.split()[-1]) > 0
    assert "\x1b[" not in p.stderr and "onnxruntime" not in p.stderr, p.stderr[-2000:]
    shown = subprocess.run([sys.executable, "-c", _ORT_PROBE], capture_output=True, text=True, timeout=300,
                           env={**env, "EDGEFER_TF_LOGS": "1"}, cwd=tmp_path)
    assert "Removing initializer 'unused'" in shown.stderr  # the switch that shows native logs still works


def test_predict_stderr_has_only_its_own_lines(tmp_path):
    """A camera that does not open: edgefer's own lines only, no OpenCV or LiteRT log lines, no colour codes."""
    import subprocess
    import sys

    env = {k: v for k, v in __import__("os").environ.items() if k not in ("EDGEFER_TF_LOGS", "OPENCV_LOG_LEVEL")}
    p = subprocess.run([sys.executable, "-m", "edge_fer.cli", "predict", "--camera", "97", "--no-annotate", "--json",
                        str(tmp_path / "c.jsonl")], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "\x1b[" not in p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 2 and lines[0].startswith("error: camera 97: could not be opened") \
        and lines[1] == "Error: no input could be read", p.stderr  # no OpenCV or LiteRT log lines


def test_shipped_cards_carry_no_path_of_the_machine_they_were_made_on():
    from edge_fer.zoo import shipped_models

    models = shipped_models()
    assert models
    for m in models:
        d = m.card["test"]["data"]
        assert d["file"] == "fer2013.npz" and len(d["sha256"]) == 64 and d["bytes"] > 0, d
        for f in [m.card_path, m.card_path.with_name(f"{m.name}.card.json"),
                  *(p.with_name(p.name + ".json") for p in m.files.values())]:
            text = f.read_text()
            found = re.findall(r"(?:\"|\(|\s)(/(?:work|root|home|tmp|Users)/[^\s\"]*|\.\./[^\s\")]*)", text)
            assert not found, (f.name, found)
            assert "shared with other work" not in text, f.name
