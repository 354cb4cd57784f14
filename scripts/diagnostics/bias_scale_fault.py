"""Write a copy of an int8 TFLite file with the bias-scale fault TF 2.21's converter wrote for per-tensor QAT
kernels, so that what `edgefer inspect MODEL` shows of it can be seen on purpose.

Each int32 bias is declared at k × (input scale × weight scale) and its values divided by k: the same real bias
as declared, but TFLite's kernels read the values in units of input scale × weight scale, so every layer adds
its bias off by 1/k. k = 241/255 for the first layer with a bias and 254/255 for the others, the ratios
docs/benchmarks.md measured ("Per-tensor weights"). `edge_fer.quantization.converter.fix_bias_scales`, which
every int8 export applies, writes the file back as it was.

    .venv/bin/python scripts/diagnostics/bias_scale_fault.py IN.tflite OUT.tflite
"""

import sys

import numpy as np
from tensorflow.lite.tools import flatbuffer_utils

from edge_fer.quantization.converter import bias_operands


def with_bias_scale_fault(blob: bytes) -> tuple[bytes, int]:
    """The model with every int32 bias declared at the faulty scale; returns (model, how many biases)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    n = 0
    for _, _, b in bias_operands(model):
        k = 241 / 255 if n == 0 else 254 / 255
        q = np.frombuffer(bytes(bytearray(model.buffers[b.buffer].data)), "<i4")
        b.quantization.scale = (np.asarray(b.quantization.scale, np.float64) * k).astype(np.float32)
        model.buffers[b.buffer].data = np.frombuffer(np.round(q / k).astype("<i4").tobytes(), np.uint8)
        n += 1
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), n


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/diagnostics/bias_scale_fault.py IN.tflite OUT.tflite")
    faulty, n = with_bias_scale_fault(open(sys.argv[1], "rb").read())
    open(sys.argv[2], "wb").write(faulty)
    print(f"{sys.argv[2]}: {n} int32 bias(es) declared at an inconsistent scale")
