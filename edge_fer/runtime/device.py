"""The benchmark script that runs on a device (and, in a fresh process, here): time a model, label faces.

Needs only the standard library, numpy and one runtime; :func:`edge_fer.runtime.standalone.build_device_script`
bundles it with the rest of :mod:`edge_fer.runtime` into one file that is copied to a Raspberry Pi:

    python3 edgefer_device.pyz --model m.tflite --data faces.npz --threads 1,2 > result.json

``faces.npz`` holds ``x`` uint8 (N,H,W) faces and ``y`` labels. The last line of stdout is one JSON
object: runtime, versions, machine, and per thread count the predicted labels, the latency statistics,
init time, throughput at a larger batch and peak memory. The faces are labelled once: a further thread
count whose raw outputs on the first 8 faces equal those already labelled reuses the labels and says
so (``scored_with_threads``); one whose outputs differ labels every face again. Without ``--data`` (a
model nobody has said how to feed) it times random inputs of the model's own shape and type: latency,
throughput and memory, no labels. ``--input-scale``/``--input-offset`` map pixels (0–255) to what a
model without edge_fer's in-graph preprocessing expects. A run that cannot finish prints
``{"error": MESSAGE, "status": "unavailable" | "failed", "error_type": CLASS}`` instead and exits with
code 3.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys

import numpy as np

from ..errors import EdgeFerError
from . import open_model
from .latency import measure_latency

EXIT_ERROR = 3


def machine_info() -> dict:
    info = {"machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
            "cores": os.cpu_count(), "numpy": np.__version__}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def run(model_path, data_path, threads_list, *, xnnpack=True, min_runs=200, min_seconds=2.0, warmup=50,
        throughput_batch=32, accelerator="cpu", cpu_fallback=False, delegate=None, input_scale=1.0, input_offset=0.0,
        opener=open_model) -> dict:
    """The result document (see the module's docstring); ``opener(path, threads, **options)`` loads the model."""
    faces = None
    if data_path is not None:
        faces = np.load(data_path)["x"]
        if (input_scale, input_offset) != (1.0, 0.0):
            faces = faces.astype(np.float32) * np.float32(input_scale) + np.float32(input_offset)
    if accelerator == "gpu":
        threads_list = threads_list[:1]  # the GPU does the work: one record, not a thread sweep
    results, scored = [], None
    for threads in threads_list:
        model = opener(model_path, threads, xnnpack=xnnpack, accelerator=accelerator, cpu_fallback=cpu_fallback,
                       delegate=delegate)
        one = model.prepare(faces[:1]) if faces is not None else model.random_input()
        lat = measure_latency(model.invoke, one, warmup=warmup, min_runs=min_runs, min_seconds=min_seconds)
        rec = {"threads": threads, "init_ms": model.init_ms, "latency": lat}
        if throughput_batch and model.max_batch in (None, throughput_batch):
            big = (model.prepare(np.resize(faces, (throughput_batch, *faces.shape[1:]))) if faces is not None
                   else model.random_input(throughput_batch))
            t = measure_latency(model.invoke, big, warmup=3, min_runs=10, min_seconds=min_seconds / 2)
            rec["throughput_batch"] = throughput_batch
            rec["throughput_img_s"] = throughput_batch / (t["p50_ms"] / 1e3)
        if faces is not None:
            # raw outputs (int8 as stored) of the first faces, so devices can be compared bit for bit
            rec["sample_outputs"] = [np.asarray(model.invoke(model.prepare(faces[i:i + 1])))[0].tolist()
                                     for i in range(min(8, len(faces)))]
            if scored and rec["sample_outputs"] == scored["sample_outputs"]:
                # the kernels give this thread count the same raw outputs: its labels are those already scored
                rec["predictions"], rec["scored_with_threads"] = scored["predictions"], scored["threads"]
            else:
                rec["predictions"] = model.labels(faces).tolist()
                scored = rec
        rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(rec)
    out = {"runtime": model.runtime, "runtime_version": model.version, "xnnpack": xnnpack and accelerator == "cpu",
           "accelerator": accelerator, "machine": machine_info(), "results": results}
    kind = type(model).__name__
    if kind == "LiteRTGpuModel":
        out["gpu"] = {"adapter": model.adapter, "adapter_type": model.adapter_type,
                      "label": "software GPU emulation" if model.software else "GPU",
                      "fully_accelerated": model.fully_accelerated, "cpu_fallback": cpu_fallback}
    elif kind == "OnnxModel" and accelerator == "gpu":
        out["gpu"] = {"providers": model.providers, "label": "GPU", "fully_accelerated": None, "cpu_fallback": cpu_fallback}
    elif kind == "DelegateModel":
        out["gpu"] = {"delegate": delegate, "label": "delegate", "fully_accelerated": None, "cpu_fallback": False}
    if kind == "OnnxModel":
        out["exact_int8"] = model.exact_int8
    return out


def error_document(error: EdgeFerError) -> dict:
    """What the script prints for a run that cannot finish: the message and a typed status."""
    return {"error": str(error), "status": getattr(error, "status", "failed"), "error_type": type(error).__name__}


def main(argv=None, opener=open_model) -> int:
    ap = argparse.ArgumentParser(description="edge_fer on-device benchmark")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=None, help="faces.npz; without it, latency of random inputs only")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--no-xnnpack", action="store_true")
    ap.add_argument("--min-runs", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--throughput-batch", type=int, default=32, help="batch for the throughput figure; 0 skips it")
    ap.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--allow-cpu-fallback", action="store_true")
    ap.add_argument("--delegate", default=None, help="a TFLite delegate library (.so) for --accelerator gpu")
    ap.add_argument("--input-scale", type=float, default=1.0, help="model input = pixel × scale + offset")
    ap.add_argument("--input-offset", type=float, default=0.0)
    a = ap.parse_args(argv)
    try:
        out = run(a.model, a.data, [int(t) for t in a.threads.split(",")], xnnpack=not a.no_xnnpack,
                  min_runs=a.min_runs, min_seconds=a.min_seconds, warmup=a.warmup, throughput_batch=a.throughput_batch,
                  accelerator=a.accelerator, cpu_fallback=a.allow_cpu_fallback, delegate=a.delegate,
                  input_scale=a.input_scale, input_offset=a.input_offset, opener=opener)
    except EdgeFerError as e:
        print(json.dumps(error_document(e)))
        return EXIT_ERROR
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
