"""Shared Keras builders: one registry of architectures, used by training and QAT alike."""

from . import builders  # noqa: F401  (registers the architectures)
from .registry import (ModelSpec, builder_options, check_model_options, create_model, get_spec, model_names,
                       register_model, resolve_name)
from .summary import count_macs, describe_model, load_model

__all__ = [
    "ModelSpec", "check_model_options", "create_model", "get_spec", "model_names", "register_model", "resolve_name",
    "count_macs", "describe_model", "load_model",
]
