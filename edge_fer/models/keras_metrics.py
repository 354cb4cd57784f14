"""Keras training metrics that score soft targets against their dominant class (``edgefer train``).

Keras' Precision, Recall and AUC read every non-zero target as a positive. Label smoothing is
applied inside the loss, so it does not reach them, but mixup makes the partner class a second
positive (run ferlite-e90-mix printed training AUC 0.77 against 0.93 on validation), and
distillation makes all seven classes positive: training precision 1.0 and AUC 0.0 — numbers about
the targets, not the model. These subclasses first turn each target
row into the one-hot of its largest entry; one-hot targets (validation, plain training) pass
unchanged, so the figures equal the stock metrics there.
"""

from __future__ import annotations

from .._tf import keras as _keras
from .._tf import tf as _tf

keras = _keras()
tf = _tf()


def dominant_one_hot(y_true):
    """(B, C) targets → one-hot of each row's largest entry, same dtype."""
    y_true = tf.convert_to_tensor(y_true)
    depth = y_true.shape[-1] if y_true.shape[-1] is not None else tf.shape(y_true)[-1]
    return tf.one_hot(tf.argmax(y_true, axis=-1), depth, dtype=y_true.dtype)


def _dominant(base):
    class Dominant(base):
        def update_state(self, y_true, y_pred, sample_weight=None):
            return super().update_state(dominant_one_hot(y_true), y_pred, sample_weight)

    Dominant.__name__ = Dominant.__qualname__ = "Dominant" + base.__name__
    Dominant.__doc__ = f"{base.__name__} of the predictions against each target's dominant class."
    return keras.utils.register_keras_serializable(package="edge_fer")(Dominant)


DominantPrecision = _dominant(keras.metrics.Precision)
DominantRecall = _dominant(keras.metrics.Recall)
DominantAUC = _dominant(keras.metrics.AUC)
DominantF1Score = _dominant(keras.metrics.F1Score)

METRIC_OBJECTS = {c.__name__: c for c in (DominantPrecision, DominantRecall, DominantAUC, DominantF1Score)}
