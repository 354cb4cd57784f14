"""Quantisation-aware fine-tuning (tensorflow-model-optimization) of a trained run.

    from edge_fer.quantization import qat_run
    result = qat_run("runs/cnn", epochs=3, lr=1e-4)     # writes runs/cnn/qat/

Steps, each one needed:
1. The float model is rebuilt in float32 from the shared builder and given the run's weights
   (a run trained under mixed_bfloat16 quantises like any other).
2. Layers the default 8-bit scheme does not know (``Rescaling``, ``HardSwish``, ``HardSigmoid``,
   ``Multiply``) get an explicit :class:`OutputQuantizeConfig`; nothing silently stays float.
3. The fake-quant ranges are warmed up: tfmot starts every activation range at [-6, 6] with a
   fixed EMA decay of 0.999, so straight after ``quantize_apply`` the QAT model disagrees with
   the float model on most faces and a short fine-tune barely moves the ranges. A warm-up pass
   over training batches with a fast decay (0.9) and no weight update sets them first.
4. Fine-tuning with a small learning rate; the best epoch on validation is kept.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from .._tf import tf as _tf
from ..errors import RunError
from ..runs import atomic_path, resolve_run, write_json

log = logging.getLogger(__name__)

QAT_DIR = "qat"


def _tfmot():
    _tf()
    import tensorflow_model_optimization as tfmot

    return tfmot


def _configs():
    """The QuantizeConfigs for layers tfmot's default 8-bit registry does not cover (built lazily)."""
    tfmot = _tfmot()
    keras = _keras()
    quantizers = tfmot.quantization.keras.quantizers

    @keras.utils.register_keras_serializable(package="edge_fer")
    class OutputQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights to quantise; quantise the layer's output (asymmetric, per tensor)."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

        def get_config(self):
            return {}

    return {"OutputQuantizeConfig": OutputQuantizeConfig}


_CONFIGS: dict | None = None


def custom_objects() -> dict:
    """Everything needed to deserialise a QAT model saved by edge_fer."""
    global _CONFIGS
    from ..models.layers import CUSTOM_OBJECTS

    if _CONFIGS is None:
        _CONFIGS = _configs()
    return {**CUSTOM_OBJECTS, **_CONFIGS}


OUTPUT_QUANTIZED = ("Rescaling", "Normalization", "HardSwish", "HardSigmoid", "Multiply")


def quantize_model(float_model):
    """A QAT copy of ``float_model`` (the input model is not changed)."""
    tfmot = _tfmot()
    keras = _keras()
    q = tfmot.quantization.keras
    objs = custom_objects()
    output_config = objs["OutputQuantizeConfig"]

    def annotate(layer):
        if type(layer).__name__ in OUTPUT_QUANTIZED:
            return q.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), output_config())
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(float_model, clone_function=annotate)
    clone.set_weights(float_model.get_weights())
    annotated = q.quantize_annotate_model(clone)
    with q.quantize_scope(objs):
        return q.quantize_apply(annotated)


