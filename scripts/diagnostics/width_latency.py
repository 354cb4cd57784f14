"""Planning probe: int8 size and batch-1 latency of ferlite variants before training one.

    .venv/bin/python scripts/diagnostics/width_latency.py [width ...]   # default: 1.0 1.125 1.25 1.5

Builds each variant untrained, converts it to full-integer TFLite with 64 random faces as
calibration (latency and size do not depend on the weights' values), and times it alternately with
the shipped ferlite_int8.tflite on one thread, so the variants are compared on the same CPU in the
same minute. Diagnostic, not part of edge_fer; the figures it prints are for choosing what to train.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np

from edge_fer.calibration import CalibrationSet
from edge_fer.runtime.latency import measure_latency
from edge_fer.runtime.tflite import TFLiteModel
from edge_fer.export.convert import to_tflite
from edge_fer.models import count_macs, create_model

SHIPPED = Path(__file__).resolve().parents[2] / "edge_fer/zoo/shipped/ferlite_int8.tflite"
widths = [float(w) for w in sys.argv[1:]] or [1.0, 1.125, 1.25, 1.5]
rng = np.random.default_rng(0)
calib = CalibrationSet(rng.uniform(0, 255, (64, 48, 48, 1)).astype(np.float32), "random faces")
face = rng.uniform(0, 255, (1, 48, 48)).astype(np.float32)
tmp = Path(tempfile.mkdtemp())


def p50(path):
    m = TFLiteModel(str(path), 1)
    return measure_latency(m.invoke, m.prepare(face), min_seconds=3.0)["p50_ms"]


print(f"{'variant':<22}{'params':>9}{'MMACs':>8}{'int8 KB':>9}{'p50 1t ms':>11}{'shipped p50':>13}{'ratio':>7}")
for w in widths:
    model = create_model("ferlite", width=w)
    path = tmp / f"ferlite_w{w}.tflite"
    path.write_bytes(to_tflite(model, "int8", calib=calib))
    runs = [(p50(path), p50(SHIPPED)) for _ in range(3)]
    v, s = np.median([r[0] for r in runs]), np.median([r[1] for r in runs])
    print(f"{'ferlite width=' + str(w):<22}{model.count_params():>9,}{count_macs(model) / 1e6:>8.1f}"
          f"{path.stat().st_size / 1024:>9.0f}{v:>11.3f}{s:>13.3f}{v / s:>7.2f}")
