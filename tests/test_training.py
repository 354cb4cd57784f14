"""Real training on FER2013 subsets: learns, resumes after kill -9, and reports."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edge_fer.errors import RunError
from edge_fer.report import compare_runs, evaluate_run
from edge_fer.training import TrainConfig, train

from conftest import assert_user_error, pick_rows, write_subset_npz

pytestmark = pytest.mark.slow


def test_short_training_beats_chance(trained):
    # Majority class (happy) is 25% of PublicTest; 4 epochs on 6k faces reach ~40%.
    assert trained.best["val_accuracy"] > 0.33, trained.best
    state = json.loads((trained.run_dir / "state.json").read_text())
    assert state["status"] == "finished" and state["epoch"] == 4
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    for key in ("accuracy", "loss", "precision", "recall", "auc", "f1", "val_f1", "lr"):
        assert key in state["history"][-1]
    files = {p.name for p in trained.run_dir.iterdir()}
    assert {"config.json", "best.keras", "history.csv", "history.json", "model.json", "tb"} <= files
    assert len(list(trained.run_dir.glob("last-e*.keras"))) == 1


def test_evaluation_report(trained):
    report = evaluate_run(trained.run_dir, split="test")
    assert report["n"] == 500 and 0.3 < report["accuracy"] < 0.7
    assert set(report["per_class"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
    assert np.array(report["confusion_matrix"]).sum() == 500
    assert 0.6 < report["roc_auc_macro"] < 1.0
    out = trained.run_dir / "eval" / "test"
    for name in ("metrics.json", "confusion_matrix.png", "roc.png"):
        assert (out / name).stat().st_size > 1000
    assert (trained.run_dir / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == report["accuracy"] and saved["split"] == "test"


def test_compare(trained, tmp_path):
    result = compare_runs([trained.run_dir, trained.run_dir], out=tmp_path)
    assert result["markdown"].count("| cnn |") == 2
    assert (tmp_path / "comparison.png").stat().st_size > 1000


def test_finished_run_is_not_overwritten(trained, subset):
    cfg = TrainConfig(model="cnn", data=str(subset), epochs=4, augment=False, model_options={"width": 0.5})
    with pytest.raises(RunError, match="finished run"):
        train(cfg, trained.run_dir, verbose=0)


def test_resume_with_other_settings_is_refused(tmp_path, subset):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(TrainConfig(model="cnn", data=str(subset), epochs=3).to_dict()))
    with pytest.raises(RunError, match="epochs: run has 3, you asked 5"):
        train(TrainConfig(model="cnn", data=str(subset), epochs=5), out, verbose=0)


def test_resume_after_kill_9(tmp_path, fer):
    """Kill -9 the CLI after epoch 2, run the same command again: it goes on from where it was killed."""
    # small on purpose (a quarter-width cnn on 600 faces a split): what is tested is the resume, not the learning
    data = write_subset_npz(tmp_path / "small.npz", fer, pick_rows(fer, 600))
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "edge_fer.cli", "train", "--model", "cnn", "--data", str(data),
           "--epochs", "6", "--no-augment", "--lr", "0.002", "-o", "width=0.25"]
    env = {**os.environ, "EDGEFER_RUNS": str(runs)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state_file = runs / "cnn" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 2:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state_file.read_text())["epoch"]
    assert 2 <= killed_at < 6, killed_at
    first_epochs = json.loads(state_file.read_text())["history"]

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {runs / 'cnn'} from epoch {killed_at} of 6" in done.stderr
    state = json.loads(state_file.read_text())
    assert state["status"] == "finished"
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4, 5, 6]
    assert state["history"][:killed_at] == first_epochs  # earlier epochs kept, not retrained
    assert not (runs / "cnn-2").exists()


def test_cosine_schedule_and_builder_options(tmp_path, fer):
    """--schedule cosine follows lr_at epoch by epoch; -o passes builder options into the run's config."""
    from click.testing import CliRunner

    from edge_fer.cli import main

    # 300 faces a split: what is tested is the schedule and the options, not the learning
    subset = write_subset_npz(tmp_path / "small.npz", fer, pick_rows(fer, 300))
    cfg = TrainConfig(model="ferlite", data=str(subset), epochs=3, lr=2e-3, schedule="cosine", warmup_epochs=1)
    assert [round(cfg.lr_at(e), 6) for e in range(3)] == [1e-3, 2e-3, round(1e-6 + 0.5 * (2e-3 - 1e-6), 6)]
    out = tmp_path / "fl"
    r = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(subset), "--epochs", "3", "--lr", "2e-3",
                                  "--schedule", "cosine", "--warmup-epochs", "1", "--no-augment", "-o", "width=0.5",
                                  "-o", "blocks=[1,1,1]", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_options"] == {"width": 0.5, "blocks": [1, 1, 1]} and saved["schedule"] == "cosine"
    lrs = [h["lr"] for h in json.loads((out / "history.json").read_text())]
    assert lrs == pytest.approx([cfg.lr_at(e) for e in range(3)], rel=1e-4)
    bad = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(subset), "-o", "depth=3",
                                    "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "takes no option(s) depth" in bad.output and not (tmp_path / "bad").exists()


