"""Quantisation-aware training (tfmot) on the shared builders.

``config`` holds the stage's defaults (:class:`QATConfig`), ``scheme`` how a float model becomes a
QAT model, ``ranges`` how its activation ranges are set and chosen, ``pipeline`` the ``edgefer qat``
stage that runs them on a trained run. Names are imported on first use, so reading a config (the
CLI's defaults) loads neither NumPy nor TensorFlow.
"""

import importlib

_WHERE = {"QATConfig": ".config", "QATResult": ".pipeline", "load_float_model": ".pipeline", "qat_run": ".pipeline",
          "warm_up_ranges": ".ranges", "load_qat_model": ".scheme", "quantize_model": ".scheme"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
