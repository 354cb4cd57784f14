"""The run directory's layout and each stage's config: one place for every path and every default.

No TensorFlow: these check names, defaults, validation and what a card records and replays.
"""

import json
from pathlib import Path

import click
import pytest

from edge_fer.cli import main
from edge_fer.device_bench.suite import BenchConfig
from edge_fer.errors import ConfigError, RunError
from edge_fer.export.config import ExportConfig
from edge_fer.quantization.config import AGREEMENT_GATE, QATConfig
from edge_fer.runs import RunLayout
from edge_fer.training.config import TrainConfig


def test_run_layout_names_every_stage_file(tmp_path):
    run = RunLayout(tmp_path / "cnn")
    assert run.config == tmp_path / "cnn" / "config.json" and run.state == tmp_path / "cnn" / "state.json"
    assert run.best_model.name == "best.keras" and run.checkpoint(7).name == "last-e007.keras"
    assert (run.qat_model, run.qat_partial, run.qat_record) == (
        tmp_path / "cnn" / "qat" / "best.h5", tmp_path / "cnn" / "qat" / "best.partial.h5",
        tmp_path / "cnn" / "qat" / "qat.json")
    assert run.export_dir / "export_report.json" == RunLayout.export_report_in(run.export_dir)
    assert run.shipped_dir == tmp_path / "cnn" / "shipped" and run.eval_dir("test") == tmp_path / "cnn" / "eval" / "test"
    assert run.qat() is None and run.export_report() == {} and run.train_config() == {}
    with pytest.raises(RunError, match="no best.keras yet"):
        run.require_best_model()
    run.qat_dir.mkdir(parents=True)
    run.qat_record.write_text("{not json")
    with pytest.raises(RunError, match=r"qat\.json: damaged JSON"):
        run.qat()


def _option(command: str, name: str) -> click.Option:
    return next(p for p in main.commands[command].params if p.name == name)


@pytest.mark.parametrize("command, option, config, field", [
    ("train", "epochs", TrainConfig, "epochs"), ("train", "lr", TrainConfig, "lr"),
    ("train", "patience", TrainConfig, "early_stopping_patience"), ("train", "seed", TrainConfig, "seed"),
    ("train", "distill_weight", TrainConfig, "distill_weight"),
    ("qat", "epochs", QATConfig, "epochs"), ("qat", "lr", QATConfig, "lr"),
    ("qat", "warmup_batches", QATConfig, "warmup_batches"), ("qat", "range_percentile", QATConfig, "range_percentile"),
    ("export", "threshold", ExportConfig, "threshold"), ("export", "calib_size", ExportConfig, "calib_size"),
    ("export", "source", ExportConfig, "source"), ("bench", "min_seconds", BenchConfig, "min_seconds"),
    ("bench", "quick", BenchConfig, "quick"),
    ("bench", "device", BenchConfig, "device"), ("bench", "port", BenchConfig, "port"),
])
def test_cli_defaults_are_the_configs(command, option, config, field):
    assert _option(command, option).default == config.__dataclass_fields__[field].default


def test_quick_bench_has_no_minimum_duration_unless_one_is_given():
    assert (BenchConfig().min_seconds, BenchConfig(quick=True).min_seconds) == (2.0, 0.0)
    assert BenchConfig(quick=True, min_seconds=1.5).min_seconds == 1.5 and BenchConfig(min_seconds=0).min_seconds == 0
    assert "≥ 0 s and ≥ 10 runs" in BenchConfig(quick=True).describe()


def test_list_defaults_are_the_configs():
    assert _option("export", "precisions").default.split(",") == list(ExportConfig().precisions)
    assert _option("export", "formats").default.split(",") == list(ExportConfig().formats)
    assert [int(t) for t in _option("bench", "threads").default.split(",")] == list(BenchConfig().threads)
    assert ExportConfig().threshold == AGREEMENT_GATE


