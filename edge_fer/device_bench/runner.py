"""Self-contained benchmark runner: the same file runs here and on the device.

Needs only the standard library, numpy and one runtime (ai_edge_litert, tflite_runtime or
onnxruntime), so it can be copied to a Raspberry Pi next to ``latency.py`` and run there:

    python3 runner.py --model m.tflite --data faces.npz --threads 1,2 > result.json

``faces.npz`` holds ``x`` uint8 (N,H,W) faces and ``y`` labels. The last line of stdout is
one JSON object: runtime, versions, machine, and per thread count the predicted labels, the
latency statistics, init time, throughput at a larger batch and peak memory. Without ``--data``
(a model nobody has said how to feed) it times random inputs of the model's own shape and type:
latency, throughput and memory, no labels. ``--input-scale``/``--input-offset`` map pixels
(0–255) to what a model without edge_fer's in-graph preprocessing expects.

It repeats a few lines of :mod:`edge_fer.export.runtimes` (input quantisation, batching) on
purpose: edge_fer itself is not installed on the device.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import sys
import tempfile
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


def as_input(faces, channels, dtype, quantization=None):
    """uint8 (N,H,W) faces → the model's input: channels repeated, quantised for an integer input."""
    x = faces.astype(np.float32)[..., None]
    if int(channels) != 1:
        x = np.repeat(x, int(channels), axis=-1)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        scale, zp = quantization
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)
    return x.astype(dtype)


class TFLiteModel:
    def __init__(self, path, threads, xnnpack=True):
        t = time.perf_counter_ns()
        self.interp = self._interpreter(path, threads, xnnpack)
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        self.static = self.inp["shape_signature"][0] > 0
        self.batch = None
        self.resize(1)
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def _interpreter(self, path, threads, xnnpack):
        interp, self.runtime, self.version = _load_tflite(path, threads, xnnpack)
        return interp

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

    def input_spec(self):
        return [int(s) for s in self.inp["shape"][1:]], self.inp["dtype"]

    def prepare(self, faces):
        return as_input(faces, self.inp["shape"][-1], self.inp["dtype"], self.inp["quantization"])

    def invoke(self, prepared):
        self.resize(len(prepared))
        self.interp.set_tensor(self.inp["index"], prepared)
        self.interp.invoke()
        return self.interp.get_tensor(self.out["index"])


