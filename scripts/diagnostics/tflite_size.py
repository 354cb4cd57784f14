"""Where the bytes of a .tflite file go: constant buffers by type, quantisation parameters, metadata.

    .venv/bin/python scripts/diagnostics/tflite_size.py MODEL.tflite [MODEL.tflite ...]

Reads the flatbuffer with TensorFlow's own schema tools. Diagnostic, not part of edge_fer.
"""
import os
import sys

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils

TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 9: "int8"}

for path in sys.argv[1:]:
    model = flatbuffer_utils.read_model(path)
    by_type, pairs = {}, 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            data = model.buffers[t.buffer].data
            if data is not None and len(data):
                name = TYPES.get(t.type, str(t.type))
                by_type[name] = by_type.get(name, 0) + len(data)
            q = t.quantization
            if q is not None and q.scale is not None:
                pairs += len(np.atleast_1d(q.scale))
    metadata = sum(0 if model.buffers[m.buffer].data is None else len(model.buffers[m.buffer].data)
                   for m in (model.metadata or []))
    size = os.path.getsize(path)
    weights = sum(by_type.values())
    print(f"{path}: {size / 1024:.0f} KB; constants " + ", ".join(f"{k} {v / 1024:.0f} KB" for k, v in by_type.items())
          + f"; {pairs} quantisation scale/zero-point pairs ({pairs * 12 / 1024:.0f} KB: float32 scale + int64 "
          f"zero point); metadata {metadata / 1024:.0f} KB; the rest (graph, names, shapes) "
          f"{(size - weights - metadata - pairs * 12) / 1024:.0f} KB")
