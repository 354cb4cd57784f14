"""Quantisation-aware fine-tuning (tensorflow-model-optimization) of a trained run.

    from edge_fer.quantization import QATConfig, qat_run
    result = qat_run("runs/cnn", QATConfig(epochs=3, lr=1e-4))     # writes runs/cnn/qat/

Steps, each one needed:
1. The float model is rebuilt in float32 from the shared builder and given the run's weights
   (a run trained under mixed_bfloat16 quantises like any other).
2. It becomes a QAT model under the quantisation scheme (``scheme.py``), and the fake-quant ranges
   are warmed up from training batches (``ranges.py``).
3. Fine-tuning with a small learning rate; the best epoch on validation is kept.
4. Activation ranges chosen on validation, in int8 (``range_percentile="auto"``, the default):
   min/max, then ever tighter percentile clippings, each converted as ``edgefer export --int8``
   converts it; the first that passes the export's 98% agreement gate is saved.

The model is written as RUN/qat/best.partial.h5 until the end, then becomes best.h5 and qat.json
(with the resolved :class:`QATConfig`) is written: an interrupted run leaves no qat.json for its
model, and ``edgefer export`` refuses it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from ..errors import RunError
from ..runs import QAT_PARTIAL, QAT_RECORD, RunLayout, atomic_path, resolve_run, write_json
from .config import QATConfig
from .ranges import choose_range_percentile, clip_activation_ranges, warm_up_ranges
from .scheme import WEIGHTS, load_qat_model, quantize_model, range_ema_decay

log = logging.getLogger(__name__)


def unfinished_qat(run_dir: Path) -> str | None:
    """Why RUN's QAT model must not be used — a QAT run that did not finish, said with the fix — or
    None (QAT finished, or never ran)."""
    layout = RunLayout(run_dir)
    d, partial, best, done = layout.qat_dir, layout.qat_partial, layout.qat_model, layout.qat_record
    if partial.is_file():
        keep = (f", or delete {partial} to use the QAT model that finished before it" if best.is_file()
                and done.is_file() else "")
        return (f"{d}: an `edgefer qat` run did not finish ({QAT_PARTIAL} left behind); run `edgefer qat {run_dir}` "
                f"again to finish it{keep}")
    if best.is_file() and not done.is_file():
        return (f"{best}: QAT did not finish (no {QAT_RECORD} beside it); run `edgefer qat {run_dir}` again to "
                "finish it")
    return None


def qat_weights(run_dir: Path) -> str | None:
    """The weight granularity RUN's QAT run recorded ("per-channel" for a qat.json older than the
    choice), or None without a qat.json."""
    try:
        record = RunLayout(run_dir).qat()
    except RunError:
        return None
    return None if record is None else record.get("weights", WEIGHTS[False])


def load_float_model(run_dir: Path):
    """The run's best model rebuilt in float32 from the shared builder, with the trained weights."""
    from ..models import create_model, load_model
    from ..training import TrainConfig

    cfg = TrainConfig.load(run_dir)
    trained = load_model(RunLayout(run_dir).require_best_model())
    keras = _keras()
    keras.mixed_precision.set_global_policy("float32")
    model = create_model(cfg.model, **cfg.model_options)
    try:
        model.set_weights(trained.get_weights())
    except ValueError as e:
        raise RunError(f"{run_dir}: best.keras does not match the {cfg.model} builder ({e}); retrain the run") from None
    return model, cfg


def _save_h5(model, path: Path) -> None:
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "HDF5 is legacy": it is the format that reloads
        model.save(tmp)


@dataclass
class QATResult:
    run_dir: Path
    model_path: Path
    epochs: int
    best_epoch: int
    float_val_accuracy: float
    qat_val_accuracy_before: float  # after warm-up, before fine-tuning
    qat_val_accuracy: float
    agreement_before: float
    warmup_batches: int
    seconds: float
    range_percentile: float | str | None = "auto"  # as asked: "auto", None (min/max) or a percentile
    range_percentile_chosen: float | None = None  # what the model was saved with
    range_trials: list = field(default_factory=list)  # "auto": one dict per candidate
    weights: str = "per-channel"  # weight quantisation granularity: "per-channel" or "per-tensor"
    teacher: str | None = None  # distillation while fine-tuning: the teacher, as given
    distill_weight: float | None = None
    distill_temperature: float | None = None


