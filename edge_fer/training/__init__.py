"""Training: the study's recipe, resumable, on GPU when TensorFlow sees one.

Names are imported on first use, so reading :class:`TrainConfig` (the CLI's defaults) loads
neither NumPy nor TensorFlow.
"""

import importlib
import sys
import types

_WHERE = {"TrainConfig": ".config", "TrainResult": ".train", "compile_model": ".train", "train": ".train"}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    # Importing the submodule edge_fer.training.train sets the package's attribute ``train`` to that
    # module; the package's ``train`` stays the function (``from edge_fer.training import train``).
    def __setattr__(self, name, value):
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
