"""The crop study (edge_fer.report.crop_study): FER2013 faces pasted into frames go through predict's detector
and crop, and the report says how accuracy moves with the margin and the box jitter."""

import contextlib
import json

import numpy as np
import pytest

from edge_fer.report import crop_study


@pytest.fixture(scope="module")
def report(fer_npz):
    # 24 PublicTest faces, YuNet (predict's detector on x86), the default model: a few seconds with one BLAS
    # thread (predict's NumPy crop is small matrix products, which a threaded BLAS slows down on shared cores)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = lambda limits: contextlib.nullcontext()  # noqa: E731
    with threadpool_limits(limits=1):
        return crop_study.run_study(fer_npz, n=24, models=["ferlite_int8"], detectors=["yunet"], margins=[1.0, 3.0],
                                    jitter_levels=[0.3], seed=1)


def test_report_fields_and_known_effects(report):
    assert report["split"] == "PublicTest" and report["n"] == 24 and len(report["rows"]) == 24
    d = report["detectors"]["yunet"]
    # predict's default margin is always measured beside the asked ones
    margins = {x["margin"]: x for x in d["models"]["ferlite_int8"]["margins"]}
    assert set(margins) == {1.0, 3.0, d["default_margin"]}
    # YuNet finds almost every pasted face
    assert d["detection_rate"] > 0.9 and d["detected"] == round(d["detection_rate"] * 24)
    res = d["models"]["ferlite_int8"]
    for key in ("registered", "pasted_box"):
        assert 0.0 <= res[key] <= 1.0
    # a crop three times the box shows a small face in a large frame: the classifier does worse than at the default
    assert margins[3.0]["accuracy"] < margins[d["default_margin"]]["accuracy"], margins
    assert margins[d["default_margin"]]["delta_vs_default"] == 0.0
    kinds = {(j["kind"], j["level"]) for j in res["jitter"]}
    assert kinds == {("none", 0.0), ("shift", 0.3), ("scale", 0.3), ("both", 0.3)}
    # the box YuNet draws is about the size of FER2013's framing
    assert 0.7 < d["box"]["registering_margin"]["median"] < 1.5
    assert d["best_margin"] in margins


def test_window_crop_equals_predicts_crop():
    from edge_fer.predict.detectors import Face
    from edge_fer.predict.recognizer import crop_face

    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, (48, 48)).astype(np.uint8)
    img, (x, y, s, _) = crop_study.paste(face, rng, textured=True)
    for f in (Face((x + 4, y - 2, 0.8 * s, 0.9 * s), 0.9), Face((1, 1, 60, 70), 0.9, {"left_eye": (10, 30), "right_eye": (40, 34)})):
        for m in (0.8, 1.3, 2.0):
            a = crop_study._crop(img, f, m, True).astype(int)
            assert np.abs(a - crop_face(img, f, 48, m, True)).max() <= 1


def test_jitter_moves_and_scales_the_box():
    from edge_fer.predict.detectors import Face

    f = Face((10.0, 20.0, 40.0, 50.0), 0.9)
    g = crop_study.jittered(f, "shift", 0.1, np.array([1.0, -1.0, 1.0]))
    assert g.box == pytest.approx((15.0, 15.0, 40.0, 50.0))
    g = crop_study.jittered(f, "scale", 0.2, np.array([1.0, -1.0, -1.0]))
    assert g.box == pytest.approx((14.0, 25.0, 32.0, 40.0))


def test_render_writes_its_block_and_results_page_keeps_it(report, tmp_path):
    page = tmp_path / "results.md"
    page.write_text("# Results\n\ntext above\n")
    p = tmp_path / "pub.json"
    p.write_text(json.dumps(report))
    crop_study.main(["render", str(p), "--page", str(page), "--plot", str(tmp_path / "crop.png")])
    text = page.read_text()
    assert text.startswith("# Results\n\ntext above\n") and "## The crop the classifier sees" in text
    assert "| yunet (" in text and "](crop.png)" in text and (tmp_path / "crop.png").stat().st_size > 1000
    # rendering again replaces the block instead of adding a second one
    crop_study.main(["render", str(p), "--page", str(page), "--plot", str(tmp_path / "crop.png")])
    assert page.read_text().count(crop_study.START) == 1
    # the results page, rewritten by report.results, keeps the block
    assert crop_study.START in crop_study.carry(page.read_text(), "# Results\n\nnew text\n")


@pytest.mark.parametrize("args, message", [
    (["--margins", "0,1.2"], "margins must be numbers > 0, got [0.0, 1.2]"),
    (["--margins", "a"], "comma-separated numbers"),
    (["--detectors", "mtcnn"], "unknown detector(s) mtcnn"),
    (["--n", "0"], "n must be ≥ 1 face, got 0"),
])
def test_bad_options_are_one_line(fer_npz, tmp_path, args, message):
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as e:
        crop_study.main(["run", "--data", str(fer_npz), "--json", str(out), *args])
    assert str(e.value).startswith("error: ") and message in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()
