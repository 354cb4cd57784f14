"""The optional parts of edge_fer: which extra brings which module, and the one-line error when one is missing.

``pip install edge_fer`` is the device side: ``edgefer predict``, ``bench`` (this device), ``models``,
``compare`` of bench results and the Python API (``Recognizer``, metadata, running .tflite), on
numpy, Pillow and a TFLite runtime. The rest comes with an extra:

    pip install 'edge_fer[onnx]'     onnxruntime: .onnx models
    pip install 'edge_fer[train]'    TensorFlow, tf_keras, tfmot, tf2onnx, onnx, matplotlib
    pip install 'edge_fer[remote]'   paramiko: edgefer bench --device rpi
    pip install 'edge_fer[camera]'   OpenCV: cameras, video files, the Haar detector
    pip install 'edge_fer[all]'      all four

The CLI checks a command's extra before parsing its options (:func:`check_command`) and turns an
``ImportError`` of any module below into the same one line (:func:`missing_extra`).
"""

from __future__ import annotations

import importlib.util

from .errors import MissingExtraError

# extra -> the top-level modules it brings (pyproject's [project.optional-dependencies] lists the packages)
EXTRAS = {
    "train": ("tensorflow", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx", "matplotlib", "tensorboard"),
    "onnx": ("onnxruntime",),
    "remote": ("paramiko",),
    "camera": ("cv2",),
}
# commands that need an extra whatever their options (others import theirs on the path that needs it)
COMMAND_EXTRAS = {"train": "train", "evaluate": "train", "qat": "train", "export": "train", "calibrate": "train",
                  "zoo": "train"}
# modules checked up front for those commands: what every one of them imports
_COMMAND_MODULES = {"train": ("tensorflow", "tf_keras")}


def extra_for(module: str | None) -> str | None:
    """The extra that brings ``module`` (or a submodule of it); None for modules of the base install."""
    top = (module or "").split(".")[0]
    return next((extra for extra, mods in EXTRAS.items() if top in mods), None)


def missing_extra(what: str, module: str) -> MissingExtraError:
    """The one-line error for ``what`` (e.g. 'edgefer train') needing the missing ``module``."""
    top = module.split(".")[0]
    extra = extra_for(top)
    return MissingExtraError(f"{what} needs {top}, which is not installed: pip install 'edge_fer[{extra}]'")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_command(name: str) -> None:
    """Raise :class:`MissingExtraError` when command ``name`` needs an extra that is not installed."""
    extra = COMMAND_EXTRAS.get(name)
    for module in _COMMAND_MODULES.get(extra, EXTRAS.get(extra, ())):
        if not installed(module):
            raise missing_extra(f"edgefer {name}", module)
