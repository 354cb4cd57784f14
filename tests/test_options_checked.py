"""Options are checked before anything runs, `--seed` repeats a training, and listings are instant.

Builder options (``-o KEY=VALUE``), edgefer.toml keys and train/qat ranges each fail as one line
naming the value and what is valid; `edgefer models` and the trivial errors never import TensorFlow.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import pick_rows, write_subset_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_same_seed_trains_the_same_weights(fer, tmp_path):
    """Shuffle, augmentation and mixup are all drawn from --seed: two trainings give the same weights."""
    from edge_fer.models import load_model
    from edge_fer.training import TrainConfig, train

    data = write_subset_npz(tmp_path / "d.npz", fer, pick_rows(fer, 96, seed=1))
    cfg = dict(model="cnn", data=str(data), epochs=2, batch_size=32, mixup=0.2, model_options={"width": 0.25})
    runs = [train(TrainConfig(**cfg, seed=seed), tmp_path / name, verbose=0)
            for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    hist = [json.loads((r.run_dir / "history.json").read_text()) for r in runs]
    last = [r.run_dir / json.loads((r.run_dir / "state.json").read_text())["last"] for r in runs]
    weights = [load_model(p).get_weights() for p in last]
    assert [h["loss"] for h in hist[0]] == [h["loss"] for h in hist[1]]
    assert [h["val_accuracy"] for h in hist[0]] == [h["val_accuracy"] for h in hist[1]]
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], weights[2]))  # the seed is what decides


def _error_line(result, *fragments) -> str:
    """The command failed with exit code 2 and exactly one `Error:` line holding every fragment."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # an escaped exception would be kept here
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny(fer, tmp_path):
    """60 faces: what a command that wrongly starts training would train on, for one quick epoch."""
    return write_subset_npz(tmp_path / "tiny.npz", fer, pick_rows(fer, 20))


@pytest.mark.parametrize("model, option, fragments", [
    ("cnn", "width=abc", ["cnn: width must be a number > 0", "got 'abc'", "-o width=0.5"]),
    ("ferlite", "blocks=abc", ["ferlite: blocks must be three counts ≥ 0", "got 'abc'", "-o blocks=[1,2,2]"]),
    ("ferlite", "blocks=[1,2]", ["blocks must be three counts", "got [1, 2]"]),
    ("mobilenetv3", "minimalistic=no", ["minimalistic must be true or false", "got 'no'"]),
    ("mobilenetv3", "minimalistic=False", ["minimalistic must be true or false", "got 'False'"]),
    ("mobilenetv3", "minimalistic=yes", ["minimalistic must be true or false", "got 'yes'"]),
    ("mobilenetv3", "minimalistic=1", ["minimalistic must be true or false", "got 1"]),
    ("mobilenetv3", "stem_stride=1.5", ["stem_stride must be 1 or 2", "got 1.5"]),
    ("mobilenetv3", "hard_swish=relu", ["hard_swish must be split or fused", "got 'relu'"]),
    ("cnn", "dropout=1", ["dropout must be in [0, 1)", "got 1"]),
    ("cnn", "filters=[32,0]", ["filters must be a list of integers ≥ 1", "got [32, 0]"]),
    ("cnn", "widht=0.5", ["takes no option(s) widht (did you mean width?)", "valid: input_shape"]),
    ("cnn", "weights=imagenet", ["-o weights", "--weights none|imagenet"]),
])
def test_builder_options_are_checked_before_anything_runs(run, tiny, model, option, fragments):
    r = run("train", "--model", model, "--data", tiny, "--epochs", 1, "-o", option, "--out", "r")
    line = _error_line(r, *fragments)
    assert "edgefer models" in line or "weights" in option  # where to see what is valid
    assert not Path("r").exists()


def test_builder_option_rules_accept_every_default_and_are_listed(run):
    from edge_fer.models import builder_options, check_model_options, create_model, model_names
    from edge_fer.errors import ConfigError

    for name in model_names():
        check_model_options(name, builder_options(name))  # the rules agree with the builders' defaults
    with pytest.raises(ConfigError, match="minimalistic must be true or false, got 'no'"):
        create_model("mobilenetv3_small", minimalistic="no")
    r = run("models", "mobilenetv3")
    assert r.exit_code == 0 and "minimalistic = false" in r.output and "true or false" in r.output


def edgefer(tmp_path, *args, timeout=120):
    """``edgefer ARGS`` in a fresh interpreter (this edge_fer, an empty folder, no runs or config); its
    stderr ends with whether TensorFlow was imported."""
    import os

    import edge_fer

    code = ("import sys\nfrom edge_fer.cli import main\ntry:\n    main(sys.argv[1:])\nfinally:\n"
            "    print('tensorflow' in sys.modules, file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFER_CONFIG", "EDGEFER_DATA")}
    env.update(PYTHONPATH=str(Path(edge_fer.__file__).parents[1]), EDGEFER_RUNS=str(tmp_path / "runs"))
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_bad_option_is_one_line_without_traceback_or_tensorflow(tmp_path):
    """As a user types it, in a fresh interpreter: one line on stderr, exit 2, TensorFlow never loaded."""
    r = edgefer(tmp_path, "train", "--model", "cnn", "--data", "fer.csv", "-o", "width=abc")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines() == ["Error: cnn: width must be a number > 0 (channel multiplier), got 'abc'; e.g. "
                                     "-o width=0.5 (`edgefer models cnn` lists the options)", "False"], r.stderr