@contextlib.contextmanager
def _fast_range_ema(decay: float):
    """Make tfmot's moving-average quantizers use ``decay`` instead of their fixed 0.999."""
    _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def patched(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = patched
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def warm_up_ranges(qat_model, batches, *, decay: float = 0.9) -> int:
    """Set the fake-quant ranges from data: forward passes in training mode, weights untouched."""
    range_vars = [v for v in qat_model.variables if v.name.split("/")[-1].split(":")[0].endswith(("_min", "_max"))]
    range_ids = {id(v) for v in range_vars}
    others = [v for v in qat_model.variables if id(v) not in range_ids]
    saved = [v.numpy() for v in others]  # BatchNorm statistics must not move
    n = 0
    with _fast_range_ema(decay):
        for x in batches:
            qat_model(x, training=True)
            n += 1
    for v, value in zip(others, saved):
        v.assign(value)
    return n


def load_qat_model(path: str | Path):
    tfmot = _tfmot()
    keras = _keras()
    p = Path(path)
    if not p.is_file():
        raise RunError(f"{p}: no QAT model; run `edgefer qat RUN` first, or export with --from ptq")
    with tfmot.quantization.keras.quantize_scope(custom_objects()):
        try:
            return keras.models.load_model(p, compile=False)
        except Exception as e:
            raise RunError(f"{p}: cannot load the QAT model ({type(e).__name__}: {str(e)[:160]}); run `edgefer qat` again") from None


def load_float_model(run_dir: Path):
    """The run's best model rebuilt in float32 from the shared builder, with the trained weights."""
    from ..models import create_model, load_model
    from ..report.evaluate import best_model_path
    from ..training import TrainConfig

    cfg = TrainConfig.load(run_dir)
    trained = load_model(best_model_path(run_dir))
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


def qat_run(run: str | Path | None, *, epochs: int = 3, lr: float = 1e-4, batch_size: int = 64,
            warmup_batches: int = 50, data=None, verbose: int = 2) -> QATResult:
    """Fine-tune a trained run with quantisation-aware training; writes RUN/qat/."""
    from ..data.pipeline import Augment, as_model_input, make_dataset
    from ..training.train import compile_model

    keras = _keras()
    run_dir = resolve_run(run)
    if epochs < 0:
        raise RunError(f"--epochs must be ≥ 0, got {epochs}")
    t0 = time.time()
    float_model, cfg = load_float_model(run_dir)
    data = data or cfg.load_data()
    tr, va = data["train"], data["validation"]
    keras.utils.set_random_seed(cfg.seed)
    channels = float_model.input_shape[-1]
    x_val = as_model_input(va.x, channels)

    def accuracy(model):
        p = model.predict(x_val, batch_size=256, verbose=0)
        return float((p.argmax(1) == va.y).mean()), p

    float_acc, p_float = accuracy(float_model)
    qat_model = quantize_model(float_model)
    rng = np.random.default_rng(cfg.seed)
    warm = (as_model_input(tr.x[rng.choice(len(tr), batch_size, replace=False)], channels)
            for _ in range(warmup_batches))
    n_warm = warm_up_ranges(qat_model, warm)
    before_acc, p_qat = accuracy(qat_model)
    agreement = float((p_qat.argmax(1) == p_float.argmax(1)).mean())
    log.info("QAT %s: float val acc %.4f; after range warm-up (%d batches) QAT val acc %.4f, agreement %.4f",
             cfg.model, float_acc, n_warm, before_acc, agreement)

    out = run_dir / QAT_DIR
    out.mkdir(parents=True, exist_ok=True)
    # HDF5: tf_keras' .keras format cannot reload tfmot's QuantizeLayer variables (5 expected, 3 saved).
    best_path = out / "best.h5"
    best = {"epoch": 0, "val_accuracy": before_acc}
    _save_h5(qat_model, best_path)
    history = []
    if epochs > 0:
        compile_model(qat_model, cfg, optimizer=keras.optimizers.Adam(learning_rate=lr))
        ds_train = make_dataset(tr.x, tr.targets, batch_size=batch_size, training=True,
                                augment=Augment() if cfg.augment else None, seed=cfg.seed, channels=channels)
        ds_val = make_dataset(va.x, va.targets, batch_size=256, training=False, channels=channels)

        class KeepBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                history.append({"epoch": epoch + 1, **logs})
                if logs["val_accuracy"] > best["val_accuracy"]:
                    best.update(epoch=epoch + 1, val_accuracy=logs["val_accuracy"])
                    _save_h5(self.model, best_path)

        qat_model.fit(ds_train, validation_data=ds_val, epochs=epochs, callbacks=[KeepBest()], verbose=verbose)

    result = QATResult(run_dir=run_dir, model_path=best_path, epochs=epochs, best_epoch=best["epoch"],
                       float_val_accuracy=float_acc, qat_val_accuracy_before=before_acc,
                       qat_val_accuracy=best["val_accuracy"], agreement_before=agreement,
                       warmup_batches=n_warm, seconds=time.time() - t0)
    write_json(out / "qat.json", {**asdict(result), "lr": lr, "batch_size": batch_size, "history": history,
                                  "model": cfg.model, "selected_on": "validation"})
    return result
