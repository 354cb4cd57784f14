"""Training: the study's recipe, resumable, on GPU when TensorFlow sees one.

Names are imported on first use, so reading :class:`TrainConfig` (the CLI's defaults) loads
neither NumPy nor TensorFlow.
"""

import importlib

_WHERE = {"TrainConfig": ".config", "TrainResult": ".train", "compile_model": ".train", "train": ".train"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
