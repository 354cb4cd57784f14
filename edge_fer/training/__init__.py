"""Training: the study's recipe, resumable, on GPU when TensorFlow sees one."""

from .config import TrainConfig
from .train import TrainResult, compile_model, train

__all__ = ["TrainConfig", "TrainResult", "compile_model", "train"]
