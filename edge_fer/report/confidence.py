"""Calibrated confidence: expected calibration error and temperature scaling of a model's probabilities.

    from edge_fer.report.confidence import expected_calibration_error, fit_temperature, apply_temperature
    ece = expected_calibration_error(probs, y)            # 15 equal-width confidence bins
    t = fit_temperature(val_probs, val_y)                 # fitted on PublicTest, never PrivateTest
    calibrated = apply_temperature(test_probs, t)

The models end in a softmax (int8 in the shipped files), so a temperature acts on log-probabilities:
softmax(log p / T) equals softmax(z / T) for the logits z up to the clipping of zero probabilities.
Plain NumPy: runs on the device install.
"""

from __future__ import annotations

import numpy as np

ECE_BINS = 15
# int8 softmax outputs step by 1/256; a 0 means "below half a step", so it is clipped there, not to -inf
_FLOOR = 1.0 / 512


def apply_temperature(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """Probabilities softened (T > 1) or sharpened (T < 1); ``None`` or 1 returns ``probs`` unchanged."""
    if temperature is None or temperature == 1.0:
        return probs
    p = np.asarray(probs, dtype=np.float64)
    z = np.log(np.clip(p, _FLOOR, 1.0)) / float(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.asarray(probs).dtype if np.asarray(probs).dtype.kind == "f"
                                                     else np.float32)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.log(np.clip(p[np.arange(len(y)), np.asarray(y)], 1e-12, 1.0)).mean())


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): Σ_b |B_b|/N · |accuracy(B_b) − mean confidence(B_b)| over ``bins``
    equal-width bins of the top probability; bin b holds confidences in ((b-1)/bins, b/bins]."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def fit_temperature(probs: np.ndarray, y: np.ndarray, *, low: float = 0.05, high: float = 20.0) -> float:
    """The temperature minimising NLL on ``(probs, y)`` (golden-section search on log T; NLL is
    unimodal in T for a fixed set of log-probabilities)."""
    y = np.asarray(y)
    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5.0) - 1.0) / 2.0

    def f(log_t):
        return nll(apply_temperature(probs, float(np.exp(log_t))), y)

    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return round(float(np.exp((a + b) / 2.0)), 4)


def calibration_report(val_probs, val_y, test_probs, test_y, temperature: float | None = None) -> dict:
    """Temperature fitted on the validation faces (or given) and ECE/NLL before and after on the test faces."""
    t = fit_temperature(val_probs, val_y) if temperature is None else float(temperature)
    after = apply_temperature(test_probs, t)
    return {"temperature": t, "fitted_on": "validation" if temperature is None else "given", "bins": ECE_BINS,
            "ece_before": expected_calibration_error(test_probs, test_y),
            "ece_after": expected_calibration_error(after, test_y),
            "nll_before": nll(test_probs, test_y), "nll_after": nll(after, test_y),
            "validation_nll_before": nll(val_probs, val_y),
            "validation_nll_after": nll(apply_temperature(val_probs, t), val_y)}