def qat_run(run: str | Path | None, config: QATConfig | None = None, *, data=None, data_path: str | None = None,
            verbose: int = 2, **options) -> QATResult:
    """Fine-tune a trained run with quantisation-aware training; writes RUN/qat/.

    ``config`` (default :class:`QATConfig`'s defaults), with any of its fields overridden by
    ``options`` (``qat_run(run, epochs=1)``). ``range_percentile``: ``"auto"`` fine-tunes with
    min/max ranges, then chooses among ``AUTO_PERCENTILES`` on the validation split in int8
    (``choose_range_percentile``); ``None`` (or ``"minmax"``) keeps tfmot's min/max moving-average
    ranges; a number P clips each activation range to its P-th percentile after warm-up and keeps it
    fixed while fine-tuning. ``per_tensor``: quantise each kernel with one scale instead of one per
    output channel. Each channel's scale and zero point cost 12 bytes in a .tflite (a float32 and an
    int64), which a model of a few hundred thousand weights does not amortise (ferlite: 55 KB of
    314 KB); some accelerators also require per-tensor weights. The BatchNorm scales are folded into
    the kernels before QAT, so the grid QAT trains is the one the converter writes. ``edgefer export``
    follows the choice (qat.json). ``teacher``: fine-tune on distillation targets, as ``edgefer train
    --teacher`` does; ``distill_weight`` / ``distill_temperature`` default to the run's own when it was
    trained with a teacher, else to training's defaults. Fine-tuning a distilled model on hard labels
    alone pulls it back toward what labels alone teach. ``data_path``: read the run's data from here
    instead of where training read it. ``strategy``: ``none`` or ``mirrored`` (every visible GPU, or
    ``devices``): the QAT model, its ranges and the optimizer are made under the strategy, and
    ``--batch-size`` is the global batch.
    """
    qc = replace(config or QATConfig(), **options)
    run_dir = resolve_run(run)  # before TensorFlow loads: "no runs" is instant
    dist = _distribution(qc)
    t0 = time.time()
    float_model, cfg = load_float_model(run_dir)
    teacher_fn, distill = _teacher(qc, cfg, float_model)
    data = data or cfg.load_data(data_path)
    _keras().utils.set_random_seed(cfg.seed)
    job = _Job(qc, cfg, float_model, data, dist)
    job.start()
    out = RunLayout(run_dir).qat_partial
    # HDF5: tf_keras' .keras format cannot reload tfmot's QuantizeLayer variables (5 expected, 3 saved).
    # Until the end the model is saved as best.partial.h5: a finished QAT model of an earlier run stays usable.
    _save_h5(job.qat_model, out)
    job.fine_tune(out, teacher_fn, verbose)
    chosen, trials = job.choose_ranges(out)
    return _finish(run_dir, job, qc, chosen, trials, distill, time.time() - t0)


def _distribution(qc: QATConfig):
    from ..training.distribute import make_distribution

    _keras()
    return make_distribution(qc.strategy, qc.devices)


def _teacher(qc: QATConfig, cfg, float_model):
    """(targets function or None, the distillation settings qat.json records)."""
    from ..data.pipeline import teacher_targets
    from ..training.train import _check_teacher, load_teacher

    distill = {"teacher": None, "distill_weight": None, "distill_temperature": None}
    if not qc.teacher:
        return None, distill
    tcfg = replace(
        cfg, teacher=qc.teacher,
        distill_weight=qc.distill_weight if qc.distill_weight is not None else cfg.distill_weight,
        distill_temperature=qc.distill_temperature if qc.distill_temperature is not None else cfg.distill_temperature)
    teacher_model = load_teacher(tcfg)  # a bad name or file: one clear line, before anything is written
    _check_teacher(tcfg, teacher_model, float_model)
    log.info("QAT %s: distilling from %s (weight %.2f, temperature %.1f)", cfg.model, qc.teacher,
             tcfg.distill_weight, tcfg.distill_temperature)
    distill = {"teacher": qc.teacher, "distill_weight": tcfg.distill_weight,
               "distill_temperature": tcfg.distill_temperature}
    return teacher_targets(teacher_model, tcfg.distill_weight, tcfg.distill_temperature), distill


