"""Small custom layers the builders share, written so tfmot can quantise them.

Stock MobileNetV3 builds hard-sigmoid from TF operator lambdas (``x + 3.0``), which
tensorflow-model-optimization cannot annotate; these layers make the same computation one
named, serialisable layer each.
"""

from .._tf import keras as _keras

keras = _keras()


@keras.utils.register_keras_serializable(package="edge_fer")
class HardSigmoid(keras.layers.Layer):
    """relu6(x + 3) / 6, as in MobileNetV3.

    TFLite runs this as ADD+RELU6 (one fused op with its own int8 output) then MUL by 1/6.
    ``activation`` is the relu6 part, exposed so quantisation-aware training can round its
    output where the int8 graph does (see ``edge_fer.quantization.scheme``).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.activation = keras.activations.relu

    def call(self, x):
        return self.activation(x + 3.0, max_value=6.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package="edge_fer")
class ScaleShift(keras.layers.Layer):
    """``x * scale + offset`` like keras' Rescaling, with ``activation`` (linear) after the scale.

    TFLite runs Rescaling with an offset as MUL then ADD, each with its own int8 output; QAT uses
    this layer in place of such a Rescaling so the MUL's output can be rounded as in the int8 graph.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.offset = float(scale), float(offset)
        self.activation = keras.activations.linear

    def call(self, x):
        return self.activation(keras.backend.cast(x, self.compute_dtype) * self.scale) + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


@keras.utils.register_keras_serializable(package="edge_fer")
class HardSwish(keras.layers.Layer):
    """x · relu6(x + 3) / 6, as in MobileNetV3."""

    def call(self, x):
        return x * keras.backend.relu(x + 3.0, max_value=6.0) * (1.0 / 6.0)


CUSTOM_OBJECTS = {"HardSigmoid": HardSigmoid, "HardSwish": HardSwish, "ScaleShift": ScaleShift}