@contextlib.contextmanager
def native_stderr():
    """Collect what native code writes to fd 2 (the GPU accelerator names its adapter only there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    log = {"text": ""}
    with tempfile.TemporaryFile(mode="w+b") as f:
        os.dup2(f.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            log["text"] = f.read().decode(errors="replace")
            sys.stderr.write(log["text"])  # still visible to whoever reads our stderr


GPU_HELP = ("no GPU adapter: LiteRT's GPU accelerator (WebGPU over Vulkan) found none; install the device's "
            "Vulkan driver (and libvulkan1), or for a software device set VK_ICD_FILENAMES to SwiftShader's "
            "vk_swiftshader_icd.json (see README)")


class LiteRTGpuModel:
    """A .tflite model compiled for LiteRT's GPU accelerator (ai-edge-litert CompiledModel).

    GPU only unless ``cpu_fallback``: an op the GPU cannot run is then an error, not a silent
    CPU run. Records the adapter the accelerator selected and whether it is a software device.
    """

    def __init__(self, path, threads=1, xnnpack=True, cpu_fallback=False):
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator as HA
        except ImportError:
            raise RuntimeError("unavailable: the GPU target needs ai-edge-litert >= 2 (CompiledModel); "
                               "pip install ai-edge-litert") from None
        accel = HA.GPU | HA.CPU if cpu_fallback else HA.GPU
        t = time.perf_counter_ns()
        with native_stderr() as log:
            try:
                self.model = CompiledModel.from_file(path, hardware_accel=accel)
                error = None
            except RuntimeError as e:
                error = str(e)
        text = log["text"]
        if error is not None:
            if "No adapters found" in text or "Failed to initialize WebGPU" in text:
                raise RuntimeError("unavailable: " + GPU_HELP)
            unsupported = re.findall(r"^([A-Z0-9_]+): Operation is not supported", text, re.MULTILINE)
            if unsupported or "Some ops are not accelerated" in error:
                raise RuntimeError(f"the GPU cannot run {', '.join(sorted(set(unsupported))) or 'some ops'} of this "
                                   "model; --allow-cpu-fallback runs them on the CPU (recorded as not fully accelerated)")
            if "modify graph" in text or "modify graph" in error:
                raise RuntimeError("the GPU path needs a static batch: export with `edgefer export RUN --batch 1`")
            raise RuntimeError("GPU compilation failed: " + (error.strip().splitlines() or ["?"])[-1])
        m = re.search(r"Selected adapter: (.*?), .*?adapterType=([^\n]+)", text)
        self.adapter = m.group(1).strip() if m else "unknown"
        self.adapter_type = m.group(2).strip() if m else "unknown"
        self.software = bool(re.search(r"CPU|Software", self.adapter_type))
        self.fully_accelerated = bool(self.model.is_fully_accelerated())
        self.runtime, self.version = "ai-edge-litert CompiledModel (GPU)", _version("ai_edge_litert")
        signature = next(iter(self.model.get_signature_list()))
        details = self.model.get_input_tensor_details(signature)
        self.inp = next(iter(details.values()))
        self.out = next(iter(self.model.get_output_tensor_details(signature).values()))
        self.quantization = _input_quantization(path) if np.dtype(self.inp["dtype"]).kind in "iu" else None
        self.inputs, self.outputs = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    @property
    def max_batch(self):
        return int(self.inp["shape"][0])

    def input_spec(self):
        return [int(s) for s in self.inp["shape"][1:]], self.inp["dtype"]

    def prepare(self, faces):
        return as_input(faces, self.inp["shape"][-1], self.inp["dtype"], self.quantization)

    def invoke(self, prepared):
        self.inputs[0].write(prepared)
        self.model.run_by_index(0, self.inputs, self.outputs)
        shape = self.out["shape"]
        return self.outputs[0].read(int(np.prod(shape)), np.dtype(self.out["dtype"])).reshape(shape)


def _input_quantization(path):
    interp, _, _ = _load_tflite(path, 1, True)
    return interp.get_input_details()[0]["quantization"]


class DelegateModel(TFLiteModel):
    """A .tflite model on a TFLite delegate library the user built (e.g. a board's GPU delegate)."""

    def __init__(self, path, threads, xnnpack=True, delegate=None):
        self.delegate_path = delegate
        super().__init__(path, threads, xnnpack)

    def _interpreter(self, path, threads, xnnpack):
        try:
            from ai_edge_litert.interpreter import Interpreter, load_delegate
        except ImportError:
            from tflite_runtime.interpreter import Interpreter, load_delegate
        try:
            d = load_delegate(self.delegate_path)
        except (ValueError, OSError) as e:
            raise RuntimeError(f"unavailable: cannot load the delegate {self.delegate_path}: {str(e).splitlines()[0]}") from None
        self.runtime, self.version = f"TFLite + delegate {os.path.basename(self.delegate_path)}", _version("ai_edge_litert")
        return Interpreter(model_path=path, num_threads=threads, experimental_delegates=[d])


ORT_GPU_PROVIDERS = ("CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider", "MIGraphXExecutionProvider",
                     "OpenVINOExecutionProvider", "CoreMLExecutionProvider", "TensorrtExecutionProvider")


# On x86 CPUs without VNNI (AVX2, or AVX-512 before Cascade Lake / Zen 4) ORT's fast u8s8 int8 kernels add
# products in pairs into 16 bits, which saturates: an int8 model then disagrees with its source (a test CNN
# at 57.6% on CI's AVX2 machine; tests/test_export.py checks it on an emulated Haswell). This session option
# makes ORT use exact u8u8 kernels there. ORT acts on it on every x86 CPU with AVX2, VNNI or not, rewriting
# the int8 constants as uint8 although VNNI's kernels are exact already, so edge_fer sets it only where it is
# needed (exact_int8_needed) and records whether it did.
EXACT_INT8 = "session.x64quantprecision"
_X86 = ("x86_64", "amd64", "i386", "i486", "i586", "i686", "x86")


def exact_int8_needed() -> bool:
    """Whether ORT needs ``EXACT_INT8`` on this CPU: an x86 CPU without AVX-512 VNNI. The features come from
    CPUID through numpy (``/proc/cpuinfo`` under an emulator shows the host's); where numpy does not say, the
    option is set (exact results, a little slower). A CPU with only AVX-VNNI (VEX) gets it too. ARM and other
    CPUs have no saturating int8 kernels."""
    if platform.machine().lower() not in _X86:
        return False
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return True
    return not features.get("AVX512VNNI", False)


def unshare_initializers(model) -> bool:
    """Give each DequantizeLinear of a constant one reader and its own quantised data and zero point (an onnx
    ModelProto, changed in place; True if anything changed). The result computes the same.

    With ``EXACT_INT8``, ORT rewrites the int8 data and zero point of every such node as uint8 initializers
    named after the originals (``NAME_s8_2_u8``, onnxruntime/core/optimizer/qdq_transformer/s8_to_u8.cc); a
    second node reading the same initializer adds the same name again and the model does not load ("Attempt
    to replace the existing tensor", ORT 1.32). Two such nodes arise from a shared initializer (tf2onnx shares
    equal zero points, and a quantised constant between the DequantizeLinear nodes of its users: one of
    MobileNetV3's feeds three) and from one node with several readers, which ORT itself first splits into one
    node per reader on the same initializers (EnsureUniqueDQForNodeUnit). So this splits such nodes per reader
    and copies each shared data or zero point for every node after the first. Scales are not rewritten by
    ORT and may stay shared."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    graph_outputs = {o.name for o in graph.output}
    names = set(inits) | {n for node in graph.node for n in (*node.input, *node.output, node.name)}

    def fresh(base):
        k = 1
        while f"{base}__{k}" in names:
            k += 1
        names.add(f"{base}__{k}")
        return f"{base}__{k}"

    def of_constant(node):
        return (node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") and len(node.input) > 0
                and node.input[0] in inits)

    readers = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            readers.setdefault(name, []).append((node, i))
    nodes, split = [], False
    for node in graph.node:
        nodes.append(node)
        if not of_constant(node):
            continue
        # the first reader keeps the node unless the node is also a graph output (as ORT does)
        for reader, i in readers.get(node.output[0], [])[0 if node.output[0] in graph_outputs else 1:]:
            twin = type(node)()
            twin.CopyFrom(node)
            twin.name = fresh(node.name or "DequantizeLinear")
            twin.output[0] = fresh(node.output[0])
            reader.input[i] = twin.output[0]
            nodes.append(twin)
            split = True
    if split:
        kept = [type(n)() for n in nodes]
        for k, n in zip(kept, nodes):
            k.CopyFrom(n)
        del graph.node[:]
        graph.node.extend(kept)

    owned, copies = set(), []
    for node in graph.node:
        if not of_constant(node):
            continue
        for i in (0, 2):  # the quantised data and the zero point: the inputs ORT rewrites
            if i >= len(node.input) or node.input[i] not in inits:
                continue
            name = node.input[i]
            if name in owned:
                copy = type(inits[name])()
                copy.CopyFrom(inits[name])
                copy.name = fresh(name)
                node.input[i] = copy.name
                copies.append(copy)
            owned.add(name)
    graph.initializer.extend(copies)
    return split or bool(copies)


def ort_session(path, so, providers, exact=None):
    """An onnxruntime InferenceSession; with ``exact`` (default :func:`exact_int8_needed`) ORT's exact int8
    kernels (``EXACT_INT8``). The session's ``exact_int8`` says whether the option was set. A model that ORT
    cannot load so because of shared initializers (one exported before they were unshared) is rewritten in
    memory with :func:`unshare_initializers` (the ``onnx`` package; without it, the model is loaded without
    the option, with a warning)."""
    import onnxruntime as ort

    if exact is None:
        exact = exact_int8_needed()
    if not exact:
        session = ort.InferenceSession(str(path), so, providers=providers)
        session.exact_int8 = False
        return session
    so.add_session_config_entry(EXACT_INT8, "1")
    level, so.log_severity_level = so.log_severity_level, 4  # the exception says it all; ORT would log it too
    try:
        try:
            session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as e:
            if "replace the existing tensor" not in str(e):
                raise
            try:
                import onnx
            except ImportError:
                print(f"warning: {path}: loaded without {EXACT_INT8} (pip install onnx to keep it): its int8 "
                      "results may saturate on this x86 CPU without VNNI", file=sys.stderr)
                plain = ort.SessionOptions()
                plain.intra_op_num_threads, plain.inter_op_num_threads = so.intra_op_num_threads, so.inter_op_num_threads
                session = ort.InferenceSession(str(path), plain, providers=providers)
                session.exact_int8 = False
                return session
            model = onnx.load(str(path))
            unshare_initializers(model)
            session = ort.InferenceSession(model.SerializeToString(), so, providers=providers)
    finally:
        so.log_severity_level = level
    session.exact_int8 = True
    return session


ONNX_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


class OnnxModel:
    def __init__(self, path, threads, xnnpack=True, gpu=False, cpu_fallback=False):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeError("missing-runtime: no onnxruntime; pip install 'edge_fer[onnx]' "
                               "(or pip install onnxruntime where edge_fer is not installed)") from None
        t = time.perf_counter_ns()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if gpu:
            available = ort.get_available_providers()
            gpus = [p for p in ORT_GPU_PROVIDERS if p in available]
            if not gpus:
                raise RuntimeError(f"unavailable: onnxruntime {ort.__version__} has no GPU execution provider (it has "
                                   f"{', '.join(available)}); install onnxruntime-gpu or a vendor build")
            providers = [gpus[0]] + (["CPUExecutionProvider"] if cpu_fallback else [])
            if gpus[0] == "OpenVINOExecutionProvider":
                providers[0] = (gpus[0], {"device_type": "GPU"})
        self.session = ort_session(path, so, providers)
        if gpu and self.session.get_providers()[0] == "CPUExecutionProvider":
            raise RuntimeError(f"unavailable: onnxruntime fell back to the CPU (asked for {providers[0]}, got "
                               f"{self.session.get_providers()})")
        self.providers = self.session.get_providers()
        self.exact_int8 = self.session.exact_int8  # EXACT_INT8 set (x86 without VNNI)
        self.runtime, self.version = "onnxruntime", ort.__version__
        i = self.session.get_inputs()[0]
        self.name, self.shape = i.name, i.shape
        self.dtype = np.dtype(ONNX_TYPES.get(i.type, "float32"))
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    @property
    def max_batch(self):
        return self.shape[0] if isinstance(self.shape[0], int) and self.shape[0] > 0 else None

    def input_spec(self):
        return [s if isinstance(s, int) and s > 0 else 1 for s in self.shape[1:]], self.dtype

    def prepare(self, faces):
        x = faces.astype(np.float32)[..., None]
        x = np.repeat(x, self.shape[-1], axis=-1) if self.shape[-1] != 1 else x
        if self.dtype.kind in "iu":  # an integer image input (a model edge_fer did not export)
            info = np.iinfo(self.dtype)
            return np.clip(np.round(x), info.min, info.max).astype(self.dtype)
        return x.astype(self.dtype)

    def invoke(self, prepared):
        return self.session.run(None, {self.name: prepared})[0]


class KerasModel:
    """A Keras model with TensorFlow: the float baseline (on the host only; TF is not on a device).

    TensorFlow fixes its thread pools when it starts, so one process serves one thread count.
    """

    def __init__(self, path, threads, xnnpack=True):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        t = time.perf_counter_ns()
        try:
            import tensorflow as tf
        except ImportError:
            raise RuntimeError("missing-runtime: no TensorFlow for a .keras model; pip install tensorflow") from None
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        try:
            from edge_fer.models.summary import load_model  # edge_fer's custom layers
        except ImportError:
            load_model = lambda p: tf.keras.models.load_model(p, compile=False)  # noqa: E731
        model = load_model(path)
        self.shape = model.input_shape
        self.fn = tf.function(lambda x: model(x, training=False))
        self.runtime, self.version = "tensorflow", tf.__version__
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    max_batch = None

    def prepare(self, faces):
        x = faces.astype(np.float32)[..., None]
        return np.repeat(x, self.shape[-1], axis=-1) if self.shape[-1] != 1 else x

    def invoke(self, prepared):
        return self.fn(prepared).numpy()


def outputs(model, faces, batch=64):
    """The model's raw outputs (N, classes) on (N,H,W) faces, in batches; a static-batch model's
    last batch padded with its last face."""
    step = model.max_batch or batch
    out = []
    for i in range(0, len(faces), step):
        chunk = faces[i:i + step]
        n = len(chunk)
        if model.max_batch and n < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - n, axis=0)])
        out.append(np.array(model.invoke(model.prepare(chunk)))[:n])
    return np.concatenate(out)


def predict(model, faces, batch=64):
    return outputs(model, faces, batch).argmax(axis=1)


def random_input(model, batch=1, seed=0):
    """A prepared input of the model's own shape and type (batch ``batch``), for timing a model whose
    inputs nobody has described: uniform over 0–255 for a float input, over the type's range for an integer."""
    shape, dtype = model.input_spec()
    dtype, rng = np.dtype(dtype), np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=(batch, *shape), endpoint=True).astype(dtype)
    return rng.uniform(0, 255, size=(batch, *shape)).astype(dtype)


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


