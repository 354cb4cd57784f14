"""What ``edgefer models`` lists: the registered architectures and the shipped int8 models, as JSON
first, with the tables rendered from it. Reads the cost table and the shipped cards; no TensorFlow
(an architecture missing from the cost table is built once to count it).

    from edge_fer.zoo.catalogue import catalogue, render_catalogue
    print(render_catalogue(catalogue()))

    python -m edge_fer.zoo.catalogue README.md   # README's table of the labels each shipped model learned
"""

from __future__ import annotations

import json
from pathlib import Path


def catalogue() -> dict:
    """``{"architectures": [...], "shipped": [...], "default": NAME, "default_rule": ...}``: parameters and
    MACs at 48×48×1 per architecture, each shipped model's card summary, and the default model."""
    from ..models import get_spec, model_names
    from ..models.costs import compute_costs, costs
    from . import DEFAULT_RULE, default_shipped, shipped_models

    rows = []
    for name in model_names():
        spec = get_spec(name)
        info = costs(name) or compute_costs(name)  # the table has every shipped architecture: no TensorFlow
        rows.append({"name": name, "aliases": list(spec.aliases), "params": info["params"], "macs": info["macs"],
                     "imagenet": spec.imagenet, "description": spec.description})
    shipped = shipped_models()
    default = default_shipped(shipped)
    return {"architectures": rows, "shipped": [m.summary() for m in shipped],
            "default": default.name if default else None, "default_rule": DEFAULT_RULE}


def architecture_options(name: str) -> dict:
    """An architecture's builder options (``edgefer train -o KEY=VALUE``), their defaults and valid values."""
    from ..models import builder_options, get_spec
    from ..models.options import rule_for

    spec = get_spec(name)
    options = {k: v for k, v in builder_options(spec.name).items() if k != "weights"}
    return {"name": spec.name, "description": spec.description, "options": options,
            "valid": {k: rule_for(k, v).valid for k, v in options.items()}}


def render_options(d: dict) -> str:
    lines = [f"{d['name']}: {d['description']}",
             "builder options (edgefer train --model NAME -o KEY=VALUE, values as JSON):"]
    lines += [f"  {f'{k} = {json.dumps(v, default=list)}':<36}{d['valid'][k]}" for k, v in d["options"].items()]
    return "\n".join(lines)


def render_catalogue(d: dict) -> str:
    lines = ["Architectures (edgefer train --model NAME):", f"  {'name':<20}{'params':>10}{'MACs':>10}  description"]
    for r in d["architectures"]:
        alias = f" (alias: {', '.join(r['aliases'])})" if r["aliases"] else ""
        lines.append(f"  {r['name']:<20}{r['params'] / 1e6:>9.2f}M{r['macs'] / 1e6:>9.1f}M  {r['description']}{alias}")
    lines.append("\nShipped int8 models (any command's --model / MODEL accepts the name; NAME.onnx for the ONNX twin):")
    if not d["shipped"]:
        lines.append("  none in this installation")
    else:
        lines.append(f"  {'name':<28}{'labels learned':<28}{'formats':<13}{'int8 accuracy: FER2013':>23}{'FERPlus':>9}"
                     f"{'CK+48':>8}{'size':>9}{'p50 1t':>10}  card")

    def acc(v):
        return "—" if v is None else f"{v:.4f}"

    for m in d["shipped"]:
        p50 = f"{m['p50_ms_1t']:.3f}ms" if m["p50_ms_1t"] is not None else "—"
        name = m["name"] + (" *" if m["name"] == d.get("default") else "")
        lines.append(f"  {name:<28}{m['labels'] or '—':<28}{','.join(m['formats']):<13}{acc(m['fer2013_accuracy']):>23}"
                     f"{acc(m['ferplus_accuracy']):>9}{acc(m['ckplus48_accuracy']):>8}{m['size_kb']:>7.0f}KB{p50:>10}  "
                     f"{Path(m['card']).name}")
    if d.get("default"):
        lines.append(f"  * the default of `edgefer predict` and Recognizer(): {d['default_rule']}.")
    return "\n".join(lines)


LABELS_START = "<!-- shipped-labels: rendered from the cards by python -m edge_fer.zoo.catalogue README.md -->"
LABELS_END = "<!-- /shipped-labels -->"


def render_labels_table(models) -> str:
    """README's table of which labels each shipped model learned and its int8 TFLite accuracy on the
    card's three evaluations, between its markers (tests/test_zoo.py checks README holds exactly this)."""
    from . import default_shipped

    default = default_shipped(list(models))

    def acc(m, key):
        v = m.accuracy_on(key)
        return "—" if v is None else f"{v:.1%}"

    lines = [LABELS_START, "", "| shipped model | labels learned | FER2013 PrivateTest | FERPlus PrivateTest | CK+48 |"
             " size | 1-thread p50 |", "|---|---|---|---|---|---|---|"]
    for m in models:
        name = f"`{m.name}`" + (" (default)" if default is not None and m.name == default.name else "")
        p50 = "—" if m.p50_ms_1t is None else f"{m.p50_ms_1t:.3f} ms"
        lines.append(f"| {name} | {(m.card.get('labels') or {}).get('learned', '—')} | {acc(m, 'fer2013')} | "
                     f"{acc(m, 'ferplus')} | {acc(m, 'ckplus48')} | {m.path.stat().st_size / 1024:.0f} KB | {p50} |")
    return "\n".join(lines + ["", LABELS_END])


def write_labels_table(page: Path) -> None:
    """Write :func:`render_labels_table` of the shipped models into ``page`` (README.md) between its markers."""
    from ..report.page_blocks import write_block
    from . import shipped_models

    write_block(Path(page), render_labels_table(shipped_models()), LABELS_START, LABELS_END)


if __name__ == "__main__":  # python -m edge_fer.zoo.catalogue README.md
    import sys

    write_labels_table(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
