"""Quantisation-aware training (tfmot) on the shared builders.

``config`` holds the stage's defaults (:class:`QATConfig`), ``scheme`` how a float model becomes a
QAT model, ``ranges`` how its activation ranges are set and chosen, ``pipeline`` the ``edgefer qat``
stage that runs them on a trained run.
"""

from .config import QATConfig
from .pipeline import QATResult, load_float_model, qat_run
from .ranges import warm_up_ranges
from .scheme import load_qat_model, quantize_model

__all__ = ["QATConfig", "QATResult", "load_float_model", "load_qat_model", "qat_run", "quantize_model",
           "warm_up_ranges"]
