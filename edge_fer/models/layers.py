"""Small custom layers the builders share, written so tfmot can quantise them.

Stock MobileNetV3 builds hard-sigmoid from TF operator lambdas (``x + 3.0``), which
tensorflow-model-optimization cannot annotate; these layers make the same computation one
named, serialisable layer each.
"""

from .._tf import keras as _keras

keras = _keras()


@keras.utils.register_keras_serializable(package="edge_fer")
class HardSigmoid(keras.layers.Layer):
    """relu6(x + 3) / 6, as in MobileNetV3."""

    def call(self, x):
        return keras.backend.relu(x + 3.0, max_value=6.0) * (1.0 / 6.0)


@keras.utils.register_keras_serializable(package="edge_fer")
class HardSwish(keras.layers.Layer):
    """x · relu6(x + 3) / 6, as in MobileNetV3."""

    def call(self, x):
        return x * keras.backend.relu(x + 3.0, max_value=6.0) * (1.0 / 6.0)


CUSTOM_OBJECTS = {"HardSigmoid": HardSigmoid, "HardSwish": HardSwish}
