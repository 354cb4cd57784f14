"""ImageNet weights for the keras.applications backbones (``resnet50``, ``vgg16``).

``--weights imagenet`` lets keras download the no-top file on first use (network access needed once;
keras caches it in ~/.keras/models/). ``--weights PATH`` loads the same file from where the user put
it after downloading it once, so a machine without internet trains the study's pretrained ResNet-50:

    edgefer train --model resnet50 --weights ~/weights/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5

A file that is missing, not HDF5, or made for another architecture is one :class:`ConfigError` line
naming the file expected and where keras.applications downloads it from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import ConfigError

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"

# The no-top ImageNet weights keras.applications loads for each backbone (its file name and URL).
IMAGENET_FILES = {
    "resnet50": ("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 _KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg16": ("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
              _KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}


def is_weights_file(weights) -> bool:
    """Whether a ``weights`` setting names a file (anything but None and "imagenet")."""
    return weights not in (None, "imagenet")


def expected_file(name: str) -> str:
    """The file a backbone's ImageNet weights come in, and where to download it, in words."""
    file, url = IMAGENET_FILES[name]
    return f"the no-top ImageNet weights file {file}, downloaded once from {url}"


def check_weights_file(name: str, weights) -> Path:
    """The weights file ``weights`` as a path, refused in one line when it cannot be one for ``name``."""
    if not isinstance(weights, (str, Path)) or not str(weights).strip():
        raise ConfigError(f"{name}: --weights must be none, imagenet or a weights file, got {weights!r}; "
                          f"pass {expected_file(name)}")
    p = Path(weights).expanduser()
    if not p.is_file():
        raise ConfigError(f"{name}: --weights {weights}: no such file; pass none, imagenet (downloads, needs network "
                          f"access) or {expected_file(name)}")
    import h5py

    if p.suffix.lower() not in (".h5", ".hdf5") or not h5py.is_hdf5(p):
        raise ConfigError(f"{name}: --weights {weights}: not a Keras .h5 weights file; pass {expected_file(name)}")
    return p


def load_backbone_weights(name: str, backbone, path: Path) -> None:
    """Load a keras.applications weights file into ``backbone`` as keras does for ``weights=PATH``
    (layer by layer, in order), refusing a file made for another architecture or with other shapes."""
    try:
        backbone.load_weights(str(path))
    except (ValueError, KeyError, OSError, TypeError) as e:
        said = " ".join(str(e).split())
        raise ConfigError(f"{name}: --weights {path}: does not fit {name}'s backbone ({said[:160]}); pass "
                          f"{expected_file(name)}") from None


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(Path(path).expanduser(), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
