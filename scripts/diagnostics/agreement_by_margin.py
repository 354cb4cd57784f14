"""Top-1 agreement of an int8 TFLite model with its QAT Keras model, split by the Keras top-2 margin;
exact ties of the top two outputs on either side.

    .venv/bin/python scripts/diagnostics/agreement_by_margin.py RUN RUN/export/MODEL_int8_qat.tflite

Throwaway diagnostic, not part of edge_fer.
"""
import numpy as np, sys
from edge_fer.runtime import open_model
from edge_fer.quantization import load_qat_model
from edge_fer.training.config import TrainConfig
run=sys.argv[1]; tfl=sys.argv[2]
m = load_qat_model(f"{run}/qat/best.h5")
va = TrainConfig.load(run).load_data()["validation"]
x = va.x.astype(np.float32)[..., None]
pk = m.predict(x, batch_size=256, verbose=0)
pt = open_model(tfl).predict(va.x)
s = np.sort(pk, 1); margin = s[:, -1] - s[:, -2]
agree = pk.argmax(1) == pt.argmax(1)
print("agreement", agree.mean(), "acc keras", (pk.argmax(1)==va.y).mean(), "acc tfl", (pt.argmax(1)==va.y).mean())
for t in (0.01, 0.02, 0.05, 0.1):
    sel = margin >= t
    print(f"margin>={t}: {sel.mean():.3f} of samples, agreement {agree[sel].mean():.4f}; below: {(~sel).sum()} samples, agreement {agree[~sel].mean():.3f}")
print("max |dp|", np.abs(pk-pt).max(), "mean |dp|", np.abs(pk-pt).mean())
# exact ties: int8 softmax outputs are steps of 1/256, and so are the QAT model's fake-quantised ones
tie_t = np.isclose(np.sort(pt, 1)[:, -1], np.sort(pt, 1)[:, -2])
tie_k = np.isclose(s[:, -1], s[:, -2])
print(f"int8 output ties: {tie_t.mean():.4f} of faces, {tie_t[~agree].mean():.2f} of the disagreements; "
      f"QAT Keras output ties: {tie_k.mean():.4f} of faces")
