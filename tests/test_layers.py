"""The package's layers, read from its source (ast, nothing imported): imports point one way only.

runtime (numpy + one runtime) < data, models < training < quantization, calibration < export <
device_bench, report, zoo, predict < cli. The rules checked:

- a layer imports only layers of its own tier or below it in that order (training never imports zoo,
  quantization never imports export); so no module of data, models, training, quantization, calibration
  or export imports device_bench or predict;
- runtime imports no other part of edge_fer but its errors, and neither TensorFlow nor its Keras;
- nothing imports cli;
- no import cycle among the modules of a layer (data.ferplus <-> data.labelled once was one).

Every import counts, at module level or inside a function: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edge_fer"
UPSTREAM = ("data", "models", "training", "quantization", "calibration", "export")
DOWNSTREAM = ("device_bench", "predict")
# The tiers, lowest first; a layer may import its own tier and the ones before it.
ORDER = (("runtime",), ("data", "models"), ("training",), ("quantization", "calibration"), ("export",),
         ("device_bench", "report", "zoo", "predict"), ("cli",))
TIER = {name: i for i, names in enumerate(ORDER) for name in names}
TENSORFLOW = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization", "tf2onnx")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, source: str | None = None) -> set[str]:
    """Every module ``path`` (or ``source`` standing at ``path``) imports, absolute (``from . import x``
    resolved; ``from pkg import name`` gives both ``pkg`` and ``pkg.name``, since the name may be a module)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "edge_fer" and len(parts) > 1 else None


def wrong_way(edges: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a rule, as 'importer -> imported (rule)'."""
    bad = []
    for mod, targets in edges.items():
        for t in sorted(targets):
            if layer(mod) in UPSTREAM and layer(t) in DOWNSTREAM:
                bad.append(f"{mod} -> {t} (an earlier stage imports {layer(t)})")
            elif layer(mod) in TIER and layer(t) in TIER and TIER[layer(t)] > TIER[layer(mod)]:
                bad.append(f"{mod} -> {t} (a lower layer imports {layer(t)})")
            if layer(mod) == "runtime" and layer(t) not in (None, "runtime", "errors"):
                bad.append(f"{mod} -> {t} (runtime imports a stage)")
            if layer(mod) == "runtime" and t.split(".")[0] in TENSORFLOW:
                bad.append(f"{mod} -> {t} (runtime imports TensorFlow)")
            if layer(t) == "cli" and layer(mod) != "cli":
                bad.append(f"{mod} -> {t} (cli is imported)")
    return bad


def test_the_package_imports_point_one_way():
    edges = graph()
    assert "edge_fer.runtime.device" in edges and "edge_fer.export.exporter" in edges  # the walk found the package
    assert wrong_way(edges) == []


@pytest.mark.parametrize("importer, line, rule", [
    ("export/convert.py", "from ..device_bench.bench import bench_models", "an earlier stage imports device_bench"),
    ("training/train.py", "    from ..predict import Recognizer", "an earlier stage imports predict"),
    ("runtime/model.py", "from ..export import formats", "runtime imports a stage"),
    ("runtime/tflite.py", "    import tensorflow as tf", "runtime imports TensorFlow"),
    ("zoo/ship.py", "from .. import cli", "cli is imported"),
    ("training/train.py", "    from ..zoo import resolve_model", "a lower layer imports zoo"),
    ("quantization/ranges.py", "    from ..export.convert import to_tflite", "a lower layer imports export"),
    ("data/labelled.py", "from ..training import TrainConfig", "a lower layer imports training"),
    ("export/exporter.py", "    from ..report.metrics import accuracy", "a lower layer imports report"),
    ("runtime/shipped.py", "from ..zoo import ship", "runtime imports a stage"),
])
def test_a_wrong_way_import_is_caught(importer, line, rule):
    """Each rule fails on an import added the wrong way (at module level, or inside a function)."""
    path = PACKAGE / importer
    added = f"\n\ndef _added():\n{line}\n" if line.startswith("    ") else f"\n{line}\n"
    edges = graph()
    edges[module_name(path)] = imports(path, path.read_text() + added)
    assert any(rule in b for b in wrong_way(edges)), wrong_way(edges)


def cycles(edges: dict[str, set[str]], within: tuple[str, ...]) -> list[list[str]]:
    """Import cycles among the modules of the layers ``within`` (an import of a module's own package, which
    Python runs first anyway, is not an edge)."""
    mods = {m for m in edges if layer(m) in within}
    adj = {m: {t for t in edges[m] if t in mods and t != m and not m.startswith(t + ".")} for m in mods}
    found, done = [], set()

    def visit(node, path):
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for nxt in sorted(adj[node]):
            visit(nxt, path + [node])
        done.add(node)

    for m in sorted(mods):
        visit(m, [])
    return found


def test_no_layer_has_an_import_cycle():
    edges = graph()
    assert {name: cycles(edges, (name,)) for name in TIER} == {name: [] for name in TIER}
    # the check sees the two that were: data.ferplus <-> data.labelled, export.convert <-> export.inspect
    for a, b in (("edge_fer.data.ferplus", "edge_fer.data.labelled"),
                 ("edge_fer.export.convert", "edge_fer.export.inspect")):
        seeded = dict(edges)
        seeded[a], seeded[b] = edges[a] | {b}, edges[b] | {a}
        assert cycles(seeded, (layer(a),)) != []


def test_runtime_and_device_bench_have_no_import_cycle():
    assert cycles(graph(), ("runtime", "device_bench")) == []
    # the check sees one: bench -> remote -> bench, as bench_fleet once made it
    edges = graph()
    edges["edge_fer.device_bench.remote"] = edges["edge_fer.device_bench.remote"] | {"edge_fer.device_bench.bench"}
    assert cycles(edges, ("device_bench",)) != []
