"""MobileNetV3-Small blocks in isolation: feed the QAT Keras layers TFLite's own input tensor and
compare with TFLite's output tensor, in int8 steps (chains listed below).

    .venv/bin/python scripts/diagnostics/layer_isolated.py RUN RUN/export/mobilenetv3_small_int8_qat.tflite

Throwaway diagnostic, not part of edge_fer.
"""
import numpy as np, sys
from edge_fer.export.runtimes import _interpreter_class
from edge_fer.quantization import load_qat_model
from edge_fer.training.config import TrainConfig
run, tfl = sys.argv[1], sys.argv[2]
m = load_qat_model(f"{run}/qat/best.h5")
x = TrainConfig.load(run).load_data()["validation"].x[:64].astype(np.float32)[..., None]
I = _interpreter_class()[0]
it = I(model_path=tfl, experimental_preserve_all_tensors=True); it.allocate_tensors()
D = it.get_tensor_details()
def find(sub, shape):
    c = [d for d in D if sub in d['name'] and tuple(d['shape'][1:]) == shape and d['quantization'][0] > 0]
    return c[-1]
chains = [
  ("quant_expanded_conv_1/project/BatchNorm", ["quant_expanded_conv_2/expand", "quant_expanded_conv_2/expand/BatchNorm", "quant_expanded_conv_2/expand/relu"]),
  ("quant_expanded_conv_1/expand/relu", ["quant_expanded_conv_1/depthwise", "quant_expanded_conv_1/depthwise/BatchNorm", "quant_expanded_conv_1/depthwise/relu"]),
  ("quant_expanded_conv_1/depthwise/relu", ["quant_expanded_conv_1/project", "quant_expanded_conv_1/project/BatchNorm"]),
]
inp = it.get_input_details()[0]
for src, layers in chains:
    ts = find(src + "/", m.get_layer(src).output_shape[1:]); to = find(layers[-1] + "/", m.get_layer(layers[-1]).output_shape[1:])
    A, B = [], []
    for i in range(64):
        it.set_tensor(inp['index'], (x[i:i+1]-128).astype(np.int8)); it.invoke()
        for d, acc in ((ts, A), (to, B)):
            s, z = d['quantization']; acc.append((it.get_tensor(d['index']).astype(np.float32)-z)*s)
    y = np.concatenate(A)
    for l in layers: y = m.get_layer(l)(y, training=False)
    y = y.numpy(); t = np.concatenate(B); s = to['quantization'][0]
    print(f"{src} -> {layers[-1]}: mean|d|/s {np.abs(y-t).mean()/s:.4f} max {np.abs(y-t).max()/s:.2f}")
