"""The CLI through Click's CliRunner: exit codes, one-line errors, help that teaches."""

import json

import pytest

from conftest import write_csv


def _one_error_line(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.strip().splitlines() if l.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # an escaped exception would be kept here
    for f in fragments:
        assert f in lines[0], lines[0]


def test_help_lists_commands(run):
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("train", "evaluate", "compare", "models", "data"):
        assert cmd in r.output
    r = run("train", "--help")
    assert "--precision" in r.output and "resumes" in r.output


def test_unknown_model(run):
    _one_error_line(run("train", "--model", "resnet5", "--epochs", "1"), "unknown model 'resnet5'", "resnet50")


def test_missing_data(run, tmp_path):
    _one_error_line(run("train", "--model", "cnn", "--data", tmp_path / "nope.csv"), "nope.csv: no such file")


def test_bad_option_values(run):
    _one_error_line(run("train", "--model", "cnn", "--epochs", "0"), "--epochs must be ≥ 1")


def test_evaluate_without_runs(run, tmp_path):
    _one_error_line(run("evaluate"), "no runs under", "edgefer train")
    _one_error_line(run("evaluate", tmp_path), "not a run directory")


def test_data_check_bad_csv(run, tmp_path, fer):
    p = write_csv(tmp_path / "x.csv", fer, [0, 1, 2])
    p.write_text(p.read_text().replace(",Training", ",Trainig", 1))
    _one_error_line(run("data", "check", p), "x.csv:2:", "unknown Usage 'Trainig'", "--skip-bad")
    r = run("data", "check", p, "--skip-bad", "--json", tmp_path / "r.json")
    assert r.exit_code == 0 and "2 rows, 1 skipped" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["skipped_rows"] == 1


def test_data_check_embedded_sample(run):
    r = run("data", "check")
    assert r.exit_code == 0
    assert "Training" in r.output and "byte-identical duplicates" in r.output


def test_data_from_env_and_config_file(run, tmp_path, monkeypatch, fer):
    p = write_csv(tmp_path / "mine.csv", fer, [0, 1, 2, 3])
    monkeypatch.setenv("EDGEFER_DATA", str(p))
    assert "4 rows" in run("data", "check").output
    monkeypatch.delenv("EDGEFER_DATA")
    (tmp_path / "edgefer.toml").write_text(f'data = "{p}"\n')
    assert "4 rows" in run("data", "check").output
    (tmp_path / "edgefer.toml").write_text("data = \n")
    _one_error_line(run("data", "check"), "edgefer.toml: invalid TOML")


def test_models_json(run):
    r = run("models", "--json")
    rows = {m["name"]: m for m in json.loads(r.output)["architectures"]}
    assert rows["mobilenetv3_small"]["params"] > 1_000_000
    assert "mobilenetv3" in rows["mobilenetv3_small"]["aliases"]
    r = run("models", "mobilenetv3")
    assert r.exit_code == 0 and "stem_stride = 2" in r.output and "hard_swish = \"split\"" in r.output
    assert json.loads(run("models", "ferlite", "--json").output)["options"]["blocks"] == [1, 2, 2]
    r = run("models", "resnet5")
    assert r.exit_code == 2 and "did you mean resnet50" in r.output
