"""Benchmarks of exported models on devices: latency measurement (more to come: targets, SSH)."""

from .latency import latency_stats, measure

__all__ = ["latency_stats", "measure"]