def test_mixup_blends_images_and_targets():
    import numpy as np

    from edge_fer.data.pipeline import mixup_batch

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, 32)]
    xm, ym = (t.numpy() for t in mixup_batch(x, y, 0.4))
    assert np.allclose(ym.sum(1), 1.0) and (ym.max(1) >= 0.5 - 1e-6).all()
    assert (ym.max(1) < 0.999).sum() > 8  # most targets are blends at α = 0.4
    assert xm.min() >= 0 and xm.max() <= 255 and not np.allclose(xm, x)
    # each mixed image is λ·own + (1 − λ)·partner, with the λ its target shows for its own class
    own = y.argmax(1)
    lam = ym[np.arange(32), own]
    partner = (xm - lam[:, None, None, None] * x) / np.maximum(1 - lam, 1e-6)[:, None, None, None]
    blended = lam < 0.999
    assert all(np.abs(x - partner[i]).reshape(32, -1).max(1).min() < 1e-2 for i in np.flatnonzero(blended)[:5])


def test_training_metrics_score_soft_targets_by_their_dominant_class(tmp_path):
    """Distillation makes every target entry > 0 (mixup two of them): stock Precision/AUC then read
    all 7 classes as positives (precision 1.0, AUC 0). The compiled metrics must give the one-hot
    figures instead."""
    from edge_fer._tf import keras as _keras
    from edge_fer.models.summary import load_model
    from edge_fer.training import compile_model

    keras = _keras()
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (256, 48, 48, 1)).astype("float32")
    hard = np.eye(7, dtype="float32")[rng.integers(0, 7, 256)]
    soft = hard * 0.9 + 0.1 / 7
    model = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Flatten(), keras.layers.Dense(7, activation="softmax")])
    compile_model(model, TrainConfig(model="cnn", label_smoothing=0.1))
    by_hard = model.evaluate(x, hard, verbose=0, return_dict=True)
    by_soft = model.evaluate(x, soft, verbose=0, return_dict=True)
    for k in ("accuracy", "precision", "recall", "auc", "f1"):
        assert by_soft[k] == pytest.approx(by_hard[k], abs=1e-6), k
    assert 0.3 < by_hard["auc"] < 0.8 and by_hard["precision"] < 0.5  # a random model, not 0 / 1

    stock = keras.metrics.AUC()  # every target > 0 is a positive: no negatives, so AUC 0 for any model
    stock.update_state(soft, model.predict(x, verbose=0))
    assert stock.result().numpy() == 0.0  # what the stock metric printed in distillation runs

    model.save(tmp_path / "m.keras")  # a checkpoint resumes (compile=True) with these metrics
    again = load_model(tmp_path / "m.keras", compile=True)
    assert again.evaluate(x, soft, verbose=0, return_dict=True)["auc"] == pytest.approx(by_hard["auc"], abs=1e-6)


