"""Latency measurement the way TFLite's benchmark_model does it.

Warm-up runs first; then at least ``min_runs`` runs *and* at least ``min_seconds``; the input is
prepared (quantised) once, so nothing is allocated inside the timed loop; each run is timed with
the monotonic nanosecond clock. Init time and the first inference are reported apart from the
steady state. Standard library and numpy only (it runs on the device too).
"""

from __future__ import annotations

import time

import numpy as np


def latency_stats(samples_ns) -> dict:
    """Summary statistics in milliseconds of a sequence of durations in nanoseconds."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if a.size == 0:
        raise ValueError("no latency samples")
    return {
        "runs": int(a.size),
        "mean_ms": float(a.mean()),
        "std_ms": float(a.std()),
        "min_ms": float(a.min()),
        "p50_ms": float(np.percentile(a, 50)),
        "p90_ms": float(np.percentile(a, 90)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def measure_latency(invoke, prepared, *, warmup: int = 50, min_runs: int = 200, min_seconds: float = 2.0,
                    max_runs: int = 1_000_000) -> dict:
    """Time ``invoke(prepared)``: first inference, then steady-state statistics."""
    clock = time.perf_counter_ns
    t = clock()
    invoke(prepared)
    first_ms = (clock() - t) / 1e6
    for _ in range(warmup):
        invoke(prepared)
    samples = np.empty(max_runs, dtype=np.int64)
    n, start = 0, clock()
    deadline = start + int(min_seconds * 1e9)
    while n < max_runs and (n < min_runs or clock() < deadline):
        t = clock()
        invoke(prepared)
        samples[n] = clock() - t
        n += 1
    stats = latency_stats(samples[:n])
    stats["first_inference_ms"] = first_ms
    stats["warmup_runs"] = warmup
    return stats
