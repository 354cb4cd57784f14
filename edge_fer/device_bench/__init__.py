"""Benchmarks of exported models on devices: latency measurement, the standalone runner, targets."""

from .latency import latency_stats, measure

__all__ = ["latency_stats", "measure"]
