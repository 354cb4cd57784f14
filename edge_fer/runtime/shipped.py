"""Shipped models by name: the int8 models packaged in ``edge_fer/zoo/shipped``, found without importing a stage.

    from edge_fer.runtime.shipped import resolve_model
    resolve_model("cnn_int8")            # → the packaged cnn_int8.tflite
    resolve_model("cnn_int8.onnx")       # → its ONNX twin
    resolve_model("runs/x/export/m.tflite")   # a path is a path

A shipped model ``NAME`` is ``shipped/NAME.tflite`` (+ ``.onnx``), each with its metadata sidecar,
the model card ``NAME.md`` and its figures ``NAME.card.json``. The lookup lives in ``runtime`` so that
every stage that takes a model name (``train --teacher``, ``bench``, ``predict``) resolves it the same
way; :mod:`edge_fer.zoo` re-exports it and owns shipping (:func:`edge_fer.zoo.ship.ship_run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelError
from . import MODEL_SUFFIXES

SHIPPED_DIR = Path(__file__).parents[1] / "zoo" / "shipped"  # package data of edge_fer.zoo
# The default model of `edgefer predict` and `Recognizer()`: the first of these that is shipped.
PREFERRED = ("cnn_int8", "mobilenetv3_small_int8")


@dataclass(frozen=True)
class ShippedModel:
    name: str
    files: dict          # {".tflite": Path, ".onnx": Path}
    card: dict           # NAME.card.json
    card_path: Path      # NAME.md

    @property
    def path(self) -> Path:
        """The TFLite file (the main artefact), else the ONNX one."""
        return self.files.get(".tflite") or self.files[".onnx"]

    def summary(self) -> dict:
        t = self.card.get("test", {})
        return {"name": self.name, "architecture": self.card.get("architecture"),
                "formats": [s.lstrip(".") for s in self.files], "accuracy": t.get("int8", {}).get("accuracy"),
                "macro_f1": t.get("int8", {}).get("macro_f1"), "size_kb": self.path.stat().st_size / 1024,
                "p50_ms_1t": (self.card.get("latency_ms") or {}).get("tflite", {}).get("1"),
                "card": str(self.card_path)}


def shipped_models(directory: Path | None = None) -> list[ShippedModel]:
    """Every model in the shipped folder that has a card, sorted by name."""
    d = Path(directory) if directory else SHIPPED_DIR
    out = []
    for card_json in sorted(d.glob("*.card.json")):
        name = card_json.name[: -len(".card.json")]
        files = {s: d / f"{name}{s}" for s in MODEL_SUFFIXES if (d / f"{name}{s}").is_file()}
        if not files:
            continue
        out.append(ShippedModel(name, files, json.loads(card_json.read_text()), d / f"{name}.md"))
    return out


def shipped_names() -> list[str]:
    return [m.name for m in shipped_models()]


def get_shipped(name: str) -> ShippedModel:
    for m in shipped_models():
        if m.name == name:
            return m
    names = ", ".join(shipped_names()) or "none"
    raise ConfigError(f"no shipped model {name!r}; shipped: {names} (see `edgefer models`)")


def default_model() -> Path:
    """The preferred shipped model (what `edgefer predict` uses without --model)."""
    models = {m.name: m for m in shipped_models()}
    for name in PREFERRED:
        if name in models:
            return models[name].path
    if models:
        return next(iter(models.values())).path
    raise ModelError("no model shipped with this installation; pass --model PATH to an exported .tflite/.onnx")


def resolve_model(model: str | Path | None) -> Path:
    """A model file from a path, a shipped name (``cnn_int8``) or a shipped name with a suffix
    (``cnn_int8.onnx``); None → :func:`default_model`."""
    if model is None:
        return default_model()
    p = Path(model).expanduser()
    if p.is_file():
        return p
    shipped = {m.name: m for m in shipped_models()}
    names = ", ".join(shipped) or "none shipped"
    stem, suffix = (p.stem, p.suffix) if p.suffix in MODEL_SUFFIXES else (str(model), ".tflite")
    if p.parent == Path(".") and stem in shipped:
        m = shipped[stem]
        if suffix not in m.files:
            raise ConfigError(f"shipped model {stem!r} has no {suffix} file; it has {', '.join(m.files)}")
        return m.files[suffix]
    if p.suffix in MODEL_SUFFIXES or p.parent != Path("."):
        raise ModelError(f"{p}: no such model file; pass an exported .tflite/.onnx or a shipped name ({names})")
    raise ConfigError(f"unknown model {str(model)!r}: not a file and not a shipped model ({names}; see `edgefer models`)")
