""".onnx models on ONNX Runtime, with exact int8 kernels where the CPU needs them.

    model = OnnxModel("cnn_int8.onnx", threads=2)          # CPU
    gpu = OnnxModel("cnn_int8.onnx", gpu=True)             # the first GPU execution provider there is
    session = ort_session(path, ort.SessionOptions(), ["CPUExecutionProvider"])   # a bare session

No TensorFlow; the ``onnx`` package only to rewrite a model ORT cannot load with ``EXACT_INT8``.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np

from ..errors import ModelError, RuntimeMissing, RuntimeUnavailable
from .model import Model, one_line

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


def quiet_onnxruntime():
    """onnxruntime, set to log nothing below fatal: its warnings and errors go to stderr as lines in raw
    terminal colour codes, and every error it has also reaches Python as an exception. Set
    EDGEFER_TF_LOGS=1 to keep its default (warnings and up). RuntimeMissing when it is not installed."""
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeMissing("no onnxruntime; pip install 'edge_fer[onnx]' (or pip install onnxruntime where "
                             "edge_fer is not installed)") from None
    if not os.environ.get("EDGEFER_TF_LOGS"):
        onnxruntime.set_default_logger_severity(4)
    return onnxruntime


class OnnxModel(Model):
    """A .onnx model on ONNX Runtime's CPU provider, or with ``gpu`` its first GPU execution provider
    (CPU fallback for ops it cannot run only with ``cpu_fallback``)."""

    def __init__(self, path, threads: int | None = None, xnnpack: bool = True, gpu: bool = False,
                 cpu_fallback: bool = False, providers=None):
        ort = quiet_onnxruntime()
        t = time.perf_counter_ns()
        self.path = str(path)
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        providers = list(providers or ["CPUExecutionProvider"])
        if gpu:
            available = ort.get_available_providers()
            gpus = [p for p in ORT_GPU_PROVIDERS if p in available]
            if not gpus:
                raise RuntimeUnavailable(f"onnxruntime {ort.__version__} has no GPU execution provider (it has "
                                         f"{', '.join(available)}); install onnxruntime-gpu or a vendor build")
            providers = [gpus[0]] + (["CPUExecutionProvider"] if cpu_fallback else [])
            if gpus[0] == "OpenVINOExecutionProvider":
                providers[0] = (gpus[0], {"device_type": "GPU"})
        try:  # exact int8 kernels on x86 CPUs without VNNI (see EXACT_INT8)
            self.session = ort_session(self.path, so, providers)
        except Exception as e:
            raise ModelError(f"{self.path}: not a loadable ONNX model ({one_line(e)})") from None
        if gpu and self.session.get_providers()[0] == "CPUExecutionProvider":
            raise RuntimeUnavailable(f"onnxruntime fell back to the CPU (asked for {providers[0]}, got "
                                     f"{self.session.get_providers()})")
        self.providers = self.session.get_providers()
        self.exact_int8 = self.session.exact_int8  # EXACT_INT8 set (x86 without VNNI)
        self.runtime, self.version = "onnxruntime", ort.__version__
        i = self.session.get_inputs()[0]
        self.input_name = i.name
        self.input_shape = tuple(s if isinstance(s, int) and s > 0 else -1 for s in i.shape)
        self.static_batch = self.input_shape[0] if self.input_shape[0] > 0 else None
        self.input_dtype = np.dtype(ONNX_TYPES.get(i.type, "float32"))
        o = self.session.get_outputs()[0]
        self.output_dtype = np.dtype(ONNX_TYPES.get(o.type, "float32"))
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def invoke(self, prepared):
        return self.session.run(None, {self.input_name: prepared})[0]
