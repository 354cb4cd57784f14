"""The float baseline: a run's .keras model timed by the device benchmark, with TensorFlow, on this machine.

    python -m edge_fer.device_bench.keras_baseline --model runs/cnn/best.keras --data faces.npz --threads 1

The same script and result document as :mod:`edge_fer.runtime.device`, with the model loaded by
TensorFlow (which is not on a device). TensorFlow fixes its thread pools when it starts, so one process
serves one thread count.
"""

from __future__ import annotations

import os
import sys
import time

from ..errors import ConfigError, RuntimeMissing
from ..runtime.device import main as device_main
from ..runtime.model import Model


class KerasModel(Model):
    def __init__(self, path, threads: int = 1):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        t = time.perf_counter_ns()
        try:
            import tensorflow as tf
        except ImportError:
            raise RuntimeMissing("no TensorFlow for a .keras model; pip install tensorflow") from None
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from ..models.summary import load_model  # edge_fer's custom layers

        model = load_model(path)
        self.path = str(path)
        self.input_shape = tuple(-1 if s is None else int(s) for s in model.input_shape)
        self.fn = tf.function(lambda x: model(x, training=False))
        self.runtime, self.version = "tensorflow", tf.__version__
        self.init_ms = (time.perf_counter_ns() - t) / 1e6

    def invoke(self, prepared):
        return self.fn(prepared).numpy()


def open_keras(path, threads, **options) -> KerasModel:
    if options.get("accelerator", "cpu") != "cpu":
        raise ConfigError("a .keras model is the float baseline on this machine's CPU; export it for a GPU")
    return KerasModel(path, threads)


if __name__ == "__main__":
    sys.exit(device_main(opener=open_keras))