class _Job:
    """The state one QAT run carries from step to step: models, data, accuracies, the best epoch."""

    def __init__(self, qc: QATConfig, cfg, float_model, data, dist):
        from ..data.pipeline import as_model_input

        self.qc, self.cfg, self.float_model, self.dist = qc, cfg, float_model, dist
        self.train, self.val = data["train"], data["validation"]
        self.channels = float_model.input_shape[-1]
        self.x_val = as_model_input(self.val.x, self.channels)
        self.auto = qc.range_percentile == "auto"
        self.fixed = qc.range_percentile is not None and not self.auto
        self.history: list[dict] = []

    def accuracy(self, model):
        p = model.predict(self.x_val, batch_size=256, verbose=0)
        return float((p.argmax(1) == self.val.y).mean()), p

    def _batches(self, rng, n: int):
        from ..data.pipeline import as_model_input

        tr, size = self.train, self.qc.batch_size
        return (as_model_input(tr.x[rng.choice(len(tr), size, replace=False)], self.channels) for _ in range(n))

    def start(self) -> None:
        """Quantise the float model, warm its ranges up (and clip them, for a fixed percentile)."""
        qc, cfg = self.qc, self.cfg
        self.float_acc, p_float = self.accuracy(self.float_model)
        with self.dist.scope():  # the QAT model's variables (weights, ranges, optimizer) live under the strategy
            self.qat_model = quantize_model(self.float_model, per_tensor=qc.per_tensor)
            rng = np.random.default_rng(cfg.seed)
            self.n_warm = warm_up_ranges(self.qat_model, self._batches(rng, qc.warmup_batches))
            self.clip = list(self._batches(rng, 8)) if qc.range_percentile is not None else None
            if self.fixed:
                n_clip = clip_activation_ranges(self.qat_model, self.clip, qc.range_percentile)
                log.info("QAT %s: %d activation range(s) shrunk to their %g-th percentile", cfg.model, n_clip,
                         qc.range_percentile)
        self.before_acc, p_qat = self.accuracy(self.qat_model)
        self.agreement = float((p_qat.argmax(1) == p_float.argmax(1)).mean())
        self.best = {"epoch": 0, "val_accuracy": self.before_acc}
        log.info("QAT %s: float val acc %.4f; after range warm-up (%d batches) QAT val acc %.4f, agreement %.4f",
                 cfg.model, self.float_acc, self.n_warm, self.before_acc, self.agreement)

    def fine_tune(self, best_path: Path, teacher_fn, verbose: int) -> None:
        """Fit for ``epochs``; each better epoch on validation overwrites ``best_path``."""
        from ..data.pipeline import make_dataset
        from ..training.train import compile_model

        qc, cfg, keras = self.qc, self.cfg, _keras()
        if qc.epochs == 0:
            return
        with self.dist.scope():
            compile_model(self.qat_model, cfg, optimizer=keras.optimizers.Adam(learning_rate=qc.lr))
        ds_train = make_dataset(self.train.x, self.train.targets, batch_size=qc.batch_size, training=True,
                                augment=cfg.augmentation(), seed=cfg.seed, channels=self.channels,
                                teacher=teacher_fn)
        ds_val = make_dataset(self.val.x, self.val.targets, batch_size=256, training=False, channels=self.channels)
        best, history = self.best, self.history

        class KeepBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                history.append({"epoch": epoch + 1, **logs})
                if logs["val_accuracy"] > best["val_accuracy"]:
                    best.update(epoch=epoch + 1, val_accuracy=logs["val_accuracy"])
                    _save_h5(self.model, best_path)

        # Clipped ranges stay where they were set; tfmot's moving averages would drag them back to the outliers.
        with range_ema_decay(1.0) if self.fixed else contextlib.nullcontext():
            self.qat_model.fit(ds_train, validation_data=ds_val, epochs=qc.epochs, callbacks=[KeepBest()],
                               verbose=verbose)

    def choose_ranges(self, best_path: Path) -> tuple[float | str | None, list[dict]]:
        """``auto``: the activation-range percentile chosen in int8 on validation, saved into ``best_path``."""
        if not self.auto:
            return self.qc.range_percentile, []
        from ..calibration import CalibrationSet

        # After fine-tuning the model in memory holds the last epoch; best_path the best one (epoch 0: the warm-up).
        # (the converter takes a model outside any strategy: a mirrored one is reloaded too)
        model = load_qat_model(best_path) if self.qc.epochs > 0 or self.dist.name != "none" else self.qat_model
        calib = CalibrationSet.from_source(None, self.train, size=256, seed=self.cfg.seed, channels=self.channels)
        chosen, trials = choose_range_percentile(model, self.clip, calib, self.x_val, self.val.y,
                                                 per_tensor=self.qc.per_tensor)
        self.best["val_accuracy"] = next(t["qat_accuracy"] for t in trials if t["percentile"] == chosen)
        _save_h5(model, best_path)
        log.info("QAT %s: activation ranges %s chosen on validation", self.cfg.model,
                 "min/max" if chosen is None else f"at the {chosen:g}th percentile")
        return chosen, trials


def _finish(run_dir: Path, job: _Job, qc: QATConfig, chosen, trials, distill: dict, seconds: float) -> QATResult:
    """best.partial.h5 becomes best.h5, then qat.json (results and the resolved config) vouches for it."""
    layout = RunLayout(run_dir)
    # qat.json vouches for best.h5: it goes first and comes back last, so no kill leaves it beside another model.
    layout.qat_record.unlink(missing_ok=True)
    os.replace(layout.qat_partial, layout.qat_model)
    result = QATResult(run_dir=run_dir, model_path=layout.qat_model, epochs=qc.epochs, best_epoch=job.best["epoch"],
                       float_val_accuracy=job.float_acc, qat_val_accuracy_before=job.before_acc,
                       qat_val_accuracy=job.best["val_accuracy"], agreement_before=job.agreement,
                       warmup_batches=job.n_warm, seconds=seconds, range_percentile=qc.range_percentile,
                       range_percentile_chosen=chosen, range_trials=trials, weights=qc.weights, **distill)
    write_json(layout.qat_record, {**asdict(result), "lr": qc.lr, "batch_size": qc.batch_size, "history": job.history,
                                   "model": job.cfg.model, "selected_on": "validation",
                                   "distribute": job.dist.describe(), "config": qc.to_dict()})
    return result
