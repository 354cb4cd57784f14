"""Rewrite the shipped int8 ONNX models so ORT's exact-int8 mode loads them as they are.

tf2onnx shares equal zero points between DequantizeLinear nodes; with ``session.x64quantprecision=1`` (exact
int8 kernels on x86 CPUs without VNNI, see docs/benchmarks.md) ORT 1.32 then fails to load the model
("Attempt to replace the existing tensor"). edge_fer's own ONNX loader rewrites such a model in memory; this
rewrites the shipped files once, for users who load them with their own ORT code, and checks that the new
file gives the very same outputs as the old one on FER2013's PrivateTest before replacing it. It updates
each file's sidecar (sha256, size) and model card (ONNX size); no metric changes, since the outputs don't.

    .venv/bin/python scripts/unshare_shipped_onnx.py [../shared/data/fer2013.npz]
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnx

from edge_fer.data import load_fer
from edge_fer.export.metadata import sha256
from edge_fer.runtime import open_model
from edge_fer.runtime.onnx_model import unshare_initializers
from edge_fer.runs import atomic_path, write_json
from edge_fer.zoo.ship import SHIPPED_DIR, _card_markdown


def main(data: str = "../shared/data/fer2013.npz") -> None:
    x = load_fer(data)["test"].x
    for path in sorted(SHIPPED_DIR.glob("*.onnx")):
        model = onnx.load(str(path))
        if not unshare_initializers(model):
            print(f"{path.name}: no shared zero points, left as it is")
            continue
        new = path.with_suffix(".unshared.onnx")
        new.write_bytes(model.SerializeToString())
        try:
            before, after = open_model(path).predict(x), open_model(new).predict(x)
            if not np.array_equal(before, after):
                sys.exit(f"{path.name}: the rewritten model's outputs differ (max {np.abs(before - after).max()}); "
                         "nothing replaced")
            with atomic_path(path) as tmp:
                tmp.write_bytes(new.read_bytes())
        finally:
            new.unlink(missing_ok=True)
        side_path = Path(str(path) + ".json")
        side = json.loads(side_path.read_text())
        old_size, side["sha256"], side["size_bytes"] = side["size_bytes"], sha256(path), path.stat().st_size
        write_json(side_path, side)
        name = path.stem
        card_path = SHIPPED_DIR / f"{name}.card.json"
        card = json.loads(card_path.read_text())
        card["size_bytes"]["onnx"] = path.stat().st_size
        write_json(card_path, card)
        with atomic_path(SHIPPED_DIR / f"{name}.md") as tmp:
            tmp.write_text(_card_markdown(card))
        print(f"{path.name}: {old_size} -> {path.stat().st_size} bytes, the same outputs on {len(x)} PrivateTest faces")


if __name__ == "__main__":
    main(*sys.argv[1:])
