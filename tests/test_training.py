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


def test_resume_after_kill_9(tmp_path, subset):
    """Kill -9 the CLI after epoch 2, run the same command again: it goes on from epoch 2."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "edge_fer.cli", "train", "--model", "cnn", "--data", str(subset),
           "--epochs", "4", "--no-augment", "--lr", "0.002"]
    env = {**os.environ, "EDGEFER_RUNS": str(runs)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state_file = runs / "cnn" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= 2:
            break
        assert proc.poll() is None, proc.stdout.read().decode()
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state_file.read_text())["epoch"]
    assert killed_at in (2, 3)
    first_epochs = json.loads(state_file.read_text())["history"]

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming {runs / 'cnn'} from epoch {killed_at} of 4" in done.stderr
    state = json.loads(state_file.read_text())
    assert state["status"] == "finished"
    assert [h["epoch"] for h in state["history"]] == [1, 2, 3, 4]
    assert state["history"][:killed_at] == first_epochs  # earlier epochs kept, not retrained
    assert not (runs / "cnn-2").exists()


def test_cosine_schedule_and_builder_options(tmp_path, subset):
    """--schedule cosine follows lr_at epoch by epoch; -o passes builder options into the run's config."""
    from click.testing import CliRunner

    from edge_fer.cli import main

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
