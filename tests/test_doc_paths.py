"""Every source file the docs name exists: a renamed or split module leaves no stale path behind.

A path ending ``.py`` or ``.sh`` in README.md or docs/ (``edge_fer/export/convert.py``,
``quantization/ranges.py``, ``scripts/footprint.sh``, ``tests/test_export.py``) is looked up from the
repository root, then inside the package; a bare file name (``runs.py``) anywhere under the package,
scripts/ or tests/, or as a file a script in scripts/ writes (``rss.py``). The diagnostics that were
removed are named with the commit that has them, and are listed here.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Run from the commit docs/benchmarks.md names (e71933a); not in the package any more.
AT_A_COMMIT = {"scripts/diagnostics/layer_compare.py", "layer_isolated.py"}
PATH = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w-]+\.(?:py|sh))\b")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def exists(name: str) -> bool:
    if name in AT_A_COMMIT:
        return True
    if "/" in name:
        return any((base / name).exists() for base in (ROOT, ROOT / "edge_fer"))
    return (any(next(base.rglob(name), None) for base in (ROOT / "edge_fer", ROOT / "scripts", ROOT / "tests"))
            or any(name in f.read_text(errors="replace") for f in (ROOT / "scripts").glob("*.sh")))


def stale_paths(files, root: Path = ROOT) -> list[str]:
    return [f"{f.relative_to(root)}:{i}: {name}" for f in files
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
            for name in PATH.findall(line) if not exists(name)]


def test_every_source_path_in_the_docs_exists():
    assert stale_paths(doc_files()) == []


def test_a_stale_path_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("The ranges: `edge_fer/quantization/qat.py`, quantization/ranges.py, runs.py, old_tool.py.\n")
    assert stale_paths([page], tmp_path) == ["page.md:1: edge_fer/quantization/qat.py", "page.md:1: old_tool.py"]
