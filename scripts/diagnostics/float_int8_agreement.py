"""Accuracy and top-1 agreement of float, QAT and int8 TFLite models of a run, on PublicTest and PrivateTest.

    .venv/bin/python scripts/diagnostics/float_int8_agreement.py RUN

Reads RUN/best.keras (float), RUN/qat/best.h5 (QAT) and RUN/export/MODEL_int8_qat.tflite. Diagnostic,
not part of edge_fer.
"""
import sys, numpy as np
from pathlib import Path
from edge_fer.training import TrainConfig
from edge_fer.models import load_model
from edge_fer.report.evaluate import predict_keras
from edge_fer.runs import RunLayout
from edge_fer.runtime import open_model
run = Path(sys.argv[1]).expanduser()
cfg = TrainConfig.load(run); data = cfg.load_data(None)
fl = load_model(RunLayout(run).require_best_model())
qat = None
try:
    from edge_fer.quantization import load_qat_model
    qat = load_qat_model(run / "qat" / "best.h5")
except Exception as e:
    print("no QAT model:", e)
r = open_model(run / "export" / f"{cfg.model}_int8_qat.tflite")
for split in ("validation", "test"):
    s = data[split]
    pf = predict_keras(fl, s.x); pi = r.predict(s.x)
    line = f"{split}: float {np.mean(pf.argmax(1)==s.y):.4f} int8 {np.mean(pi.argmax(1)==s.y):.4f} agree(int8,float) {np.mean(pf.argmax(1)==pi.argmax(1)):.4f}"
    if qat is not None:
        pq = predict_keras(qat, s.x)
        line += f" agree(qat,float) {np.mean(pf.argmax(1)==pq.argmax(1)):.4f} agree(int8,qat) {np.mean(pq.argmax(1)==pi.argmax(1)):.4f}"
    print(line)