def open_model(model_path, threads, *, xnnpack=True, accelerator="cpu", cpu_fallback=False, delegate=None):
    onnx = model_path.endswith(".onnx")
    if accelerator == "gpu":
        if onnx:
            return OnnxModel(model_path, threads, gpu=True, cpu_fallback=cpu_fallback)
        if delegate:
            return DelegateModel(model_path, threads, delegate=delegate)
        return LiteRTGpuModel(model_path, threads, cpu_fallback=cpu_fallback)
    if model_path.endswith(".keras"):
        return KerasModel(model_path, threads)
    return OnnxModel(model_path, threads) if onnx else TFLiteModel(model_path, threads, xnnpack)


def run(model_path, data_path, threads_list, *, xnnpack=True, min_runs=200, min_seconds=2.0, warmup=50,
        throughput_batch=32, accelerator="cpu", cpu_fallback=False, delegate=None, input_scale=1.0, input_offset=0.0):
    faces = None
    if data_path is not None:
        faces = np.load(data_path)["x"]
        if (input_scale, input_offset) != (1.0, 0.0):
            faces = faces.astype(np.float32) * np.float32(input_scale) + np.float32(input_offset)
    if accelerator == "gpu":
        threads_list = threads_list[:1]  # the GPU does the work: one record, not a thread sweep
    if model_path.endswith(".keras") and len(threads_list) > 1:
        raise RuntimeError("a .keras model takes one thread count per run (TensorFlow fixes its threads at start)")
    results = []
    for threads in threads_list:
        model = open_model(model_path, threads, xnnpack=xnnpack, accelerator=accelerator, cpu_fallback=cpu_fallback,
                           delegate=delegate)
        one = model.prepare(faces[:1]) if faces is not None else random_input(model)
        lat = measure(model.invoke, one, warmup=warmup, min_runs=min_runs, min_seconds=min_seconds)
        rec = {"threads": threads, "init_ms": model.init_ms, "latency": lat}
        if throughput_batch and model.max_batch in (None, throughput_batch):
            big = (model.prepare(np.resize(faces, (throughput_batch, *faces.shape[1:]))) if faces is not None
                   else random_input(model, throughput_batch))
            t = measure(model.invoke, big, warmup=3, min_runs=10, min_seconds=min_seconds / 2)
            rec["throughput_batch"] = throughput_batch
            rec["throughput_img_s"] = throughput_batch / (t["p50_ms"] / 1e3)
        if faces is not None:
            rec["predictions"] = predict(model, faces).tolist()
            # raw outputs (int8 as stored) of the first faces, so devices can be compared bit for bit
            rec["sample_outputs"] = [np.asarray(model.invoke(model.prepare(faces[i:i + 1])))[0].tolist()
                                     for i in range(min(8, len(faces)))]
        rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        results.append(rec)
    out = {"runtime": model.runtime, "runtime_version": model.version, "xnnpack": xnnpack and accelerator == "cpu",
           "accelerator": accelerator, "machine": machine_info(), "results": results}
    if isinstance(model, LiteRTGpuModel):
        out["gpu"] = {"adapter": model.adapter, "adapter_type": model.adapter_type,
                      "label": "software GPU emulation" if model.software else "GPU",
                      "fully_accelerated": model.fully_accelerated, "cpu_fallback": cpu_fallback}
    elif isinstance(model, OnnxModel) and accelerator == "gpu":
        out["gpu"] = {"providers": model.providers, "label": "GPU", "fully_accelerated": None, "cpu_fallback": cpu_fallback}
    elif isinstance(model, DelegateModel):
        out["gpu"] = {"delegate": delegate, "label": "delegate", "fully_accelerated": None, "cpu_fallback": False}
    if isinstance(model, OnnxModel):
        out["exact_int8"] = model.exact_int8
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="edge_fer on-device benchmark runner")
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
                  input_scale=a.input_scale, input_offset=a.input_offset)
    except RuntimeError as e:
        print(json.dumps({"error": str(e)}))
        return 3
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
