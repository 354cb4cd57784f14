""".tflite models: LiteRT's interpreter (ai-edge-litert, else tflite-runtime), its GPU accelerator, a delegate.

    model = TFLiteModel("cnn_int8.tflite", threads=2)      # CPU, XNNPACK unless xnnpack=False
    gpu = LiteRTGpuModel("cnn_int8.tflite")                # LiteRT CompiledModel on the GPU
    Interpreter, runtime = interpreter_class()             # the raw interpreter, for other .tflite files

No TensorFlow: this module runs on the device.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import time

import numpy as np

from ..errors import ModelError, RuntimeMissing, RuntimeUnavailable
from .model import Model, one_line, package_version

TFLITE_FIX = "pip install ai-edge-litert (or tflite-runtime on 32-bit/older systems)"


def interpreter_class():
    """(Interpreter class, runtime name): ai-edge-litert's, else tflite-runtime's; RuntimeMissing if neither."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter, "tflite-runtime"
    except ImportError:
        raise RuntimeMissing(f"no TFLite runtime; {TFLITE_FIX}") from None


def _interpreter_module(runtime: str):
    if runtime == "ai-edge-litert":
        from ai_edge_litert import interpreter
    else:
        from tflite_runtime import interpreter
    return interpreter


def load_interpreter(path, threads: int | None = None, xnnpack: bool = True):
    """(a TFLite Interpreter of ``path``, its runtime's name); ModelError when the file is no loadable model."""
    Interpreter, runtime = interpreter_class()
    kwargs = {"model_path": str(path), "num_threads": threads}
    if not xnnpack:
        resolver = _interpreter_module(runtime).OpResolverType
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        return Interpreter(**kwargs), runtime
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not a loadable TFLite model ({one_line(e)})") from None


@contextlib.contextmanager
def native_stderr(echo: bool = True):
    """Collect what native code writes to fd 2 into ``log["text"]`` (LiteRT's GPU accelerator names its
    adapter only there); ``echo`` writes it on to stderr afterwards. EDGEFER_TF_LOGS=1 always echoes."""
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
            if echo or os.environ.get("EDGEFER_TF_LOGS"):
                sys.stderr.write(log["text"])


class TFLiteModel(Model):
    """A .tflite model on the CPU (XNNPACK unless ``xnnpack`` is False)."""

    def __init__(self, path, threads: int | None = None, xnnpack: bool = True):
        t = time.perf_counter_ns()
        self.path = str(path)
        self.interpreter = self._interpreter(self.path, threads, xnnpack)
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(s) for s in self.inp["shape"])
        self.input_dtype = np.dtype(self.inp["dtype"])
        self.input_quantization = tuple(self.inp["quantization"])
        self.output_dtype = np.dtype(self.out["dtype"])
        self.output_quantization = tuple(self.out["quantization"])
        self.static_batch = self.input_shape[0] if self.inp["shape_signature"][0] > 0 else None
        self._batch = None
        with native_stderr(echo=False):  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line, once
            self._allocate(self.static_batch or 1)
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def _interpreter(self, path, threads, xnnpack):
        interpreter, self.runtime = load_interpreter(path, threads, xnnpack)
        self.version = package_version(self.runtime)
        return interpreter

    def _allocate(self, batch: int) -> None:
        if batch == self._batch:
            return
        if self.static_batch is not None:
            if batch != self.static_batch:
                raise ModelError(f"{self.path}: takes batches of exactly {self.static_batch}, got {batch}")
        else:
            self.interpreter.resize_tensor_input(self.inp["index"], [batch, *self.input_shape[1:]])
        self.interpreter.allocate_tensors()
        self._batch = batch

    def invoke(self, prepared):
        self._allocate(len(prepared))
        self.interpreter.set_tensor(self.inp["index"], prepared)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.out["index"])

    def ops(self) -> list[dict]:
        """Every op of the graph with the dtypes of its inputs and outputs."""
        tensors = {t["index"]: t for t in self.interpreter.get_tensor_details()}
        out = []
        for op in self.interpreter._get_ops_details():
            dt = lambda idx: [np.dtype(tensors[i]["dtype"]).name for i in idx if i >= 0 and i in tensors]
            out.append({"op": op["op_name"], "inputs": dt(op["inputs"]), "outputs": dt(op["outputs"])})
        return out


