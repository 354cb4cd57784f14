"""Evaluation reports, comparison tables and plots, rendered from JSON results."""

from .evaluate import compare_runs, evaluate_run
from .metrics import classification_metrics, format_metrics

__all__ = ["classification_metrics", "compare_runs", "evaluate_run", "format_metrics"]
