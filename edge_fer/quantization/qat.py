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
5. Activation ranges chosen on validation, in int8 (``range_percentile="auto"``, the default):
   min/max, then ever tighter percentile clippings, each converted as ``edgefer export --int8``
   converts it; the first that passes the export's 98% agreement gate is saved.

The model is written as RUN/qat/best.partial.h5 until the end, then becomes best.h5 and qat.json
is written: an interrupted run leaves no qat.json for its model, and ``edgefer export`` refuses it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from .._tf import quiet_native_stderr
from .._tf import tf as _tf
from ..errors import ConfigError, RunError
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
    tf = _tf()
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

    @keras.utils.register_keras_serializable(package="edge_fer")
    class IntermediateQuantizeConfig(OutputQuantizeConfig):
        """Also round the layer's ``activation`` (an intermediate result) to a fixed int8 range.

        For a layer TFLite lowers to two ops, each with an int8 output: HardSigmoid (ADD+RELU6 in
        [0, 6], then MUL) and ScaleShift (MUL in [0, 255·scale] for 0–255 input, then ADD).
        Without this the QAT model skips a rounding the int8 graph does, and they drift apart.
        """

        def __init__(self, low=0.0, high=6.0):
            self.low, self.high = float(low), float(high)

        def get_activations_and_quantizers(self, layer):
            return [(layer.activation, quantizers.FixedQuantizer(num_bits=8, init_min=self.low, init_max=self.high,
                                                                 narrow_range=False))]

        def set_quantize_activations(self, layer, quantize_activations):
            layer.activation = quantize_activations[0]

        def get_config(self):
            return {"low": self.low, "high": self.high}

    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    class DepthwiseKernelQuantizer(quantizers.LastValueQuantizer):
        """Per-channel symmetric quantiser for a (h, w, channels, multiplier) depthwise kernel.

        tfmot's conv weight quantiser keeps one range per *last* axis, which for a depthwise
        kernel is the multiplier (1): it emulates per-tensor weights. The TFLite converter then
        folds BatchNorm into the kernel and quantises it per channel, so the int8 graph no longer
        computes what QAT trained (MobileNetV3-Small: 95.0% top-1 agreement). With one range per
        channel, folding scales each channel's grid exactly and the int8 graph matches.
        """

        def __init__(self):
            super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

        @staticmethod
        def _channels(shape):
            return int(shape[-2]) * int(shape[-1])

        def build(self, tensor_shape, name, layer):
            n = self._channels(tensor_shape)
            return {"min_var": layer.add_weight(name + "_min", shape=(n,), initializer=keras.initializers.Constant(-6.0),
                                                trainable=False),
                    "max_var": layer.add_weight(name + "_max", shape=(n,), initializer=keras.initializers.Constant(6.0),
                                                trainable=False)}

        def __call__(self, inputs, training, weights, **kwargs):
            shape = inputs.shape
            flat = tf.reshape(inputs, (shape[0], shape[1], 1, self._channels(shape)))
            return tf.reshape(super().__call__(flat, training, weights, **kwargs), shape)

        def get_config(self):
            return {}

    @keras.utils.register_keras_serializable(package="edge_fer")
    class DepthwiseQuantizeConfig(registry.Default8BitQuantizeConfig):
        """tfmot's DepthwiseConv2D config with the kernel quantised per channel (see above)."""

        def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), quantize_output=False):
            super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
            self.weight_quantizer = DepthwiseKernelQuantizer()

    return {"OutputQuantizeConfig": OutputQuantizeConfig, "IntermediateQuantizeConfig": IntermediateQuantizeConfig,
            "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig}


def _scheme(per_tensor: bool = False):
    """tfmot's default 8-bit scheme, corrected where its QAT graph differs from TFLite's int8 graph.

    1. Depthwise kernels are quantised per channel (see ``DepthwiseKernelQuantizer``); with
       ``per_tensor`` every kernel has one range (tfmot's ``disable_per_axis``), as the converter then
       quantises them.
    2. A Conv2D/DepthwiseConv2D/Dense followed directly by a ReLU layer keeps its weight
       quantisation. tfmot's ``LayerReLUQuantize`` gives such a layer a no-op QuantizeConfig to keep
       a fake-quant out from between the layer and its ReLU, which also drops the fake-quant of
       its *weights*; TFLite still quantises them, so QAT trained a different model
       (MobileNetV3's squeeze-excite convolutions). Here only the layer's output quantiser is
       removed, exactly as tfmot does for Conv+BN+ReLU.
    """
    _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras import (
        quantize_aware_activation,
    )
    from tensorflow_model_optimization.python.core.quantization.keras import (
        utils as quantize_utils,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_layout_transform as layout,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_scheme as scheme,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as transforms,
    )

    depthwise_config = custom_objects()["DepthwiseQuantizeConfig"]
    keras = _keras()

    def keep_weights(relu_node):
        node = relu_node.input_layers[0]
        if node.layer["class_name"] == "Add" or node.layer["config"].get("activation") != "linear":
            node.metadata["quantize_config"] = configs.NoOpQuantizeConfig()  # tfmot's behaviour
        else:
            node.layer["config"]["activation"] = quantize_utils.serialize_activation(
                quantize_aware_activation.NoOpActivation(), use_legacy_format=True)
        return relu_node

    class LayerReLUQuantize(transforms.LayerReLUQuantize):
        def replacement(self, match_layer):
            return keep_weights(match_layer)

    class LayerReluActivationQuantize(transforms.LayerReluActivationQuantize):
        def replacement(self, match_layer):
            return keep_weights(match_layer)

    class Layout(layout.Default8BitQuantizeLayoutTransform):
        def apply(self, model, layer_quantize_map):
            originals = transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize
            transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize = (
                LayerReLUQuantize, LayerReluActivationQuantize)
            try:
                return super().apply(model, layer_quantize_map)
            finally:
                transforms.LayerReLUQuantize, transforms.LayerReluActivationQuantize = originals

    class Scheme(scheme.Default8BitQuantizeScheme):
        def get_layout_transformer(self):
            return Layout()

        def get_quantize_registry(self):
            reg = registry.Default8BitQuantizeRegistry(disable_per_axis=per_tensor)
            if not per_tensor:
                reg._layer_quantize_map[keras.layers.DepthwiseConv2D] = depthwise_config()
            return reg

    return Scheme(disable_per_axis=per_tensor)


_CONFIGS: dict | None = None
WEIGHTS = {False: "per-channel", True: "per-tensor"}
# While `edgefer qat` runs, its model lives here; best.h5 and then qat.json (the stage's "finished"
# marker) are written only at the end, so an interrupted run never passes for a finished one.
PARTIAL = "best.partial.h5"


def unfinished_qat(run_dir: Path) -> str | None:
    """Why RUN's QAT model must not be used — a QAT run that did not finish, said with the fix — or
    None (QAT finished, or never ran)."""
    run_dir = Path(run_dir)
    d = run_dir / QAT_DIR
    partial, best, done = d / PARTIAL, d / "best.h5", d / "qat.json"
    if partial.is_file():
        keep = (f", or delete {partial} to use the QAT model that finished before it" if best.is_file()
                and done.is_file() else "")
        return (f"{d}: an `edgefer qat` run did not finish ({PARTIAL} left behind); run `edgefer qat {run_dir}` "
                f"again to finish it{keep}")
    if best.is_file() and not done.is_file():
        return (f"{best}: QAT did not finish (no qat.json beside it); run `edgefer qat {run_dir}` again to "
                "finish it")
    return None


def qat_weights(run_dir: Path) -> str | None:
    """The weight granularity RUN's QAT run recorded ("per-channel" for a qat.json older than the
    choice), or None without a qat.json."""
    path = Path(run_dir) / QAT_DIR / "qat.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("weights", WEIGHTS[False])
    except (OSError, ValueError):
        return None


def model_weights(qat_model) -> str:
    """The weight granularity a QAT model was built with, read from its kernel range variables (one
    value per kernel, or one per output channel)."""
    ranges = [v for v in qat_model.variables if v.name.split("/")[-1].split(":")[0].endswith("kernel_min")]
    return WEIGHTS[not any(len(v.shape) > 0 for v in ranges)] if ranges else WEIGHTS[False]


def custom_objects() -> dict:
    """Everything needed to deserialise a QAT model saved by edge_fer."""
    global _CONFIGS
    from ..models.layers import CUSTOM_OBJECTS

    if _CONFIGS is None:
        _CONFIGS = _configs()
    return {**CUSTOM_OBJECTS, **_CONFIGS}


OUTPUT_QUANTIZED = ("Rescaling", "Normalization", "HardSwish", "HardSigmoid", "Multiply")


def _fold_batchnorm_scales(model, *, dense_only: bool = True) -> int:
    """Fold the scale of each BatchNormalization that follows a Dense (and, unless ``dense_only``, a Conv2D
    or DepthwiseConv2D) layer into that layer's kernel, in place.

    The converter folds BatchNorm into the layer before it. A kernel quantised per output channel only has
    each channel's grid rescaled by the fold, so QAT stays faithful; a kernel quantised per tensor does not:
    folding scales that differ between channels puts the int8 kernel on a grid QAT never saw (the cnn's
    Dense fc1: 24% relative error at fc1_relu, int8 agreeing with its QAT model on 89% of faces). Dense
    kernels are always per tensor; with ``per_tensor`` QAT, conv and depthwise kernels are too. Here the
    scale moves into the kernel before QAT and the BatchNorm keeps only its shift, frozen (it then runs in
    inference mode), so the converter folds a scale of exactly 1. Returns how many it folded.
    """
    keras = _keras()
    kinds = (keras.layers.Dense,) if dense_only else (keras.layers.Dense, keras.layers.Conv2D,
                                                       keras.layers.DepthwiseConv2D)
    folded = 0
    for layer in model.layers:
        nodes = layer._outbound_nodes
        if not isinstance(layer, kinds) or len(nodes) != 1 or layer.get_config().get("activation") != "linear":
            continue
        bn = nodes[0].outbound_layer
        if not isinstance(bn, keras.layers.BatchNormalization) or not bn.scale or bn.axis not in ([-1], -1, [3], 3, [1], 1):
            continue
        gamma, beta, mean, var = (w.astype(np.float64) for w in bn.get_weights())
        s = gamma / np.sqrt(var + bn.epsilon)
        weights = layer.get_weights()
        kernel = weights[0]
        if isinstance(layer, keras.layers.DepthwiseConv2D):  # (h, w, channels, multiplier): output c·m + j
            weights[0] = (kernel * s.reshape(kernel.shape[2], kernel.shape[3])).astype(np.float32)
        else:
            weights[0] = (kernel * s).astype(np.float32)
        if layer.use_bias:
            weights[1] = (weights[1] * s).astype(np.float32)
        layer.set_weights(weights)
        ones = np.ones_like(gamma)
        bn.set_weights([ones.astype(np.float32), beta.astype(np.float32), (mean * s).astype(np.float32),
                        (ones - bn.epsilon).astype(np.float32)])
        bn.trainable = False
        folded += 1
    return folded


def quantize_model(float_model, *, per_tensor: bool = False):
    """A QAT copy of ``float_model`` (the input model is not changed).

    ``per_tensor``: one weight scale per kernel instead of one per output channel (see ``qat_run``).
    """
    tfmot = _tfmot()
    keras = _keras()
    q = tfmot.quantization.keras
    objs = custom_objects()
    output_config, intermediate_config = objs["OutputQuantizeConfig"], objs["IntermediateQuantizeConfig"]

    def annotate(layer):
        kind, config = type(layer).__name__, layer.get_config()
        if (kind == "Rescaling" and layer.name == "preprocess" and config.get("offset", 0.0) != 0.0
                and np.ndim(config["scale"]) == 0):
            scale = float(config["scale"])  # the builders' "preprocess" sees the raw 0-255 input
            shift = objs["ScaleShift"](scale, config["offset"], name=layer.name)
            return q.quantize_annotate_layer(shift, intermediate_config(min(0.0, 255 * scale), max(0.0, 255 * scale)))
        if kind == "HardSigmoid":
            return q.quantize_annotate_layer(layer.__class__.from_config(config), intermediate_config(0.0, 6.0))
        if kind in OUTPUT_QUANTIZED:
            return q.quantize_annotate_layer(layer.__class__.from_config(config), output_config())
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(float_model, clone_function=annotate)
    clone.set_weights(float_model.get_weights())
    _fold_batchnorm_scales(clone, dense_only=not per_tensor)
    annotated = q.quantize_annotate_model(clone)
    with q.quantize_scope(objs):
        return q.quantize_apply(annotated, scheme=_scheme(per_tensor=per_tensor))


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


def _range_vars(model) -> list:
    return [v for v in model.variables if v.name.split("/")[-1].split(":")[0].endswith(("_min", "_max"))]


def warm_up_ranges(qat_model, batches, *, decay: float = 0.9) -> int:
    """Set the fake-quant ranges from data: forward passes in training mode, weights untouched."""
    range_ids = {id(v) for v in _range_vars(qat_model)}
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


_ACTIVATION_RANGES = ("post_activation", "output")


def clip_activation_ranges(qat_model, batches, percentile: float) -> int:
    """Shrink each data-driven activation range to the ``percentile`` of the values it sees.

    min/max ranges follow the rarest outliers: in MobileNetV3's last blocks a few positions reach
    20–70 while 99% of values stay below 1–3, so the int8 signal lives in 1–3 steps and one-step
    rounding differences between the QAT model and the int8 graph flip predictions. Ranges set at
    a high percentile keep the bulk at a finer step and clip the tail, in the QAT model and the int8
    graph alike (measured per model in docs/benchmarks.md). Fixed ranges
    (hard-sigmoid's [0, 6], preprocessing) and weight ranges are left alone. Returns how many
    ranges were shrunk.
    """
    keras = _keras()
    pairs = []  # (layer, min var, max var)
    for layer in qat_model.layers:
        by_name = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        for prefix in _ACTIVATION_RANGES:
            lo, hi = by_name.get(f"{prefix}_min"), by_name.get(f"{prefix}_max")
            fixed = prefix == "post_activation" and any(
                type(a.quantizer).__name__ == "FixedQuantizer" for a in getattr(layer, "_quantize_activations", []))
            if lo is not None and hi is not None and lo.shape.rank == 0 and not fixed:
                pairs.append((layer, lo, hi))
    if not pairs:
        return 0
    probe = keras.Model(qat_model.input, [layer.output for layer, _, _ in pairs])
    outs = [[] for _ in pairs]
    for x in batches:
        for i, o in enumerate(probe(x, training=False)):
            outs[i].append(np.asarray(o).ravel())
    shrunk = 0
    for (layer, lo, hi), chunks in zip(pairs, outs):
        values = np.concatenate(chunks)
        new_lo = max(float(lo.numpy()), min(0.0, float(np.percentile(values, 100.0 - percentile))))
        new_hi = min(float(hi.numpy()), max(0.0, float(np.percentile(values, percentile))))
        if new_hi - new_lo < 1e-6:
            continue
        if new_lo > float(lo.numpy()) + 1e-6 or new_hi < float(hi.numpy()) - 1e-6:
            shrunk += 1
        lo.assign(new_lo)
        hi.assign(new_hi)
    return shrunk


# From the least clipping to the most; None: the min/max ranges QAT ended with.
AUTO_PERCENTILES = (None, 99.99, 99.95, 99.9, 99.8, 99.7, 99.5)


def choose_range_percentile(qat_model, batches, calib, x_val, y_val, *, threshold: float = 0.98,
                            candidates=AUTO_PERCENTILES, try_all: bool = False,
                            per_tensor: bool = False) -> tuple[float | None, list[dict]]:
    """Pick the activation-range percentile of a fine-tuned QAT model on the validation split, in int8.

    The candidates (``None`` = keep the min/max ranges), ordered from the least clipping to the
    most, are tried in turn: each is applied to the model, converted to full-integer TFLite exactly
    as ``edgefer export --int8`` converts it, and run on the validation faces. The first whose
    top-1 agreement with its QAT model reaches ``threshold`` (the export gate) is kept — clipping
    throws information away, and on every model measured the least-clipped passing candidate was
    also the most accurate one (docs/benchmarks.md) — and the rest are not tried (``try_all``: they
    are, for the record, and the choice is the same). If none passes,
    the one that agrees most is kept. The model is left with the chosen ranges. Returns (chosen
    percentile, one dict per candidate tried).
    """
    import tempfile

    from ..export.convert import to_tflite
    from ..export.runtimes import open_runner

    ranges = _range_vars(qat_model)
    original = [v.numpy() for v in ranges]
    trials = []
    with tempfile.TemporaryDirectory(prefix="edgefer-ranges-") as tmp:
        for p in candidates:
            for v, value in zip(ranges, original):
                v.assign(value)
            shrunk = clip_activation_ranges(qat_model, batches, p) if p is not None else 0
            p_qat = qat_model.predict(x_val, batch_size=256, verbose=0)
            with warnings.catch_warnings(), quiet_native_stderr():
                warnings.simplefilter("ignore")
                blob = to_tflite(qat_model, "int8", calib=calib, per_tensor=per_tensor)
            path = Path(tmp) / "candidate.tflite"
            path.write_bytes(blob)
            p_int8 = open_runner(path).predict(x_val)
            trial = {"percentile": p, "ranges_shrunk": shrunk,
                     "qat_accuracy": float((p_qat.argmax(1) == y_val).mean()),
                     "int8_accuracy": float((p_int8.argmax(1) == y_val).mean()),
                     "agreement": float((p_int8.argmax(1) == p_qat.argmax(1)).mean())}
            log.info("ranges %s: QAT val acc %.4f, int8 val acc %.4f, agreement %.2f%%",
                     "min/max" if p is None else f"at the {p:g}th percentile", trial["qat_accuracy"],
                     trial["int8_accuracy"], 100 * trial["agreement"])
            trials.append(trial)
            if trial["agreement"] >= threshold and not try_all:
                break
    passing = [t for t in trials if t["agreement"] >= threshold]
    best = passing[0] if passing else max(trials, key=lambda t: t["agreement"])
    for v, value in zip(ranges, original):
        v.assign(value)
    if best["percentile"] is not None:
        clip_activation_ranges(qat_model, batches, best["percentile"])
    return best["percentile"], trials


def parse_range_percentile(value) -> float | str | None:
    """``"auto"``, ``None`` (min/max; also spelt ``"minmax"``) or a percentile in (50, 100]; anything
    else is a RunError naming the option."""
    if value is None or value == "auto":
        return value
    if isinstance(value, str) and value.strip().lower() in ("minmax", "min/max", "none"):
        return None
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise RunError(f"--range-percentile must be auto, minmax or a number in (50, 100], got {value!r}") from None
    if not 50.0 < p <= 100.0:
        raise RunError(f"--range-percentile must be auto, minmax or a number in (50, 100], got {value}")
    return p


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
    range_percentile: float | str | None = "auto"  # as asked: "auto", None (min/max) or a percentile
    range_percentile_chosen: float | None = None  # what the model was saved with
    range_trials: list = field(default_factory=list)  # "auto": one dict per candidate
    weights: str = "per-channel"  # weight quantisation granularity: "per-channel" or "per-tensor"
    teacher: str | None = None  # distillation while fine-tuning: the teacher, as given
    distill_weight: float | None = None
    distill_temperature: float | None = None


def qat_run(run: str | Path | None, *, epochs: int = 3, lr: float = 1e-4, batch_size: int = 64,
            warmup_batches: int = 50, range_percentile: float | str | None = "auto", per_tensor: bool = False,
            teacher: str | None = None, distill_weight: float | None = None,
            distill_temperature: float | None = None, data=None, data_path: str | None = None,
            verbose: int = 2, strategy: str = "none", devices: tuple[str, ...] = ()) -> QATResult:
    """Fine-tune a trained run with quantisation-aware training; writes RUN/qat/.

    ``range_percentile``: ``"auto"`` (default) fine-tunes with min/max ranges, then chooses among
    ``AUTO_PERCENTILES`` on the validation split in int8 (``choose_range_percentile``); ``None`` (or
    ``"minmax"``) keeps tfmot's min/max moving-average ranges; a number P clips each activation
    range to its P-th percentile after warm-up and keeps it fixed while fine-tuning.
    ``per_tensor``: quantise each kernel with one scale instead of one per output channel. Each
    channel's scale and zero point cost 12 bytes in a .tflite (a float32 and an int64), which a model
    of a few hundred thousand weights does not amortise (ferlite: 55 KB of 314 KB); some accelerators
    also require per-tensor weights. The BatchNorm scales are folded into the kernels before QAT, so the
    grid QAT trains is the one the converter writes. ``edgefer export`` follows the choice (qat.json).
    ``teacher``: fine-tune on distillation targets, as ``edgefer train --teacher`` does — a run, a
    ``.keras``/``.tflite`` model or a shipped name; ``distill_weight`` / ``distill_temperature`` default
    to the run's own when it was trained with a teacher, else to training's defaults. Fine-tuning a
    distilled model on hard labels alone pulls it back toward what labels alone teach.
    ``data_path``: read the run's data from here instead of where training read it.
    ``strategy``: ``none`` or ``mirrored`` (over the visible GPUs or ``devices``), as for training;
    QAT is a short fine-tuning on one machine, and over more than one device it is refused for now.
    """
    from ..data.pipeline import Augment, as_model_input, make_dataset, teacher_targets
    from ..training.train import _check_teacher, compile_model, load_teacher

    if epochs < 0:
        raise ConfigError(f"--epochs must be ≥ 0 (0: range warm-up only), got {epochs}")
    if not lr > 0:
        raise ConfigError(f"--lr must be > 0, got {lr}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be ≥ 1, got {batch_size}")
    if warmup_batches < 1:
        raise ConfigError(f"--warmup-batches must be ≥ 1 (they set the int8 ranges), got {warmup_batches}")
    if not teacher and (distill_weight is not None or distill_temperature is not None):
        raise ConfigError("--distill-weight and --distill-temperature need --teacher (e.g. --teacher cnn_int8)")
    if strategy == "multiworker":
        raise ConfigError("qat runs on one machine: use --strategy none; train with --strategy multiworker, then "
                          "fine-tune on the chief's host")
    run_dir = resolve_run(run)  # before TensorFlow loads: "no runs" is instant
    keras = _keras()
    from ..training.distribute import make_distribution

    dist = make_distribution(strategy, devices)
    if dist.replicas > 1:  # seen on two logical CPUs; with the BatchNorm layers trainable it runs
        raise ConfigError(f"qat --strategy {dist.name} over {dist.replicas} devices is not supported yet: the gradient "
                          "all-reduce fails on the QAT model's frozen BatchNorm layers; fine-tune with --strategy none "
                          "(QAT is a few epochs)")
    range_percentile = parse_range_percentile(range_percentile)
    auto = range_percentile == "auto"
    fixed = range_percentile is not None and not auto
    t0 = time.time()
    float_model, cfg = load_float_model(run_dir)
    teacher_fn, distill = None, {"teacher": None, "distill_weight": None, "distill_temperature": None}
    if teacher:
        if epochs == 0:
            raise ConfigError("--teacher needs fine-tuning epochs: with --epochs 0 nothing is trained; "
                              "pass --epochs 1 or more, or drop --teacher")
        tcfg = replace(
            cfg, teacher=teacher,
            distill_weight=distill_weight if distill_weight is not None else cfg.distill_weight,
            distill_temperature=distill_temperature if distill_temperature is not None else cfg.distill_temperature)
        teacher_model = load_teacher(tcfg)  # a bad name or file: one clear line, before anything is written
        _check_teacher(tcfg, teacher_model, float_model)
        teacher_fn = teacher_targets(teacher_model, tcfg.distill_weight, tcfg.distill_temperature)
        distill = {"teacher": teacher, "distill_weight": tcfg.distill_weight,
                   "distill_temperature": tcfg.distill_temperature}
        log.info("QAT %s: distilling from %s (weight %.2f, temperature %.1f)", cfg.model, teacher,
                 tcfg.distill_weight, tcfg.distill_temperature)
    data = data or cfg.load_data(data_path)
    tr, va = data["train"], data["validation"]
    keras.utils.set_random_seed(cfg.seed)
    channels = float_model.input_shape[-1]
    x_val = as_model_input(va.x, channels)

    def accuracy(model):
        p = model.predict(x_val, batch_size=256, verbose=0)
        return float((p.argmax(1) == va.y).mean()), p

    float_acc, p_float = accuracy(float_model)
    with dist.scope():  # the QAT model's variables (weights, ranges, optimizer) live under the strategy
        qat_model = quantize_model(float_model, per_tensor=per_tensor)
        rng = np.random.default_rng(cfg.seed)
        warm = (as_model_input(tr.x[rng.choice(len(tr), batch_size, replace=False)], channels)
                for _ in range(warmup_batches))
        n_warm = warm_up_ranges(qat_model, warm)
        clip = [as_model_input(tr.x[rng.choice(len(tr), batch_size, replace=False)], channels) for _ in range(8)] \
            if range_percentile is not None else None
        if fixed:
            n_clip = clip_activation_ranges(qat_model, clip, range_percentile)
            log.info("QAT %s: %d activation range(s) shrunk to their %g-th percentile", cfg.model, n_clip,
                     range_percentile)
    before_acc, p_qat = accuracy(qat_model)
    agreement = float((p_qat.argmax(1) == p_float.argmax(1)).mean())
    log.info("QAT %s: float val acc %.4f; after range warm-up (%d batches) QAT val acc %.4f, agreement %.4f",
             cfg.model, float_acc, n_warm, before_acc, agreement)

    out = run_dir / QAT_DIR
    out.mkdir(parents=True, exist_ok=True)
    # HDF5: tf_keras' .keras format cannot reload tfmot's QuantizeLayer variables (5 expected, 3 saved).
    # Until the end the model is saved as best.partial.h5: a finished QAT model of an earlier run stays usable.
    best_path = out / PARTIAL
    best = {"epoch": 0, "val_accuracy": before_acc}
    _save_h5(qat_model, best_path)
    history = []
    if epochs > 0:
        with dist.scope():
            compile_model(qat_model, cfg, optimizer=keras.optimizers.Adam(learning_rate=lr))
        ds_train = make_dataset(tr.x, tr.targets, batch_size=batch_size, training=True,
                                augment=Augment() if cfg.augment else None, seed=cfg.seed, channels=channels,
                                teacher=teacher_fn)
        ds_val = make_dataset(va.x, va.targets, batch_size=256, training=False, channels=channels)

        class KeepBest(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = {k: float(v) for k, v in (logs or {}).items()}
                history.append({"epoch": epoch + 1, **logs})
                if logs["val_accuracy"] > best["val_accuracy"]:
                    best.update(epoch=epoch + 1, val_accuracy=logs["val_accuracy"])
                    _save_h5(self.model, best_path)

        # Clipped ranges stay where they were set; tfmot's moving averages would drag them back to the outliers.
        with _fast_range_ema(1.0) if fixed else contextlib.nullcontext():
            qat_model.fit(ds_train, validation_data=ds_val, epochs=epochs, callbacks=[KeepBest()], verbose=verbose)

    chosen, trials = range_percentile, []
    if auto:
        from ..calibration import CalibrationSet

        # After fine-tuning the model in memory holds the last epoch; best.h5 the best one (epoch 0: the warm-up).
        # (the converter takes a model outside any strategy: a mirrored one is reloaded too)
        model = load_qat_model(best_path) if epochs > 0 or dist.name != "none" else qat_model
        calib = CalibrationSet.from_source(None, tr, size=256, seed=cfg.seed, channels=channels)
        chosen, trials = choose_range_percentile(model, clip, calib, x_val, va.y, per_tensor=per_tensor)
        best["val_accuracy"] = next(t["qat_accuracy"] for t in trials if t["percentile"] == chosen)
        _save_h5(model, best_path)
        log.info("QAT %s: activation ranges %s chosen on validation", cfg.model,
                 "min/max" if chosen is None else f"at the {chosen:g}th percentile")

    # qat.json vouches for best.h5: it goes first and comes back last, so no kill leaves it beside another model.
    done = out / "qat.json"
    done.unlink(missing_ok=True)
    os.replace(best_path, out / "best.h5")
    best_path = out / "best.h5"
    result = QATResult(run_dir=run_dir, model_path=best_path, epochs=epochs, best_epoch=best["epoch"],
                       float_val_accuracy=float_acc, qat_val_accuracy_before=before_acc,
                       qat_val_accuracy=best["val_accuracy"], agreement_before=agreement,
                       warmup_batches=n_warm, seconds=time.time() - t0, range_percentile=range_percentile,
                       range_percentile_chosen=chosen, range_trials=trials,
                       weights=WEIGHTS[per_tensor], **distill)
    write_json(done, {**asdict(result), "lr": lr, "batch_size": batch_size, "history": history,
                                  "model": cfg.model, "selected_on": "validation", "distribute": dist.describe()})
    return result