@pytest.mark.parametrize("make, fragment", [
    (lambda: QATConfig(epochs=-1), "--epochs must be ≥ 0"),
    (lambda: QATConfig(range_percentile="40"), "--range-percentile must be auto, minmax or a number in (50, 100]"),
    (lambda: QATConfig(distill_weight=0.3), "need --teacher"),
    (lambda: QATConfig(strategy="multiworker"), "qat runs on one machine"),
    (lambda: ExportConfig(source="both"), "--from must be one of auto, qat, ptq, got 'both'"),
    (lambda: ExportConfig(threshold=1.5), "--threshold must be in [0, 1], got 1.5"),
    (lambda: ExportConfig(formats=("png",)), "unknown format(s) png"),
    (lambda: BenchConfig(threads="0"), "thread counts must be ≥ 1, got '0'"),
    (lambda: BenchConfig(threads="1,x"), "--threads: expected comma-separated integers, got '1,x'"),
    (lambda: BenchConfig(class_map=("contempt=disgust",)), "--class-map and --drop-class map the classes"),
])
def test_configs_check_their_values(make, fragment):
    with pytest.raises(ConfigError) as e:
        make()
    assert fragment in str(e.value)


def test_qat_record_is_replayed_as_it_was_resolved():
    record = {"epochs": 2, "lr": 5e-5, "weights": "per-tensor", "teacher": "cnn_int8", "distill_weight": 0.3,
              "distill_temperature": 2.0, "range_percentile": 99.9, "seconds": 12.0,
              "config": {"epochs": 2, "teacher": "cnn_int8", "distill_weight": None, "strategy": "mirrored"}}
    qc = QATConfig.from_record(record)
    assert (qc.epochs, qc.lr, qc.per_tensor, qc.distill_weight, qc.range_percentile) == (2, 5e-5, True, 0.3, 99.9)
    assert qc.replay().strategy == "none" and qc.recipe()["weights"] == "per-tensor"
    assert "per_tensor" not in qc.recipe() and "strategy" not in qc.recipe()
    assert QATConfig.from_record({"epochs": 3, "lr": 1e-4}).range_percentile is None  # before the option: min/max


def test_zoo_build_replays_each_stage_config(monkeypatch, tmp_path):
    import edge_fer.export as export_pkg
    import edge_fer.quantization as quantization
    import edge_fer.training as training
    import edge_fer.zoo.ship as ship

    recipe = {"train": TrainConfig(model="cnn", epochs=2).to_dict(),
              "qat": {**QATConfig(epochs=1, lr=2e-4, range_percentile=99.9).recipe(), "weights": "per-tensor"},
              "export": {"precision": "int8", "source": "qat", "io": "uint8", "weights": "per-tensor",
                         "threshold": 0.97, "calib_size": 128, "calib_method": "entropy"}}
    seen = {}
    monkeypatch.setattr(ship, "get_shipped", lambda name: type("S", (), {"card": {"recipe": recipe}})())
    monkeypatch.setattr(training, "train", lambda cfg, out=None, verbose=2: type("R", (), {"run_dir": tmp_path})())
    monkeypatch.setattr(quantization, "qat_run", lambda run, config, **kw: seen.update(qat=config))
    monkeypatch.setattr(export_pkg, "export_run", lambda run, config, **kw: seen.update(export=config))
    monkeypatch.setattr(ship, "ship_run", lambda run, **kw: {})
    ship.build("cnn_int8", data_path="fer.npz", out=tmp_path)
    assert seen["qat"] == QATConfig(epochs=1, lr=2e-4, range_percentile=99.9, per_tensor=True)
    assert seen["export"] == ExportConfig(precisions=("int8",), source="qat", io="uint8", force=True, threshold=0.97,
                                          calib_size=128, calib_method="entropy")


def test_card_prints_each_stage_recipe():
    from edge_fer.zoo.ship import _card_markdown

    card = json.loads(next(Path(__file__).parents[1].glob("edge_fer/zoo/shipped/*.card.json")).read_text())
    card["recipe"]["export"]["threshold"] = 0.97
    md = _card_markdown(card)
    assert "## Recipe" in md and "(gate 97%:" in md
    assert f"- train: model {json.dumps(card['recipe']['train']['model'])}" in md
    assert "- export: precision \"int8\"" in md
