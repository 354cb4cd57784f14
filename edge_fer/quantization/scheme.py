"""The quantisation scheme: how edge_fer's models become QAT models that compute what TFLite's
int8 graph computes.

    from edge_fer.quantization import quantize_model
    qat_model = quantize_model(float_model)          # a QAT copy; float_model is unchanged

tfmot's default 8-bit scheme with explicit configs for the layers it does not know
(``Rescaling``, ``HardSwish``, ``HardSigmoid``, ``Multiply``: nothing silently stays float),
depthwise kernels quantised per channel, and Dense (and, per tensor, every) BatchNorm scale
folded into its kernel before QAT. Everything that reaches into tfmot's private modules is in the
section "tfmot internals" at the end of this file.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from .._tf import tf as _tf
from ..errors import RunError

_CONFIGS: dict | None = None
WEIGHTS = {False: "per-channel", True: "per-tensor"}


def _tfmot():
    _tf()
    import tensorflow_model_optimization as tfmot

    return tfmot


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


# ------------------------------------------------------------------------------ tfmot internals
# The only places edge_fer reaches into tensorflow_model_optimization's private modules: the
# QuantizeConfigs built on its 8-bit registry (``_configs``), the 8-bit scheme's layout transforms
# (``_scheme``) and the moving-average quantiser's EMA decay (``range_ema_decay``). A tfmot upgrade
# that breaks one breaks here, and test_qat_builders says which.


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

@contextlib.contextmanager
def range_ema_decay(decay: float):
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
