"""Other datasets, FERPlus majority labels and calibrated confidence, on real data and real runtimes.

    .venv/bin/python -m pytest -p no:xdist tests/test_crossdata.py
"""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edge_fer.cli import main
from edge_fer.data.ferplus import ferplus_majority
from edge_fer.data.labelled import class_lookup, load_ferplus_split, read_labelled
from edge_fer.errors import DataError
from edge_fer.labels import CLASSES
from edge_fer.report.confidence import apply_temperature, expected_calibration_error, fit_temperature, nll

from conftest import SHARED_DATA, assert_user_error

CK = SHARED_DATA / "ckplus48.npz"
CK_COUNTS = {"angry": 135, "disgust": 177, "fear": 75, "happy": 207, "sad": 84, "surprise": 249, "neutral": 0}


def test_their_class_names_map_to_ours_and_an_unknown_one_says_how_to_drop_or_map_it(tmp_path):
    lookup = class_lookup(["anger", "Happiness", "sadness", "surprised", "fearful", "disgust", "Neutral"])
    assert {k: CLASSES[v] for k, v in lookup.items()} == {
        "anger": "angry", "Happiness": "happy", "sadness": "sad", "surprised": "surprise", "fearful": "fear",
        "disgust": "disgust", "Neutral": "neutral"}
    with pytest.raises(DataError) as e:
        class_lookup(["anger", "contempt"], source="ck.npz")
    msg = str(e.value)
    assert "\n" not in msg and "'contempt'" in msg and "--drop-class contempt" in msg and "--class-map contempt=" in msg
    assert class_lookup(["contempt"], drop=["contempt"]) == {"contempt": -1}
    assert class_lookup(["contempt"], class_map="contempt=disgust") == {"contempt": CLASSES.index("disgust")}
    # a folder ROOT/<class>/ with the dataset's own names
    for name, value in (("happiness", 200), ("anger", 20)):
        (tmp_path / "set" / name).mkdir(parents=True)
        Image.fromarray(np.full((64, 64), value, np.uint8)).save(tmp_path / "set" / name / "a.png")
    s = read_labelled(tmp_path / "set")
    assert sorted(s.y.tolist()) == [CLASSES.index("angry"), CLASSES.index("happy")] and s.x.shape == (2, 48, 48)
    # a csv with class names, and an npz with integer labels named by its own 'classes'
    face = " ".join(["128"] * 48 * 48)
    (tmp_path / "set.csv").write_text(f"label,pixels\nsurprised,{face}\nsadness,{face}\n")
    assert [CLASSES[i] for i in read_labelled(tmp_path / "set.csv").y] == ["surprise", "sad"]
    np.savez(tmp_path / "set.npz", pixels=np.zeros((3, 48, 48), np.uint8), labels=np.array([2, 0, 1]),
             classes=np.array(["happiness", "fearful", "neutral"]))
    assert [CLASSES[i] for i in read_labelled(tmp_path / "set.npz").y] == ["neutral", "happy", "fear"]


def test_ckplus48_needs_contempt_dropped_or_mapped_in_one_line(tmp_path):
    r = CliRunner().invoke(main, ["evaluate", "ferlite_int8", "--data", str(CK)])
    assert_user_error(r, "'contempt'", "--drop-class contempt", "--class-map contempt=")
    mapped = read_labelled(CK, class_map=["contempt=disgust"])
    assert len(mapped) == 981 and int((mapped.y == CLASSES.index("disgust")).sum()) == 177 + 54


