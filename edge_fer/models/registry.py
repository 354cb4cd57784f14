"""The model registry: every architecture under the name users type.

    from edge_fer.models import create_model, model_names
    model = create_model("mobilenetv3_small", dropout=0.3)

Builders register with :func:`register_model`; :func:`resolve_name` maps aliases (``mobilenetv3``)
to their registry name and names close matches for an unknown one; ``create_model`` checks keyword
overrides against the builder's signature (:func:`check_model_options`) before passing them on.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    builder: Callable
    description: str
    aliases: tuple[str, ...] = ()
    imagenet: bool = False  # whether ImageNet weights exist for this builder


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def register_model(name: str, *, description: str, aliases: tuple[str, ...] = (), imagenet: bool = False):
    def wrap(fn: Callable) -> Callable:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, fn, description, aliases, imagenet)
        for a in aliases:
            _ALIASES[a] = name
        return fn

    return wrap


def model_names() -> list[str]:
    return list(_REGISTRY)


def resolve_name(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    if key in _REGISTRY:
        return key
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(key, [*_REGISTRY, *_ALIASES], n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint} Available: {', '.join(_REGISTRY)} (see `edgefer models`)")


def get_spec(name: str) -> ModelSpec:
    return _REGISTRY[resolve_name(name)]


def builder_options(name: str) -> dict:
    """A builder's options (``-o KEY=VALUE``) and their defaults."""
    return {k: p.default for k, p in inspect.signature(get_spec(name).builder).parameters.items()}


def check_model_options(name: str, options: dict) -> None:
    """Raise :class:`ConfigError` for an unknown builder option or a value of the wrong type or range,
    without building anything (and without importing TensorFlow)."""
    from .options import check_options

    spec = get_spec(name)
    check_options(spec.name, options, builder_options(spec.name))


def create_model(name: str, **overrides):
    """Build a fresh model by registry name, with keyword overrides (input_shape, width, dropout, …)."""
    spec = get_spec(name)
    check_model_options(spec.name, overrides)
    return spec.builder(**overrides)
