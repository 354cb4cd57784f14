"""Each QAT layer's output vs the int8 TFLite tensor of the same layer, in int8 steps (end to end).

    .venv/bin/python scripts/diagnostics/layer_compare.py RUN RUN/export/MODEL_int8_qat.tflite [N_FACES]

Rows for a conv followed by BatchNorm compare the pre-BN Keras output with TFLite's folded tensor
and are meaningless; read the BatchNorm/activation rows. Throwaway diagnostic, not part of edge_fer.
"""
import sys, numpy as np
from edge_fer.export.runtimes import _interpreter_class
from edge_fer.quantization import load_qat_model
from edge_fer.training.config import TrainConfig
from edge_fer._tf import keras
run = sys.argv[1]; tfl = sys.argv[2]; N = int(sys.argv[3]) if len(sys.argv) > 3 else 64
K = keras()
m = load_qat_model(f"{run}/qat/best.h5")
val = TrainConfig.load(run).load_data()["validation"]
x = val.x[:N].astype(np.float32)
if x.ndim == 3: x = x[..., None]
names = [l.name for l in m.layers if l.name.startswith("quant_")]
probe = K.Model(m.input, [m.get_layer(n).output for n in names])
kouts = probe.predict(x, verbose=0)
I = _interpreter_class()[0]
it = I(model_path=tfl, experimental_preserve_all_tensors=True); it.allocate_tensors()
det = it.get_tensor_details()
inp = it.get_input_details()[0]
prefix = det[0]['name']
tmap = {}
for n, ko in zip(names, kouts):
    cands = [d for d in det if ("/" + n + "/") in d['name'] and tuple(d['shape'][1:]) == ko.shape[1:] and d['quantization'][0] > 0]
    if cands: tmap[n] = cands[-1]
acc = {n: [] for n in tmap}
for i in range(N):
    s, z = inp['quantization']
    it.set_tensor(inp['index'], np.clip(np.round(x[i:i+1] / s + z), -128, 127).astype(np.int8)); it.invoke()
    for n, d in tmap.items():
        s, z = d['quantization']
        acc[n].append((it.get_tensor(d['index']).astype(np.float32) - z) * s)
for n, ko in zip(names, kouts):
    if n not in tmap: print(f"{n:45s} (no tflite tensor)"); continue
    t = np.concatenate(acc[n]); k = ko
    s = tmap[n]['quantization'][0]
    err = np.abs(t - k)
    print(f"{n:45s} scale {s:.4g} mean|d|/scale {err.mean()/s:7.3f} max|d|/scale {err.max()/s:7.1f} rel {np.linalg.norm(t-k)/ (np.linalg.norm(k)+1e-9):.4f}")
