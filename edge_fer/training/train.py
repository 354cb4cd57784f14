"""``edgefer train``: train a registered architecture on FER2013, resumably.

    from edge_fer.training import TrainConfig, train
    result = train(TrainConfig(model="cnn", data="fer2013.csv", epochs=2), out="runs/cnn")

At the end of every epoch the run directory gets the model with its optimizer state
(``last-eNNN.keras``), then ``state.json`` pointing at it — each written atomically — so a
killed run loses at most the epoch in progress. Running the same command again resumes
from the last finished epoch, with the learning-rate schedule and early-stopping counters
as they were.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from .._tf import tf as _tf
from ..data.pipeline import make_dataset, teacher_targets
from ..errors import ConfigError, RunError
from ..models import create_model, describe_model, load_model, resolve_name
from ..runs import RunLayout, atomic_path, next_run_dir, read_state, write_json
from .config import TrainConfig
from .distribute import lost_worker, make_distribution, scaled_lr

log = logging.getLogger(__name__)

HISTORY_KEYS = ("loss", "accuracy", "precision", "recall", "auc", "f1")


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_epoch: int
    best: dict
    stopped_early: bool
    seconds: float


def compile_model(model, cfg: TrainConfig, optimizer=None):
    from ..models import keras_metrics as em

    keras = _keras()
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(learning_rate=cfg.lr),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        # scored against each target's dominant class: soft targets (mixup, distillation) would
        # otherwise count every class > 0 as a positive (distillation: precision 1.0, AUC 0.0)
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            em.DominantPrecision(name="precision"),
            em.DominantRecall(name="recall"),
            em.DominantAUC(name="auc"),
            # float32 state: under mixed_float16 its variables would be autocast, and a replica cannot
            # read an autocast sync-on-read variable (the F1 sum fails under MirroredStrategy)
            em.DominantF1Score(average="macro", name="f1", dtype="float32"),
        ],
    )
    return model


def prepare_run_dir(cfg: TrainConfig, out: Path | None) -> tuple[Path, dict]:
    """Pick the run directory and say whether it resumes: returns (run_dir, state)."""
    run_dir = Path(out) if out else next_run_dir(resolve_name(cfg.model))
    state = read_state(run_dir)
    if state.get("status") == "finished":
        raise RunError(
            f"{run_dir} holds a finished run; choose a new --out, or omit --out to get the next free run name"
        )
    if RunLayout(run_dir).config.is_file():
        saved = TrainConfig.load(run_dir).identity()
        diff = {k: (saved.get(k), v) for k, v in cfg.identity().items() if saved.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: run has {a!r}, you asked {b!r}" for k, (a, b) in diff.items())
            raise RunError(f"{run_dir} holds an unfinished run with other settings ({shown}); "
                           "repeat its settings to resume, or train into a new --out")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not an edge_fer run; choose an empty or new --out")
    return run_dir, state


class _RunCheckpoint:
    """Keras callback (built lazily, since it subclasses a TF class) writing the resumable state."""

    @staticmethod
    def make(run_dir: Path, cfg: TrainConfig, state: dict, plateau, stopper, dist):
        keras = _keras()

        class RunCheckpoint(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.history: list[dict] = state.get("history", [])
                self.best = state.get("best", {})
                self.stopped_early = False
                self.t0 = time.time() - state.get("seconds", 0.0)

            def on_train_begin(self, logs=None):
                # Runs after the Keras callbacks reset themselves: put back their counters.
                cb = state.get("callbacks")
                if cb:
                    plateau.wait, plateau.best, plateau.cooldown_counter = (
                        cb["plateau_wait"], cb["plateau_best"], cb["plateau_cooldown"])
                    if stopper is not None:
                        stopper.wait, stopper.best = cb["stop_wait"], cb["stop_best"]

            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                logs["lr"] = float(keras.backend.get_value(self.model.optimizer.learning_rate))
                logs["epoch"] = epoch + 1
                self.history.append(logs)
                value = logs.get(cfg.monitor)
                better = value is not None and (
                    not self.best
                    or (value < self.best["value"] if cfg.monitor == "val_loss" else value > self.best["value"])
                )
                if better:
                    with dist.writable(RunLayout(run_dir).best_model) as tmp:
                        self.model.save(tmp)
                    self.best = {"epoch": epoch + 1, "monitor": cfg.monitor, "value": value,
                                 **{k: v for k, v in logs.items() if k.startswith("val_")}}
                self.stopped_early = bool(self.model.stop_training)
                last = RunLayout(run_dir).checkpoint(epoch + 1)
                with dist.writable(last) as tmp:
                    self.model.save(tmp)  # includes the optimizer state
                if not dist.is_chief:  # only the chief writes the run directory
                    return
                finished = self.stopped_early or epoch + 1 >= cfg.epochs
                self._write_state(epoch + 1, last.name, "finished" if finished else "running")
                for old in RunLayout(run_dir).checkpoints():
                    if old.name != last.name:
                        old.unlink(missing_ok=True)
                _write_history(run_dir, self.history)

            def _write_state(self, epoch: int, last: str, status: str):
                write_json(RunLayout(run_dir).state, {
                    "status": status,
                    "epoch": epoch,
                    "epochs": cfg.epochs,
                    "last": last,
                    "best": self.best,
                    "stopped_early": self.stopped_early,
                    "seconds": time.time() - self.t0,
                    "history": self.history,
                    "callbacks": {
                        "plateau_wait": plateau.wait, "plateau_best": float(plateau.best),
                        "plateau_cooldown": plateau.cooldown_counter,
                        "stop_wait": stopper.wait if stopper else 0,
                        "stop_best": float(stopper.best) if stopper else 0.0,
                    },
                })

        return RunCheckpoint()


class TFLiteTeacher:
    """A ``.tflite`` classifier (e.g. the shipped ``cnn_int8``) as a distillation teacher.

    Called on a batch of 0–255 images in the input pipeline, it returns log-probabilities, which
    stand in for logits: softmax(log p / T) is the teacher's distribution softened by T, as
    softmax(logits / T) is. An int8 output resolves probabilities only to its scale (1/256 for the
    shipped models), so they are clipped below at half a step before the log.
    """

    def __init__(self, path: Path, threads: int | None = None):
        from ..errors import ModelError
        from ..runtime.tflite import TFLiteModel

        try:
            self.model = TFLiteModel(str(path), threads or os.cpu_count() or 1)
        except ModelError as e:
            raise ConfigError(f"--teacher {path}: not a TFLite model LiteRT can load ({str(e).splitlines()[0]})")
        inp, out = self.model.inp, self.model.out
        self.input_shape = (None, *map(int, inp["shape"][1:]))
        self.classes = int(out["shape"][-1])
        self.out_quant = out["quantization"] if np.dtype(out["dtype"]).kind in "iu" else None
        self.floor = float(self.out_quant[0] / 2) if self.out_quant and self.out_quant[0] > 0 else 1e-6
        self._lock = threading.Lock()  # one interpreter: tf.data may call from several threads

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """float32 (B,H,W,C) 0–255 images → (B, classes) probabilities."""
        with self._lock:
            return self.model.predict(np.asarray(images, np.float32)[..., 0], batch_size=max(len(images), 1))

    def _log_p(self, images):
        return np.log(np.clip(self.probabilities(images), self.floor, 1.0)).astype(np.float32)

    def __call__(self, images, training=False):
        tf = _tf()
        z = tf.numpy_function(self._log_p, [images], tf.float32, stateful=True)
        z.set_shape([None, self.classes])
        return z


def load_teacher(cfg: TrainConfig):
    """The teacher named by ``cfg.teacher`` — a run directory or ``.keras`` file (its logits model),
    or a ``.tflite`` file or shipped model name (:class:`TFLiteTeacher`) — or None."""
    if not cfg.teacher:
        return None
    p = Path(cfg.teacher).expanduser()
    if p.suffix == ".tflite" or (not p.exists() and p.parent == Path(".")):
        from ..runtime.shipped import resolve_model

        path = resolve_model(cfg.teacher)  # a file, or a shipped name; unknown names: one clear line
        if path.suffix != ".tflite":
            raise ConfigError(f"--teacher {cfg.teacher}: only .tflite files, runs or .keras models can teach; "
                              f"e.g. --teacher cnn_int8")
        return TFLiteTeacher(path)
    path = RunLayout(p).best_model if p.is_dir() else p
    if p.is_dir() and not path.is_file():
        raise ConfigError(f"--teacher {cfg.teacher}: the run has no best.keras yet; train it first")
    if path.suffix != ".keras" or not path.is_file():
        raise ConfigError(f"--teacher {cfg.teacher}: not a run directory, .keras or .tflite model or shipped "
                          "name; pass a trained run or a shipped model, e.g. --teacher runs/cnn or --teacher cnn_int8")
    model = load_model(path)
    if "logits" not in {layer.name for layer in model.layers}:
        raise ConfigError(f"--teacher {cfg.teacher}: no 'logits' layer; use a model built by edge_fer")
    logits = _keras().Model(model.input, model.get_layer("logits").output, name="teacher")
    logits.trainable = False
    return logits


def _check_teacher(cfg: TrainConfig, teacher, student) -> None:
    if teacher is not None and tuple(teacher.input_shape[1:]) != tuple(student.input_shape[1:]):
        raise ConfigError(f"--teacher {cfg.teacher}: takes {teacher.input_shape[1:]} inputs, the student "
                          f"{student.input_shape[1:]}; use a teacher trained on the same face size")


def _write_history(run_dir: Path, history: list[dict]) -> None:
    keys = ["epoch", *sorted({k for h in history for k in h} - {"epoch"})]
    with atomic_path(run_dir / "history.csv") as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    write_json(run_dir / "history.json", history)


def train(cfg: TrainConfig, out: str | Path | None = None, *, verbose: int = 2, data=None,
          worker_timeout: float | None = None) -> TrainResult:
    """Train (or resume) a run; returns where it is and its best validation figures.

    ``worker_timeout``: with ``cfg.strategy == "multiworker"``, seconds to wait for the cluster."""
    keras, tf = _keras(), _tf()
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "model": resolve_name(cfg.model)})
    # Checked before the strategy waits for the other workers, who write nothing before it returns.
    run_dir, state = prepare_run_dir(cfg, Path(out) if out else None)
    dist = make_distribution(cfg.strategy, cfg.devices, worker_timeout)  # before TensorFlow runs anything
    if cfg.jit and dist.name == "mirrored" and dist.replicas > 1 and all("CPU" in d for d in dist.devices):
        raise ConfigError(f"--jit with --strategy mirrored over CPU devices ({', '.join(dist.devices)}): XLA cannot "
                          "reach a replica's variables on another logical CPU; drop --jit or train on one device")
    teacher = load_teacher(cfg)  # checked before the run directory is made
    data = data or cfg.load_data()
    train_split, val_split = data["train"], data["validation"]
    gpus = tf.config.list_physical_devices("GPU")
    log.info("devices: %s", ", ".join(d.name for d in gpus) if gpus else "CPU only (no GPU visible to TensorFlow)")

    lr = scaled_lr(cfg.lr, dist.replicas, cfg.scale_lr)
    log.info("strategy %s (%s): %d replica(s), global batch %d, lr %g%s", dist.name, dist.task, dist.replicas,
             cfg.batch_size, lr, " (scaled by the replicas)" if cfg.scale_lr else "")
    keras.mixed_precision.set_global_policy(cfg.precision)
    # --seed: the same weights from the same command (same machine and TensorFlow); op determinism
    # makes TensorFlow pick reproducible kernels and keeps tf.data's order, for this call only
    # (TensorFlow exports no switch to turn it off again, hence its framework module).
    from tensorflow.python.framework import config as tf_config

    deterministic = tf_config.is_op_determinism_enabled()
    if cfg.jit:  # XLA has no deterministic kernel for some gradients (max pooling's): it refuses to run
        log.warning("--jit: op determinism is off (XLA has no deterministic max-pooling gradient); the same "
                    "--seed gives close, not identical, weights")
    else:
        tf_config.enable_op_determinism()
    scope = dist.scope()  # model, optimizer, metrics and input pipeline are made under the strategy
    scope.__enter__()
    try:
        keras.utils.set_random_seed(cfg.seed)
        initial_epoch = 0
        if state.get("last") and (run_dir / state["last"]).is_file():
            model = load_model(run_dir / state["last"], compile=True)
            _check_teacher(cfg, teacher, model)
            initial_epoch = int(state["epoch"])
            log.info("resuming %s from epoch %d of %d", run_dir, initial_epoch, cfg.epochs)
        else:
            state = {}
            model = create_model(cfg.model, weights=cfg.weights, **cfg.model_options)
            _check_teacher(cfg, teacher, model)
            compile_model(model, cfg, optimizer=keras.optimizers.Adam(learning_rate=lr))
            if dist.is_chief:
                run_dir.mkdir(parents=True, exist_ok=True)
                write_json(RunLayout(run_dir).config, {**cfg.to_dict(), "distribute": {
                    **dist.describe(), "global_batch": cfg.batch_size, "lr": lr, "precision": cfg.precision,
                    "jit": cfg.jit}})
                write_json(RunLayout(run_dir).model_info, describe_model(model))
                write_json(run_dir / "data.json", data.summary())
        dist.agree(initial_epoch, "the epoch to resume from")
        if cfg.jit:
            model.jit_compile = True  # XLA; not kept in a checkpoint's compile config
        teacher_fn = None
        if teacher is not None:
            teacher_fn = teacher_targets(teacher, cfg.distill_weight, cfg.distill_temperature)
            log.info("distilling from %s (weight %.2f, temperature %.1f)", cfg.teacher, cfg.distill_weight,
                     cfg.distill_temperature)
        channels = model.input_shape[-1]
        ds_train = make_dataset(train_split.x, train_split.targets, batch_size=cfg.batch_size, training=True,
                                augment=cfg.augmentation(), seed=cfg.seed, channels=channels,
                                mixup=cfg.mixup, teacher=teacher_fn, first_epoch=initial_epoch)
        ds_val = make_dataset(val_split.x, val_split.targets, batch_size=256, training=False, channels=channels)
        if dist.workers > 1:  # each worker takes its share of every batch (the arrays have no files to split)
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds_train, ds_val = ds_train.with_options(options), ds_val.with_options(options)

        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=cfg.lr_factor,
                                                    patience=cfg.lr_patience, min_lr=cfg.min_lr)
        stopper = None
        if cfg.early_stopping_patience > 0:
            stopper = keras.callbacks.EarlyStopping(
                monitor=cfg.monitor, patience=cfg.early_stopping_patience,
                mode="min" if cfg.monitor == "val_loss" else "max")
        checkpoint = _RunCheckpoint.make(run_dir, cfg, state, plateau, stopper, dist)
        scheduler = plateau if cfg.schedule == "plateau" else keras.callbacks.LearningRateScheduler(
            lambda epoch, lr: cfg.lr_at(epoch))  # a function of the epoch alone: resumes exactly
        tensorboard = [keras.callbacks.TensorBoard(log_dir=str(run_dir / "tb"), profile_batch=0, write_graph=False)]
        callbacks = [scheduler, *([stopper] if stopper else []), *(tensorboard if dist.is_chief else []),
                     checkpoint]  # last: it saves the state the others have just updated
        if initial_epoch < cfg.epochs:
            try:
                model.fit(ds_train, validation_data=ds_val, epochs=cfg.epochs, initial_epoch=initial_epoch,
                          steps_per_epoch=math.ceil(len(train_split.x) / cfg.batch_size),
                          callbacks=callbacks, verbose=verbose)
            except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError):
                if dist.workers <= 1:
                    raise
                raise lost_worker(dist, read_state(run_dir).get("epoch", initial_epoch)) from None
    finally:
        scope.__exit__(None, None, None)
        keras.mixed_precision.set_global_policy("float32")
        if not deterministic:
            tf_config.disable_op_determinism()
    final = read_state(run_dir)
    return TrainResult(run_dir=run_dir, epochs_done=final.get("epoch", 0), best_epoch=final.get("best", {}).get("epoch", 0),
                       best=final.get("best", {}), stopped_early=final.get("stopped_early", False),
                       seconds=final.get("seconds", 0.0))
