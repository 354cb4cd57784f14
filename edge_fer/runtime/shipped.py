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
# The edge budget the default model must fit: the int8 TFLite file's size and its card's 1-thread p50.
EDGE_BUDGET_BYTES = 500 * 1024
EDGE_BUDGET_P50_MS = 0.25
DEFAULT_RULE = ("the shipped model with the best FERPlus PrivateTest accuracy on its card among those within the "
                "edge budget (int8 TFLite ≤ 500 KB and 1-thread p50 ≤ 0.25 ms on its card); if none is, the best "
                "on FERPlus of those within its size, then of all (latency depends on the machine that timed "
                "the cards: `edgefer zoo retime` times them together)")


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

    @property
    def p50_ms_1t(self) -> float | None:
        """The card's batch-1 p50 of the TFLite file on one thread."""
        return (self.card.get("latency_ms") or {}).get("tflite", {}).get("1")

    def accuracy_on(self, evaluation: str) -> float | None:
        """The int8 TFLite accuracy the card states on ``evaluation`` (fer2013, ferplus, ckplus48); None if unmeasured."""
        return ((self.card.get("evaluations") or {}).get(evaluation) or {}).get("int8", {}).get("accuracy")

    @property
    def within_edge_budget(self) -> bool:
        return self.within_edge_size and self.p50_ms_1t is not None and self.p50_ms_1t <= EDGE_BUDGET_P50_MS

    @property
    def within_edge_size(self) -> bool:
        tflite = self.files.get(".tflite")
        return tflite is not None and tflite.stat().st_size <= EDGE_BUDGET_BYTES

    def summary(self) -> dict:
        t = self.card.get("test", {})
        return {"name": self.name, "architecture": self.card.get("architecture"),
                "labels": (self.card.get("labels") or {}).get("learned"),
                "formats": [s.lstrip(".") for s in self.files], "accuracy": t.get("int8", {}).get("accuracy"),
                "macro_f1": t.get("int8", {}).get("macro_f1"), "size_kb": self.path.stat().st_size / 1024,
                "p50_ms_1t": self.p50_ms_1t,
                **{f"{k}_accuracy": self.accuracy_on(k) for k in ("fer2013", "ferplus", "ckplus48")},
                "within_edge_budget": self.within_edge_budget, "card": str(self.card_path)}


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


def default_shipped(models: list[ShippedModel]) -> ShippedModel | None:
    """The default among ``models`` by :data:`DEFAULT_RULE`; ties go to the first by name, and a model
    without a FERPlus figure comes after every model with one. None if there are none."""
    def rank(m: ShippedModel):
        acc = m.accuracy_on("ferplus")
        return (not m.within_edge_budget, not m.within_edge_size, acc is None, -(acc or 0.0), m.name)

    return min(models, key=rank, default=None)


def default_model(directory: Path | None = None) -> Path:
    """The file of the default shipped model (what `edgefer predict` and `Recognizer()` use without a model):
    see :data:`DEFAULT_RULE`."""
    best = default_shipped(shipped_models(directory))
    if best is None:
        raise ModelError("no model shipped with this installation; pass --model PATH to an exported .tflite/.onnx")
    return best.path


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