def test_a_shipped_model_evaluated_on_ckplus48(tmp_path):
    out = tmp_path / "ck.json"
    r = CliRunner().invoke(main, ["evaluate", "ferlite_int8", "--data", str(CK), "--drop-class", "contempt",
                                  "--json", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads(out.read_text())
    assert rep["n"] == 927 and rep["split"] == "all" and rep["left_out"] == {"class contempt": 54}
    assert {c: v["support"] for c, v in rep["per_class"].items()} == CK_COUNTS
    assert rep["macro_present"]["classes"] == [c for c in CLASSES if c != "neutral"]
    # the report's accuracy is the model's on these faces (chance is 1/6; FER2013-trained models reach ~0.7)
    assert 0.5 < rep["accuracy"] < 0.95 and 0 <= rep["ece"] < 0.3
    recall = {c: v["recall"] for c, v in rep["per_class"].items()}
    assert recall["happy"] > 0.8 and recall["surprise"] > 0.8, recall


def test_ferplus_majority_follows_the_authors_rule(fer_npz, ferplus_csv):
    #        neutral happy surprise sad anger disgust fear contempt unknown NF
    votes = [[4, 0, 0, 1, 3, 2, 0, 0, 0, 0],   # single vote dropped: 4 of 9 is no majority
             [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],  # happy
             [2, 0, 0, 0, 0, 0, 0, 6, 1, 1],   # contempt: not one of ours
             [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],   # not a face
             [1, 0, 6, 0, 0, 0, 3, 0, 0, 0]]   # 6 of 9 (the single neutral vote dropped): surprise
    labels, reason = ferplus_majority(np.array(votes, float))
    assert labels.tolist() == [-1, CLASSES.index("happy"), -1, -1, CLASSES.index("surprise")]
    assert reason.tolist() == ["no majority", "", "contempt", "not a face", ""]
    s = load_ferplus_split(fer_npz, ferplus_csv, "test")
    assert len(s) == 3137 and sum(s.dropped.values()) + len(s) == 3589
    assert np.bincount(s.y, minlength=7).tolist() == [273, 18, 83, 893, 384, 396, 1090]
    assert len(s.extra["fer2013_y"]) == len(s) and 0.6 < float((s.extra["fer2013_y"] == s.y).mean()) < 0.75


def test_ece_on_a_known_case():
    # 10 faces at confidence 0.9, 9 right: calibrated (0); 5 at 0.6, all right: |1 - 0.6| on a third of the faces
    p_hi = np.tile([0.9, 0.1, 0, 0, 0, 0, 0], (10, 1))
    p_lo = np.tile([0.6, 0.4, 0, 0, 0, 0, 0], (5, 1))
    y = np.array([0] * 9 + [1] + [0] * 5)
    probs = np.vstack([p_hi, p_lo])
    assert expected_calibration_error(probs[:10], y[:10]) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probs, y) == pytest.approx(5 / 15 * 0.4, abs=1e-12)
    # confidence 0.6 and 0.9 in one bin when the bins are wide: |14/15 - (10*0.9+5*0.6)/15|
    assert expected_calibration_error(probs, y, bins=1) == pytest.approx(abs(14 / 15 - 12 / 15), abs=1e-12)


def test_a_temperature_fitted_on_publictest_lowers_its_nll(fer_npz, ferplus_csv):
    from edge_fer.report.model_eval import model_probabilities

    val = load_ferplus_split(fer_npz, ferplus_csv, "validation")  # PublicTest, FERPlus majority labels
    val.x, val.y = val.x[:1500], val.y[:1500]
    probs, rec = model_probabilities("ferlite_int8", val.x, temperature=1.0)
    assert rec.temperature == 1.0
    t = fit_temperature(probs, val.y)
    before, after = nll(probs, val.y), nll(apply_temperature(probs, t), val.y)
    assert abs(t - 1.0) > 0.02 and after < before - 1e-3, (t, before, after)
    # a minimum: a little warmer or cooler is worse
    assert after <= nll(apply_temperature(probs, t * 1.1), val.y)
    assert after <= nll(apply_temperature(probs, t / 1.1), val.y)
    # the Recognizer applies a temperature it is given, in classify: the one place
    warm, _ = model_probabilities("ferlite_int8", val.x[:64], temperature=t)
    np.testing.assert_allclose(warm, apply_temperature(probs[:64], t), atol=1e-6)


def _faces_as_images(fer_npz, tmp_path, n=12):
    with np.load(fer_npz) as d:
        rows = np.flatnonzero(d["usage"] == "PrivateTest")[:n]
        faces = d["pixels"][rows]
    boxes = ["source,x,y,w,h"]
    for i, f in enumerate(faces):
        Image.fromarray(f).resize((96, 96)).save(tmp_path / f"face{i:02d}.png")
        boxes.append(f"face{i:02d}.png,8,8,80,80")
    (tmp_path / "boxes.csv").write_text("\n".join(boxes) + "\n")
    return tmp_path


def _records(path):
    return {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line) for line in path.read_text().splitlines()}


