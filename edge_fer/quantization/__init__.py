"""Quantisation-aware training (tfmot) on the shared builders."""

from .qat import QATResult, load_float_model, load_qat_model, qat_run, quantize_model, warm_up_ranges

__all__ = ["QATResult", "load_float_model", "load_qat_model", "qat_run", "quantize_model", "warm_up_ranges"]
