"""What ``edgefer models`` lists: the registered architectures and the shipped int8 models, as JSON
first, with the tables rendered from it. Reads the cost table and the shipped cards; no TensorFlow
(an architecture missing from the cost table is built once to count it).

    from edge_fer.zoo.catalogue import catalogue, render_catalogue
    print(render_catalogue(catalogue()))
"""

from __future__ import annotations

import json
from pathlib import Path


def catalogue() -> dict:
    """``{"architectures": [...], "shipped": [...]}``: parameters and MACs at 48×48×1 per architecture,
    and each shipped model's card summary."""
    from ..models import get_spec, model_names
    from ..models.costs import compute_costs, costs
    from . import shipped_models

    rows = []
    for name in model_names():
        spec = get_spec(name)
        info = costs(name) or compute_costs(name)  # the table has every shipped architecture: no TensorFlow
        rows.append({"name": name, "aliases": list(spec.aliases), "params": info["params"], "macs": info["macs"],
                     "imagenet": spec.imagenet, "description": spec.description})
    return {"architectures": rows, "shipped": [m.summary() for m in shipped_models()]}


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
        lines.append(f"  {'name':<26}{'formats':<14}{'PrivateTest acc':>16}{'macro F1':>10}{'size':>10}{'p50 1t':>10}"
                     "  card")
    for m in d["shipped"]:
        acc = f"{m['accuracy']:.4f}" if m["accuracy"] is not None else "—"
        f1 = f"{m['macro_f1']:.4f}" if m["macro_f1"] is not None else "—"
        p50 = f"{m['p50_ms_1t']:.3f}ms" if m["p50_ms_1t"] is not None else "—"
        lines.append(f"  {m['name']:<26}{','.join(m['formats']):<14}{acc:>16}{f1:>10}{m['size_kb']:>8.0f}KB{p50:>10}  "
                     f"{Path(m['card']).name}")
    return "\n".join(lines)
