"""Import TensorFlow with Keras 2 (``tf_keras``), which tensorflow-model-optimization needs.

Every module that needs TensorFlow calls :func:`keras` / :func:`tf` inside its functions,
so that ``edgefer --help`` and the on-device runner never import TensorFlow.
"""

import os
import sys
from contextlib import contextmanager


def _prepare_env() -> None:
    # Must be set before TensorFlow is first imported, or tf.keras is Keras 3.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512/AMX; on an AVX2-only
    # CPU (an AMD EPYC here) it falls back to Eigen, and training ResNet-50 runs 3.4x slower (11 vs 37
    # img/s, `python -m edge_fer.training.throughput --models resnet50`, docs/benchmarks.md). Set it to
    # 0 to get TensorFlow's own choice back.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


@contextmanager
def quiet_native_stderr(first_import_only: bool = False):
    """Hide native chatter on fd 2 (oneDNN and CUDA probing at import, converter statistics).

    Python exceptions still carry their messages. Set EDGEFER_TF_LOGS=1 to see everything.
    """
    if os.environ.get("EDGEFER_TF_LOGS") or (first_import_only and "tensorflow" in sys.modules):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_onnxruntime():
    """onnxruntime, logging nothing below fatal (:func:`edge_fer.runtime.onnx_model.quiet_onnxruntime`)."""
    from .runtime.onnx_model import quiet_onnxruntime as quiet

    return quiet()


_TF = None


def tf():
    global _TF
    if _TF is not None:  # set up once; later calls (some traced by AutoGraph, in tf.data maps and
        return _TF       # metrics) stay out of os.environ, whose methods AutoGraph cannot convert
    _prepare_env()
    with quiet_native_stderr(first_import_only=True):
        import tensorflow

        # Device discovery logs a CUDA probe failure on machines without a GPU.
        tensorflow.config.list_physical_devices("GPU")
    _TF = tensorflow
    return tensorflow


def keras():
    tf()
    import tf_keras

    return tf_keras