def test_distillation_targets_and_training(trained, tmp_path, subset, fer):
    """--teacher: targets = (1-w)·labels + w·softmax(teacher logits / T) on the same augmented faces;
    the run records the teacher; a wrong teacher is one clear line."""
    import numpy as np
    from click.testing import CliRunner

    from edge_fer._tf import keras
    from edge_fer.cli import main
    from edge_fer.models import load_model
    from edge_fer.training.train import load_teacher

    cfg = TrainConfig(model="cnn", data=str(subset), teacher=str(trained.run_dir), distill_weight=0.3,
                      distill_temperature=2.0)
    from edge_fer.data.pipeline import teacher_targets

    fn = teacher_targets(load_teacher(cfg), 0.3, 2.0)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (8, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, 8)]
    _, t = fn(x, y)
    m = load_model(trained.run_dir / "best.keras")
    z = keras().Model(m.input, m.get_layer("logits").output)(x).numpy()
    soft = np.exp(z / 2) / np.exp(z / 2).sum(1, keepdims=True)
    assert np.allclose(t.numpy(), 0.7 * y + 0.3 * soft, atol=1e-5)

    small = write_subset_npz(tmp_path / "small.npz", fer, pick_rows(fer, 300))  # the wiring, not the learning
    out = tmp_path / "student"
    r = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(small), "--epochs", "1", "-o", "width=0.5",
                                  "--teacher", str(trained.run_dir), "--mixup", "0.2", "--out", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["teacher"] == str(trained.run_dir.resolve()) and saved["mixup"] == 0.2
    assert json.loads((out / "state.json").read_text())["status"] == "finished"
    for teacher, message in ((tmp_path / "nope", "not a run directory, .keras or .tflite model"),
                             (tmp_path, "has no best.keras yet")):
        bad = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(subset), "--teacher", str(teacher),
                                        "--out", str(tmp_path / "bad")])
        assert_user_error(bad, message)
        assert not (tmp_path / "bad").exists()
    bad = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(subset), "--mixup", "-1",
                                    "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--mixup must be ≥ 0" in bad.output


def test_distillation_from_a_shipped_tflite_model(fer, tmp_path, caplog):
    """--teacher cnn_int8: the shipped int8 model teaches through its (dequantised) probabilities,
    softmax(log p / T) standing in for softmax(logits / T); its predictions are those the int8 model
    gives (the study's accuracy on real PublicTest faces); a run records the name, not a path, and
    resumes from another directory; a bad teacher file or name is one clear line; the tf.data map that
    calls it logs no AutoGraph warning (one once printed the whole os.environ)."""
    import numpy as np
    from click.testing import CliRunner

    from edge_fer.cli import main
    from edge_fer.data.pipeline import teacher_targets
    from edge_fer.runtime.tflite import TFLiteModel
    from edge_fer.training.train import TFLiteTeacher, load_teacher
    from edge_fer.zoo import resolve_model

    teacher = load_teacher(TrainConfig(model="ferlite", data="x", teacher="cnn_int8"))
    assert isinstance(teacher, TFLiteTeacher) and teacher.input_shape == (None, 48, 48, 1)
    public = np.flatnonzero(fer["usage"] == "PublicTest")[:512]
    faces, labels = fer["pixels"][public].astype("float32"), fer["labels"][public]
    p = teacher.probabilities(faces[..., None])
    assert p.shape == (512, 7) and np.allclose(p.sum(1), 1, atol=0.03)
    model_labels = TFLiteModel(str(resolve_model("cnn_int8")), 1).labels(fer["pixels"][public])
    assert np.mean(p.argmax(1) == model_labels) > 0.99  # ties between equal int8 outputs may break either way
    assert np.mean(p.argmax(1) == labels) > 0.6   # the shipped cnn: ≈ 0.70 on PublicTest

    y = np.eye(7, dtype="float32")[labels[:64]]
    _, t = teacher_targets(teacher, 0.3, 2.0)(faces[:64, ..., None], y)
    z = np.log(np.clip(p[:64], teacher.floor, 1)) / 2
    soft = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    assert np.allclose(t.numpy(), 0.7 * y + 0.3 * soft, atol=1e-5)
    assert np.allclose(t.numpy().sum(1), 1, atol=1e-5)

    data = write_subset_npz(tmp_path / "small.npz", fer, pick_rows(fer, 300))
    out = tmp_path / "student"
    args = ["train", "--model", "ferlite", "--data", str(data), "-o", "width=0.25", "--teacher", "cnn_int8",
            "--out", str(out)]
    r = CliRunner().invoke(main, [*args, "--epochs", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "AutoGraph could not transform" not in caplog.text
    assert json.loads((out / "config.json").read_text())["teacher"] == "cnn_int8"
    saved = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    here = saved.identity()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cwd = os.getcwd()
    os.chdir(elsewhere)
    try:  # a resume started in another directory must see the same settings: the name stays a name
        assert saved.identity() == here and here["teacher"] == "cnn_int8"
    finally:
        os.chdir(cwd)

    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    for bad_teacher, message in ((str(tmp_path / "broken.tflite"), "not a TFLite model LiteRT can load"),
                                 ("no_such_model", "unknown model 'no_such_model'"),
                                 (str(tmp_path / "missing.tflite"), "no such model file")):
        bad = CliRunner().invoke(main, ["train", "--model", "ferlite", "--data", str(data), "--teacher", bad_teacher,
                                        "--out", str(tmp_path / "bad")])
        assert_user_error(bad, message)
        assert not (tmp_path / "bad").exists()