class DelegateModel(TFLiteModel):
    """A .tflite model on a TFLite delegate library the user built (e.g. a board's GPU delegate)."""

    def __init__(self, path, threads: int | None = None, xnnpack: bool = True, delegate: str | None = None):
        self.delegate_path = delegate
        super().__init__(path, threads, xnnpack)

    def _interpreter(self, path, threads, xnnpack):
        Interpreter, runtime = interpreter_class()
        load_delegate = _interpreter_module(runtime).load_delegate
        try:
            d = load_delegate(self.delegate_path)
        except (ValueError, OSError) as e:
            raise RuntimeUnavailable(f"cannot load the delegate {self.delegate_path}: {str(e).splitlines()[0]}") from None
        self.runtime = f"TFLite + delegate {os.path.basename(self.delegate_path)}"
        self.version = package_version(runtime)
        return Interpreter(model_path=path, num_threads=threads, experimental_delegates=[d])


GPU_HELP = ("no GPU adapter: LiteRT's GPU accelerator (WebGPU over Vulkan) found none; install the device's "
            "Vulkan driver (and libvulkan1), or for a software device set VK_ICD_FILENAMES to SwiftShader's "
            "vk_swiftshader_icd.json (see README)")


class LiteRTGpuModel(Model):
    """A .tflite model compiled for LiteRT's GPU accelerator (ai-edge-litert CompiledModel).

    GPU only unless ``cpu_fallback``: an op the GPU cannot run is then an error, not a silent
    CPU run. Records the adapter the accelerator selected and whether it is a software device.
    """

    def __init__(self, path, threads: int = 1, xnnpack: bool = True, cpu_fallback: bool = False):
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator as HA
        except ImportError:
            raise RuntimeMissing("the GPU target needs ai-edge-litert >= 2 (CompiledModel); "
                                 "pip install ai-edge-litert") from None
        self.path = str(path)
        accel = HA.GPU | HA.CPU if cpu_fallback else HA.GPU
        t = time.perf_counter_ns()
        with native_stderr() as log:
            try:
                self.model = CompiledModel.from_file(self.path, hardware_accel=accel)
                error = None
            except RuntimeError as e:
                error = str(e)
        text = log["text"]
        if error is not None:
            if "No adapters found" in text or "Failed to initialize WebGPU" in text:
                raise RuntimeUnavailable(GPU_HELP)
            unsupported = re.findall(r"^([A-Z0-9_]+): Operation is not supported", text, re.MULTILINE)
            if unsupported or "Some ops are not accelerated" in error:
                raise ModelError(f"the GPU cannot run {', '.join(sorted(set(unsupported))) or 'some ops'} of this "
                                 "model; --allow-cpu-fallback runs them on the CPU (recorded as not fully accelerated)")
            if "modify graph" in text or "modify graph" in error:
                raise ModelError("the GPU path needs a static batch: export with `edgefer export RUN --batch 1`")
            raise ModelError("GPU compilation failed: " + (error.strip().splitlines() or ["?"])[-1])
        m = re.search(r"Selected adapter: (.*?), .*?adapterType=([^\n]+)", text)
        self.adapter = m.group(1).strip() if m else "unknown"
        self.adapter_type = m.group(2).strip() if m else "unknown"
        self.software = bool(re.search(r"CPU|Software", self.adapter_type))
        self.fully_accelerated = bool(self.model.is_fully_accelerated())
        self.runtime, self.version = "ai-edge-litert CompiledModel (GPU)", package_version("ai-edge-litert")
        signature = next(iter(self.model.get_signature_list()))
        self.inp = next(iter(self.model.get_input_tensor_details(signature).values()))
        self.out = next(iter(self.model.get_output_tensor_details(signature).values()))
        self.input_shape = tuple(int(s) for s in self.inp["shape"])
        self.static_batch = self.input_shape[0]
        self.input_dtype, self.output_dtype = np.dtype(self.inp["dtype"]), np.dtype(self.out["dtype"])
        if self.input_dtype.kind in "iu" or self.output_dtype.kind in "iu":  # CompiledModel does not report them
            plain = TFLiteModel(self.path, 1)
            self.input_quantization, self.output_quantization = plain.input_quantization, plain.output_quantization
        self.inputs, self.outputs_buffers = self.model.create_input_buffers(0), self.model.create_output_buffers(0)
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def invoke(self, prepared):
        self.inputs[0].write(prepared)
        self.model.run_by_index(0, self.inputs, self.outputs_buffers)
        shape = self.out["shape"]
        return self.outputs_buffers[0].read(int(np.prod(shape)), np.dtype(self.out["dtype"])).reshape(shape)
