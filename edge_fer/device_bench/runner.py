"""Self-contained benchmark runner: the same file runs here and on the device.

Needs only the standard library, numpy and one runtime (ai_edge_litert, tflite_runtime or
onnxruntime), so it can be copied to a Raspberry Pi next to ``latency.py`` and run there:

    python3 runner.py --model m.tflite --data faces.npz --threads 1,2 > result.json

``faces.npz`` holds ``x`` uint8 (N,H,W) faces and ``y`` labels. The last line of stdout is
one JSON object: runtime, versions, machine, and per thread count the predicted labels, the
latency statistics, init time, throughput at a larger batch and peak memory.

It repeats a few lines of :mod:`edge_fer.export.runtimes` (input quantisation, batching) on
purpose: edge_fer itself is not installed on the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

try:
    from .latency import measure
except ImportError:  # run as a plain script next to latency.py
    from latency import measure


def _load_tflite(path, threads, xnnpack):
    try:
        from ai_edge_litert import interpreter as tfl

        runtime = "ai-edge-litert"
    except ImportError:
        try:
            from tflite_runtime import interpreter as tfl

            runtime = "tflite-runtime"
        except ImportError:
            raise RuntimeError("missing-runtime: no TFLite runtime; pip install ai-edge-litert "
                               "(or tflite-runtime on 32-bit/older systems)") from None
    kwargs = {"model_path": path, "num_threads": threads}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = tfl.Interpreter(**kwargs)
    version = _version("ai_edge_litert" if runtime == "ai-edge-litert" else "tflite_runtime")
    return interp, runtime, version


def _version(module):
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:
        return "unknown"


class TFLiteModel:
    def __init__(self, path, threads, xnnpack=True):
        t = time.perf_counter_ns()
        self.interp, self.runtime, self.version = _load_tflite(path, threads, xnnpack)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.static = self.inp["shape_signature"][0] > 0
        self.batch = None
        self.resize(1)
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def resize(self, batch):
        if batch == self.batch:
            return
        if self.static and batch != self.inp["shape"][0]:
            raise ValueError("static batch")
        if not self.static:
            self.interp.resize_tensor_input(self.inp["index"], [batch, *self.inp["shape"][1:]])
        self.interp.allocate_tensors()
        self.batch = batch

    @property
    def max_batch(self):
        return int(self.inp["shape"][0]) if self.static else None

    def prepare(self, faces):
        x = faces.astype(np.float32)[..., None]
        c = int(self.inp["shape"][-1])
        if c != 1:
            x = np.repeat(x, c, axis=-1)
        dtype = np.dtype(self.inp["dtype"])
        if dtype.kind in "iu":
            scale, zp = self.inp["quantization"]
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    def invoke(self, prepared):
        self.resize(len(prepared))
        self.interp.set_tensor(self.inp["index"], prepared)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])


class OnnxModel:
    def __init__(self, path, threads, xnnpack=True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("missing-runtime: no onnxruntime; pip install onnxruntime") from None
        t = time.perf_counter_ns()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.runtime, self.version = "onnxruntime", ort.__version__
        i = self.session.get_inputs()[0]
        self.name, self.shape = i.name, i.shape
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    @property
    def max_batch(self):
        return self.shape[0] if isinstance(self.shape[0], int) and self.shape[0] > 0 else None

    def prepare(self, faces):
        x = faces.astype(np.float32)[..., None]
        return np.repeat(x, self.shape[-1], axis=-1) if self.shape[-1] != 1 else x

    def invoke(self, prepared):
        return self.session.run(None, {self.name: prepared})[0]


def predict(model, faces, batch=64):
    step = model.max_batch or batch
    labels = []
    for i in range(0, len(faces), step):
        chunk = faces[i:i + step]
        n = len(chunk)
        if model.max_batch and n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        labels.append(np.asarray(model.invoke(model.prepare(chunk))).argmax(axis=1)[:n])
    return np.concatenate(labels)


def machine_info():
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
        throughput_batch=32):
    d = np.load(data_path)
    faces = d["x"]
    cls = OnnxModel if model_path.endswith(".onnx") else TFLiteModel
    results = []
    for threads in threads_list:
        model = cls(model_path, threads, xnnpack)
        one = model.prepare(faces[:1])
        lat = measure(model.invoke, one, warmup=warmup, min_runs=min_runs, min_seconds=min_seconds)
        rec = {"threads": threads, "init_ms": model.init_ms, "latency": lat}
        if model.max_batch in (None, throughput_batch):
            big = model.prepare(np.resize(faces, (throughput_batch, *faces.shape[1:])))
            t = measure(model.invoke, big, warmup=3, min_runs=10, min_seconds=min_seconds / 2)
            rec["throughput_batch"] = throughput_batch
            rec["throughput_img_s"] = throughput_batch / (t["p50_ms"] / 1e3)
        rec["predictions"] = predict(model, faces).tolist()
        rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(rec)
    return {"runtime": model.runtime, "runtime_version": model.version, "xnnpack": xnnpack,
            "machine": machine_info(), "results": results}


def main(argv=None):
    ap = argparse.ArgumentParser(description="edge_fer on-device benchmark runner")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--no-xnnpack", action="store_true")
    ap.add_argument("--min-runs", type=int, default=200)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=int, default=50)
    a = ap.parse_args(argv)
    try:
        out = run(a.model, a.data, [int(t) for t in a.threads.split(",")], xnnpack=not a.no_xnnpack,
                  min_runs=a.min_runs, min_seconds=a.min_seconds, warmup=a.warmup)
    except RuntimeError as e:
        print(json.dumps({"error": str(e)}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
