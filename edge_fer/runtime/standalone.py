"""The device benchmark as one file: :mod:`edge_fer.runtime` and the errors it raises, zipped with a
``__main__`` that runs :func:`edge_fer.runtime.device.main`.

    path = build_device_script(Path("/tmp/x"))      # /tmp/x/edgefer_device.pyz
    # python3 /tmp/x/edgefer_device.pyz --model m.tflite --data faces.npz

Python runs a zip file with a ``__main__.py`` as a script, so the device needs numpy and one runtime,
not edge_fer: the bench copies this file to a Raspberry Pi, and runs the same file here in a fresh
process.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

SCRIPT_NAME = "edgefer_device.pyz"
_PACKAGE = Path(__file__).resolve().parent.parent  # edge_fer/
_MAIN = "import sys\n\nfrom edge_fer.runtime.device import main\n\nsys.exit(main())\n"
# edge_fer/__init__.py is replaced by a one-line package: the device needs none of the rest of edge_fer
_INIT = '"""edge_fer\'s runtime, bundled for a device (edge_fer.runtime.standalone)."""\n'


def script_files() -> dict[str, bytes]:
    """Archive name → content of every file the device script holds."""
    files = {"__main__.py": _MAIN.encode(), "edge_fer/__init__.py": _INIT.encode(),
             "edge_fer/errors.py": (_PACKAGE / "errors.py").read_bytes()}
    for path in sorted((_PACKAGE / "runtime").glob("*.py")):
        files[f"edge_fer/runtime/{path.name}"] = path.read_bytes()
    return files


def build_device_script(directory) -> Path:
    """Write ``SCRIPT_NAME`` into ``directory``; its path."""
    path = Path(directory) / SCRIPT_NAME
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in script_files().items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # the same bytes on every build
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path
