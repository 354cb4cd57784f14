"""Activation ranges of a QAT model: set from data, clipped to a percentile, and chosen in int8.

    from edge_fer.quantization.ranges import warm_up_ranges, choose_range_percentile

tfmot starts every activation range at [-6, 6] with a fixed EMA decay of 0.999, so straight after
``quantize_apply`` the QAT model disagrees with the float model on most faces: ``warm_up_ranges``
sets them from training batches first. ``clip_activation_ranges`` clips each range to a percentile
of its values, and ``choose_range_percentile`` tries min/max and ever tighter percentiles in int8
TFLite on the validation split, keeping the first that passes the export's agreement gate.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from .._tf import keras as _keras
from .._tf import quiet_native_stderr
from .._tf import tf as _tf
from .config import AGREEMENT_GATE, AUTO_PERCENTILES
from .scheme import range_ema_decay

log = logging.getLogger(__name__)


def _range_vars(model) -> list:
    return [v for v in model.variables if v.name.split("/")[-1].split(":")[0].endswith(("_min", "_max"))]


TRACED_FROM = 10  # batches: tracing the QAT model costs about as much as ten eager forward passes


def warm_up_ranges(qat_model, batches, *, decay: float = 0.9) -> int:
    """Set the fake-quant ranges from data: forward passes in training mode, weights untouched.

    From :data:`TRACED_FROM` batches on, the passes run as one traced function: the default 50 batches of
    64 through the full MobileNetV3-Small take 9.9 s that way and 33.4 s eagerly (docs/benchmarks.md).
    Fewer run eagerly.
    """
    batches = list(batches)
    range_ids = {id(v) for v in _range_vars(qat_model)}
    others = [v for v in qat_model.variables if id(v) not in range_ids]
    saved = [v.numpy() for v in others]  # BatchNorm statistics must not move
    with range_ema_decay(decay):  # traced inside: the graph keeps this decay
        step = lambda x: qat_model(x, training=True)
        if len(batches) >= TRACED_FROM:
            step = _tf().function(step, reduce_retracing=True)
        for x in batches:
            step(x)
    for v, value in zip(others, saved):
        v.assign(value)
    return len(batches)


_ACTIVATION_RANGES = ("post_activation", "output")


def clip_activation_ranges(qat_model, batches, percentile: float) -> int:
    """Shrink each data-driven activation range to the ``percentile`` of the values it sees.

    min/max ranges follow the rarest outliers: in MobileNetV3's last blocks a few positions reach
    20–70 while 99% of values stay below 1–3, so the int8 signal lives in 1–3 steps and one-step
    rounding differences between the QAT model and the int8 graph flip predictions. Ranges set at
    a high percentile keep the bulk at a finer step and clip the tail, in the QAT model and the int8
    graph alike (measured per model in docs/benchmarks.md). Fixed ranges
    (hard-sigmoid's [0, 6], preprocessing) and weight ranges are left alone. Returns how many
    ranges were shrunk.
    """
    keras = _keras()
    pairs = []  # (layer, min var, max var)
    for layer in qat_model.layers:
        by_name = {v.name.split("/")[-1].split(":")[0]: v for v in layer.weights}
        for prefix in _ACTIVATION_RANGES:
            lo, hi = by_name.get(f"{prefix}_min"), by_name.get(f"{prefix}_max")
            fixed = prefix == "post_activation" and any(
                type(a.quantizer).__name__ == "FixedQuantizer" for a in getattr(layer, "_quantize_activations", []))
            if lo is not None and hi is not None and lo.shape.rank == 0 and not fixed:
                pairs.append((layer, lo, hi))
    if not pairs:
        return 0
    probe = keras.Model(qat_model.input, [layer.output for layer, _, _ in pairs])
    outs = [[] for _ in pairs]
    for x in batches:
        for i, o in enumerate(probe(x, training=False)):
            outs[i].append(np.asarray(o).ravel())
    shrunk = 0
    for (layer, lo, hi), chunks in zip(pairs, outs):
        values = np.concatenate(chunks)
        new_lo = max(float(lo.numpy()), min(0.0, float(np.percentile(values, 100.0 - percentile))))
        new_hi = min(float(hi.numpy()), max(0.0, float(np.percentile(values, percentile))))
        if new_hi - new_lo < 1e-6:
            continue
        if new_lo > float(lo.numpy()) + 1e-6 or new_hi < float(hi.numpy()) - 1e-6:
            shrunk += 1
        lo.assign(new_lo)
        hi.assign(new_hi)
    return shrunk

def choose_range_percentile(qat_model, batches, calib, x_val, y_val, *, threshold: float = AGREEMENT_GATE,
                            candidates=AUTO_PERCENTILES, try_all: bool = False,
                            per_tensor: bool = False) -> tuple[float | None, list[dict]]:
    """Pick the activation-range percentile of a fine-tuned QAT model on the validation split, in int8.

    The candidates (``None`` = keep the min/max ranges), ordered from the least clipping to the
    most, are tried in turn: each is applied to the model, converted to full-integer TFLite exactly
    as ``edgefer export --int8`` converts it, and run on the validation faces. The first whose
    top-1 agreement with its QAT model reaches ``threshold`` (the export gate) is kept — clipping
    throws information away, and on every model measured the least-clipped passing candidate was
    also the most accurate one (docs/benchmarks.md) — and the rest are not tried (``try_all``: they
    are, for the record, and the choice is the same). If none passes,
    the one that agrees most is kept. The model is left with the chosen ranges. Returns (chosen
    percentile, one dict per candidate tried).
    """
    import tempfile

    from .converter import to_tflite
    from ..runtime import open_model

    ranges = _range_vars(qat_model)
    original = [v.numpy() for v in ranges]
    trials = []
    with tempfile.TemporaryDirectory(prefix="edgefer-ranges-") as tmp:
        for p in candidates:
            for v, value in zip(ranges, original):
                v.assign(value)
            shrunk = clip_activation_ranges(qat_model, batches, p) if p is not None else 0
            p_qat = qat_model.predict(x_val, batch_size=256, verbose=0)
            with warnings.catch_warnings(), quiet_native_stderr():
                warnings.simplefilter("ignore")
                blob = to_tflite(qat_model, "int8", calib=calib, per_tensor=per_tensor)
            path = Path(tmp) / "candidate.tflite"
            path.write_bytes(blob)
            p_int8 = open_model(path).predict(x_val)
            trial = {"percentile": p, "ranges_shrunk": shrunk,
                     "qat_accuracy": float((p_qat.argmax(1) == y_val).mean()),
                     "int8_accuracy": float((p_int8.argmax(1) == y_val).mean()),
                     "agreement": float((p_int8.argmax(1) == p_qat.argmax(1)).mean())}
            log.info("ranges %s: QAT val acc %.4f, int8 val acc %.4f, agreement %.2f%%",
                     "min/max" if p is None else f"at the {p:g}th percentile", trial["qat_accuracy"],
                     trial["int8_accuracy"], 100 * trial["agreement"])
            trials.append(trial)
            if trial["agreement"] >= threshold and not try_all:
                break
    passing = [t for t in trials if t["agreement"] >= threshold]
    best = passing[0] if passing else max(trials, key=lambda t: t["agreement"])
    for v, value in zip(ranges, original):
        v.assign(value)
    if best["percentile"] is not None:
        clip_activation_ranges(qat_model, batches, best["percentile"])
    return best["percentile"], trials