@pytest.mark.parametrize("args, fragments", [
    (["--distill-weight", "0.3"], ["--distill-weight only applies with --teacher"]),
    (["--distill-weight", "0.3", "--distill-temperature", "4"],
     ["--distill-weight and --distill-temperature only apply with --teacher"]),
    (["--patience", "-1"], ["--patience must be ≥ 0", "got -1"]),
])
def test_train_options_are_checked(run, tiny, args, fragments):
    r = run("train", "--model", "cnn", "--data", tiny, "--epochs", 1, "-o", "width=0.25", "--out", "r", *args)
    _error_line(r, *fragments)
    assert not Path("r").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--distill-temperature", "3"], ["--distill-weight and --distill-temperature need --teacher"]),
    (["--lr", "0"], ["--lr must be > 0", "got 0"]),
    (["--batch-size", "0"], ["--batch-size must be ≥ 1", "got 0"]),
    (["--warmup-batches", "0"], ["--warmup-batches must be ≥ 1", "got 0"]),
    (["--epochs", "-1"], ["--epochs must be ≥ 0", "got -1"]),
])
def test_qat_options_are_checked_before_the_run_is_looked_for(run, args, fragments):
    """With no run anywhere, a bad option is still the error reported: it is checked first."""
    _error_line(run("qat", *args), *fragments)


@pytest.mark.parametrize("toml, fragments", [
    ('dta = "fer2013.csv"\n', ["edgefer.toml: unknown key 'dta' (did you mean data?)",
                               "valid keys: data, runs, [rpi] host"]),
    ('host = "pi@raspberrypi"\n', ["unknown key 'host' (did you mean [rpi] host?)"]),
    ('[rpi]\nhots = "pi@raspberrypi"\n', ["unknown key '[rpi] hots' (did you mean [rpi] host?)"]),
    ("data = 3\n", ["edgefer.toml: data = 3 must be a path (string)"]),
])
def test_config_file_keys_are_checked(run, toml, fragments):
    """A misspelt key used to be ignored: `dta = ...` trained on the embedded sample."""
    Path("edgefer.toml").write_text(toml)
    _error_line(run("data", "check"), *fragments)


def test_runs_folder_from_the_config_file(run, monkeypatch, tmp_path):
    """`runs = ...` in edgefer.toml, as documented, moves runs/ (it was ignored)."""
    monkeypatch.delenv("EDGEFER_RUNS")
    Path("edgefer.toml").write_text(f'runs = "{tmp_path / "elsewhere"}"\n')
    _error_line(run("evaluate"), f"no runs under {tmp_path / 'elsewhere'}")


def test_models_listing_is_instant_and_imports_no_tensorflow(tmp_path):
    """`edgefer models` used to build every architecture (26 s, 920 MB): it reads a table now."""
    import time

    from edge_fer.models import model_names

    t0 = time.perf_counter()
    r = edgefer(tmp_path, "models", "--json")
    seconds = time.perf_counter() - t0
    assert r.returncode == 0 and r.stderr.splitlines()[-1] == "False", r.stderr
    rows = {a["name"]: a for a in json.loads(r.stdout)["architectures"]}
    assert list(rows) == model_names() and rows["cnn"]["params"] == 1767207 and rows["ferlite"]["macs"] > 0
    assert seconds < 5, seconds  # ≈ 0.5 s, with room for a busy machine; TensorFlow alone takes 4 s to import


@pytest.mark.parametrize("args, fragment", [
    (["evaluate"], "no runs under"),
    (["export", "--int8"], "no runs under"),
    (["qat"], "no runs under"),
    (["calibrate"], "no runs under"),
    (["zoo", "ship"], "no runs under"),
    (["compare", "runs/x"], "runs/x: no such run"),
    (["bench", "runs/x.tflite"], "runs/x.tflite"),
])
def test_trivial_errors_do_not_wait_for_tensorflow(tmp_path, args, fragment):
    r = edgefer(tmp_path, *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], r.stderr
    assert r.stderr.splitlines()[-1] == "False", r.stderr  # TensorFlow was not imported


@pytest.mark.slow
def test_cost_table_matches_the_builders():
    """The table `edgefer models` prints is what the builders build (regenerate it with
    `python -m edge_fer.models.costs --write` after changing one)."""
    from edge_fer.models import model_names
    from edge_fer.models.costs import COSTS, compute_costs

    assert set(COSTS) == set(model_names())
    for name in model_names():
        assert COSTS[name] == compute_costs(name), name