def test_uncertain_below_labels_low_confidence_faces_only(fer_npz, tmp_path):
    d = _faces_as_images(fer_npz, tmp_path)
    run = CliRunner()

    def predict(out, *extra):
        r = run.invoke(main, ["predict", *sorted(str(p) for p in d.glob("face*.png")), "--boxes", str(d / "boxes.csv"),
                              "--no-annotate", "--json", str(out), "-m", "ferlite_int8", *extra])
        assert r.exit_code == 0, r.output
        return _records(out)

    plain = predict(tmp_path / "plain.jsonl")
    tops = sorted(r["probability"] for r in plain.values())
    assert all(r["label"] in CLASSES for r in plain.values())  # off by default
    cut = (tops[len(tops) // 2 - 1] + tops[len(tops) // 2]) / 2
    marked = predict(tmp_path / "marked.jsonl", "--uncertain-below", f"{cut}")
    for name, r in plain.items():
        m = marked[name]
        assert m["probability"] == r["probability"] and m["probabilities"] == r["probabilities"]
        assert m["label"] == ("uncertain" if r["probability"] < cut else r["label"]), (name, r["probability"], cut)
    assert sum(m["label"] == "uncertain" for m in marked.values()) == len(tops) // 2
    bad = run.invoke(main, ["predict", str(d / "face00.png"), "--uncertain-below", "1.5"])
    assert bad.exit_code == 2 and "1.5" in bad.output


def test_a_shipped_card_states_temperature_and_ece_and_the_recognizer_applies_it(trained, exported, subset, tmp_path):
    import shutil

    import edge_fer.zoo.ship as ship
    from edge_fer.data import load_fer
    from edge_fer.predict.recognizer import Recognizer

    run_dir = tmp_path / "cnn"
    shutil.copytree(trained.run_dir, run_dir)
    (run_dir / "export").mkdir(exist_ok=True)
    for f in exported.glob("cnn_int8.*"):
        shutil.copy(f, run_dir / "export" / f.name)
    # a training run evaluates on another dataset too (its float checkpoint, no temperature)
    from edge_fer.report.model_eval import evaluate_model

    r = evaluate_model(run_dir, data=CK, drop=["contempt"])
    assert r["n"] == 927 and r["model"] == "cnn" and r["temperature"] is None and 0 < r["accuracy"] < 1
    card = ship.ship_run(run_dir, dest=tmp_path / "shipped", force=True, threads=[1], min_seconds=0.1)
    c = card["calibration"]
    assert c["fitted_on"] == "PublicTest" and c["reported_on"] == "PrivateTest" and c["temperature"] > 0
    assert c["validation_nll_after"] <= c["validation_nll_before"] and 0 <= c["ece_after"] < 1
    shipped = tmp_path / "shipped" / "cnn_int8.tflite"
    assert json.loads(Path(str(shipped) + ".json").read_text())["calibration"]["temperature"] == c["temperature"]
    assert f"temperature {c['temperature']:g}" in (tmp_path / "shipped" / "cnn_int8.md").read_text()
    faces = load_fer(subset)["test"].x[:32]
    rec, raw = Recognizer(shipped, detector=None), Recognizer(shipped, detector=None, temperature=1.0)
    assert rec.temperature == c["temperature"]
    np.testing.assert_allclose(rec.classify(faces), apply_temperature(raw.classify(faces), c["temperature"]), atol=1e-6)
    # a model whose metadata has no temperature keeps its probabilities
    assert Recognizer("cnn_int8", detector=None).temperature is None


def test_the_results_page_keeps_the_rendered_block_when_it_is_regenerated(tmp_path):
    from edge_fer.report.shipped_eval import END, START, carry, write_block

    page = tmp_path / "results.md"
    page.write_text("# Results\n\ntable v1\n")
    write_block(page, f"{START}\n## FERPlus\nfigures\n{END}\n")
    regenerated = carry(page.read_text(), "# Results\n\ntable v2\n")
    assert regenerated.startswith("# Results\n\ntable v2\n") and "## FERPlus\nfigures" in regenerated
    page.write_text(regenerated)
    write_block(page, f"{START}\n## FERPlus\nnew figures\n{END}\n")
    text = page.read_text()
    assert text.count(START) == 1 and "new figures" in text and "table v2" in text


def test_the_results_page_says_which_labels_each_model_learned_from_its_card():
    """The FERPlus section's 'learned' column and the calibration sentence come from the shipped cards and
    model files, and the reproduce loop names every model the page reports."""
    import json
    from pathlib import Path

    from edge_fer.report.shipped_eval import kind_of, render
    from edge_fer.zoo import shipped_models

    reports = []
    for p in sorted(Path("docs/results/shipped_eval").glob("*.json")):
        reports.append({**json.loads(p.read_text()), "_kind": kind_of(p)})
        reports[-1]["format_label"] = reports[-1]["labels"]
    text = render(reports)
    learned = {m.name: m.card["labels"]["learned"] for m in shipped_models()}
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and " | tflite | " in line
            and line.count("|") > 12]
    assert rows and all(r[2] == learned[r[0].lstrip("| ")] for r in rows)
    loop = next(line for line in text.splitlines() if line.startswith("for m in "))
    assert set(loop[len("for m in "):-len("; do")].split()) == {
        Path(r["model_path"]).name.replace(".tflite", "") for r in reports}
    carrying = next(line for line in text.splitlines() if "Carrying" in line)
    from edge_fer.runtime.metadata import read_metadata

    for m in shipped_models():
        t = ((read_metadata(m.path)[0] or {}).get("calibration") or {}).get("temperature")
        parts = {seg.split(":")[0].split(" ")[0]: seg for seg in carrying.split("Carrying ")[1:]}
        assert f"`{m.name}`" in parts.get("one" if t else "none", "")
