"""Activation-range percentiles of a QAT model, each tried in int8 TFLite on PublicTest, the way
`edgefer qat --range-percentile auto` tries its candidates — with any list, all of them tried.

    .venv/bin/python scripts/diagnostics/range_sweep.py QAT_MODEL.h5 RUN [P ...]   # P: minmax or a percentile

QAT_MODEL.h5 must still hold its min/max ranges (a `--range-percentile minmax` QAT, or a copy of
RUN/qat/best.h5 made before auto clipped it). RUN gives the data and seed. Clipping batches and
calibration set are drawn as `edgefer qat` draws them. Diagnostic, not part of edge_fer.
"""
import sys

import numpy as np

from edge_fer.calibration import CalibrationSet
from edge_fer.data.pipeline import as_model_input
from edge_fer.quantization import load_qat_model
from edge_fer.quantization.ranges import choose_range_percentile
from edge_fer.training.config import TrainConfig

model_path, run = sys.argv[1], sys.argv[2]
candidates = [None if p == "minmax" else float(p) for p in sys.argv[3:]] or [None, 99.99, 99.9, 99.5]
cfg = TrainConfig.load(run)
data = cfg.load_data()
tr, va = data["train"], data["validation"]
model = load_qat_model(model_path)
channels = model.input_shape[-1]
rng = np.random.default_rng(cfg.seed)
for _ in range(50):  # the warm-up draws of `edgefer qat`, so the clipping batches below are its own
    rng.choice(len(tr), 64, replace=False)
clip = [as_model_input(tr.x[rng.choice(len(tr), 64, replace=False)], channels) for _ in range(8)]
calib = CalibrationSet.from_source(None, tr, size=256, seed=cfg.seed, channels=channels)
chosen, trials = choose_range_percentile(model, clip, calib, as_model_input(va.x, channels), va.y,
                                         candidates=candidates, try_all=True)
print("| ranges | QAT val acc | int8 val acc | agreement | ranges shrunk |")
print("|---|---|---|---|---|")
for t in trials:
    name = "min/max" if t["percentile"] is None else f"{t['percentile']:g}th pct"
    mark = " ← kept" if t["percentile"] == chosen else ""
    print(f"| {name}{mark} | {t['qat_accuracy']:.4f} | {t['int8_accuracy']:.4f} | {t['agreement']:.2%} | "
          f"{t['ranges_shrunk']} |")
