"""The crop the classifier sees: how accuracy moves with predict's crop margin and with the detector's jitter.

FER2013 faces are tightly framed and registered; ``edgefer predict`` crops a square from a detector box
(side = margin × the box's longer side). This study measures that crop on labelled faces sent through the
same path: each FER2013 face of a split is upscaled 2–4× and pasted at a random place into a grey frame
(half of them on a flat background, half on a smooth random texture), the detector finds it with
:meth:`Recognizer.detect`, :func:`crop_face` crops it at each candidate margin (and, separately, from the
detector's box shifted and scaled by controlled jitter) and the shipped models classify the crops.

    python -m edge_fer.report.crop_study run --data ../shared/data/fer2013.npz --split PublicTest --n 800 \\
        --json docs/results/crop_study/publictest.json
    python -m edge_fer.report.crop_study render docs/results/crop_study/*.json --page docs/results.md \
        --notes docs/results/crop_study/notes.md

Run it with ``OPENBLAS_NUM_THREADS=1`` on a busy machine: predict's NumPy crop is a few small matrix products,
which a multi-threaded BLAS slows down more than tenfold when the cores are shared.

Choose on PublicTest; PrivateTest is for reporting the chosen margin once. The frames are grey (R = G = B),
so predict's RGB → grey conversion is the identity and the crop reads the pasted pixels. A face counts as
detected when a detected box overlaps the pasted square with IoU ≥ 0.3 (the best-overlapping box is used);
accuracies are on the detected faces, beside the same faces classified as their registered 48×48 pixels.
Results are JSON first; the page, its table and its plot are rendered from the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, EdgeFerError

MARGINS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6, 2.0)
JITTER_LEVELS = (0.1, 0.2)
JITTER_KINDS = ("shift", "scale", "both")
MODELS = ("ferlite_int8", "cnn_int8")
DETECTORS = ("yunet", "blazeface", "haar")
FRAME = (320, 240)           # width, height: what predict's detector sees of a VGA camera (--detect-size 320)
FACE_SCALE = (2.0, 4.0)      # pasted face side = 48 × U(2, 4) pixels
MATCH_IOU = 0.3
PLOT = "docs/results/crop_study/crop_study.png"
START = "<!-- crop-study: rendered by python -m edge_fer.report.crop_study render; edit the reports, not this block -->"
END = "<!-- /crop-study -->"


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def _background(rng, w: int, h: int, textured: bool) -> np.ndarray:
    import cv2

    level = rng.uniform(40, 215)
    if not textured:
        return np.full((h, w), round(level), np.uint8)
    coarse = rng.normal(0.0, 1.0, (6, 8)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    img = level + 35.0 * smooth / (smooth.std() + 1e-6) + rng.normal(0.0, 6.0, (h, w))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def paste(face48: np.ndarray, rng, frame: tuple[int, int] = FRAME,
          scale: tuple[float, float] = FACE_SCALE, textured: bool = False) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A grey (H, W) frame with ``face48`` upscaled (bicubic) and pasted at a random place, and the pasted
    square as a box (x, y, side, side)."""
    import cv2

    w, h = frame
    side = int(round(48 * rng.uniform(*scale)))
    if side > min(w, h):
        raise ConfigError(f"a pasted face of {side} px does not fit a {w}x{h} frame; lower --scale or enlarge --frame")
    img = _background(rng, w, h, textured)
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img[y:y + side, x:x + side] = cv2.resize(face48, (side, side), interpolation=cv2.INTER_CUBIC)
    return img, (float(x), float(y), float(side), float(side))


def jittered(face, kind: str, level: float, u: np.ndarray):
    """The detector's face with its box shifted (by ``u[:2] × level`` of its longer side) and/or scaled (by
    1 + ``u[2] × level``); ``u`` is one face's fixed draw from U(-1, 1)³, so levels differ only in size."""
    from ..predict.detectors import Face

    x, y, w, h = face.box
    s = max(w, h)
    cx, cy = x + w / 2.0, y + h / 2.0
    if kind in ("shift", "both"):
        cx, cy = cx + u[0] * level * s, cy + u[1] * level * s
    if kind in ("scale", "both"):
        k = 1.0 + u[2] * level
        w, h = w * k, h * k
    return Face((cx - w / 2.0, cy - h / 2.0, w, h), face.score, dict(face.landmarks))


def _crop(grey: np.ndarray, face, margin: float, align: bool) -> np.ndarray:
    """:func:`crop_face` of ``face`` in ``grey``, computed on the window of the frame it samples: the same
    pixels to within one grey level (float rounding; bilinear samples inside the window, the frame's own borders
    replicated), a fraction of the work."""
    from ..predict.detectors import Face
    from ..predict.recognizer import crop_face

    x, y, w, h = face.box
    reach = (max(w, h) * margin * math.sqrt(2)) / 2.0 + 4.0  # crop_face samples within this of the box centre
    cx, cy = x + w / 2.0, y + h / 2.0
    x0, y0 = max(0, int(math.floor(cx - reach))), max(0, int(math.floor(cy - reach)))
    x1, y1 = min(grey.shape[1], int(math.ceil(cx + reach)) + 1), min(grey.shape[0], int(math.ceil(cy + reach)) + 1)
    moved = Face((x - x0, y - y0, w, h), face.score, {k: (a - x0, b - y0) for k, (a, b) in face.landmarks.items()})
    return crop_face(grey[y0:y1, x0:x1], moved, 48, margin, align)


def _summary(values) -> dict:
    v = np.asarray(values, np.float64)
    if not len(v):
        return {"median": None, "p10": None, "p90": None}
    return {"median": round(float(np.median(v)), 4), "p10": round(float(np.percentile(v, 10)), 4),
            "p90": round(float(np.percentile(v, 90)), 4)}


def _cpu() -> str:
    import os

    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    isa = ", ".join(label for f, label in (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
                                           ("avx512_bf16", "BF16")) if f in flags)
    return f"{name}{' (' + isa + ')' if isa else ''}, {os.cpu_count()} logical cores"


def run_study(data: str | Path, *, split: str = "PublicTest", n: int = 800, models=MODELS, detectors=DETECTORS,
              margins=MARGINS, jitter_levels=JITTER_LEVELS, jitter_margin: float | None = None, seed: int = 0,
              frame: tuple[int, int] = FRAME, scale: tuple[float, float] = FACE_SCALE, align: bool = True,
              log=None) -> dict:
    """The study as a JSON-ready dict (see the module docstring). ``jitter_margin``: the margin of the
    jittered crops (default: each detector's own default margin)."""
    from ..data.dataset import load_raw
    from ..labels import CLASSES
    from ..predict import Recognizer
    from ..predict.detectors import Face

    log = log or (lambda msg: None)
    if n < 1:
        raise ConfigError(f"n must be ≥ 1 face, got {n}")
    if not margins or any(not (math.isfinite(m) and m > 0) for m in margins):
        raise ConfigError(f"margins must be numbers > 0, got {list(margins)}; e.g. --margins 1.0 1.2 1.4")
    if any(not (0 <= j < 1) for j in jitter_levels):
        raise ConfigError(f"jitter levels are fractions of the box side within 0–1, got {list(jitter_levels)}")
    if jitter_margin is not None and not jitter_margin > 0:
        raise ConfigError(f"jitter margin must be > 0, got {jitter_margin}")
    if not models or not detectors:
        raise ConfigError("give at least one model and one detector")
    raw = load_raw(data)
    pool = np.flatnonzero(raw.usage == split)
    pool = pool[raw.pixels[pool].reshape(len(pool), -1).std(axis=1) > 0]  # all-black images are no faces
    if not len(pool):
        raise DataError(f"{raw.source}: no faces with usage {split!r}; expected Training, PublicTest or PrivateTest")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(pool, min(n, len(pool)), replace=False))
    labels = raw.labels[rows]
    faces48 = raw.pixels[rows]
    frames, pasted, textured = [], [], []
    for i, r in enumerate(rows):
        img, box = paste(raw.pixels[r], rng, frame, scale, textured=bool(i % 2))
        frames.append(img)
        pasted.append(box)
        textured.append(bool(i % 2))
    u = rng.uniform(-1.0, 1.0, (len(rows), 3))
    classifiers = {m: Recognizer(m, detector=None) for m in models}
    names = {m: classifiers[m].model_name for m in models}
    registered = {m: (classifiers[m].classify(faces48).argmax(1) == labels) for m in models}
    out = {
        "study": "crop", "data": str(raw.source), "split": split, "n": int(len(rows)), "seed": seed,
        "rows": [int(r) for r in rows], "frame": list(frame), "face_scale": list(scale),
        "backgrounds": "half flat grey (level U(40, 215)), half smooth random texture", "align": align,
        "match_iou": MATCH_IOU, "margins": [float(m) for m in margins], "jitter_levels": [float(j) for j in jitter_levels],
        "classes": list(CLASSES), "label_counts": {c: int((labels == k).sum()) for k, c in enumerate(CLASSES)},
        "models": [names[m] for m in models],
        "registered_accuracy": {names[m]: round(float(registered[m].mean()), 4) for m in models},
        "cpu": _cpu(), "detectors": {},
    }
    for det_name in detectors:
        rec = Recognizer(models[0], detector=det_name)
        default = float(rec.margin)
        jm = float(jitter_margin or default)
        t0 = time.perf_counter()
        found, ratio, offset = [], [], []
        for img, box in zip(frames, pasted):
            rgb = np.repeat(img[..., None], 3, axis=-1)
            best = max(rec.detect(rgb), key=lambda f: _iou(f.box, box), default=None)
            hit = best is not None and _iou(best.box, box) >= MATCH_IOU
            found.append(best if hit else None)
            if hit:
                x, y, w, h = best.box
                ratio.append(box[2] / max(w, h))
                offset.append(((x + w / 2 - box[0] - box[2] / 2) / box[2], (y + h / 2 - box[1] - box[3] / 2) / box[2]))
        detect_ms = (time.perf_counter() - t0) * 1e3 / len(frames)
        hit = np.array([f is not None for f in found])
        idx = np.flatnonzero(hit)
        log(f"{det_name}: {hit.sum()}/{len(hit)} faces found ({detect_ms:.1f} ms/frame)")
        measured = sorted(set(margins) | {default, jm})  # the default and the jitter margin are always measured
        crops = {("margin", m): [] for m in measured}
        crops.update({(k, j): [] for k in JITTER_KINDS for j in jitter_levels})
        crops[("pasted", 1.0)] = []
        for i in idx:
            f, grey = found[i], frames[i]
            for m in measured:
                crops[("margin", m)].append(_crop(grey, f, m, align))
            for k in JITTER_KINDS:
                for j in jitter_levels:
                    crops[(k, j)].append(_crop(grey, jittered(f, k, j, u[i]), jm, align))
            crops[("pasted", 1.0)].append(_crop(grey, Face(pasted[i], 1.0), 1.0, False))
        off = np.array(offset) if offset else np.zeros((0, 2))
        d = {
            "default_margin": default, "jitter_margin": jm, "detected": int(hit.sum()),
            "detection_rate": round(float(hit.mean()), 4),
            "detection_rate_flat": round(float(hit[~np.array(textured)].mean()), 4) if (~np.array(textured)).any() else None,
            "detection_rate_textured": round(float(hit[np.array(textured)].mean()), 4) if any(textured) else None,
            "detect_ms_per_frame": round(detect_ms, 2),
            "box": {"registering_margin": _summary(ratio), "centre_dx": _summary(off[:, 0]), "centre_dy": _summary(off[:, 1])},
            "models": {},
        }
        for m in models:
            clf = classifiers[m]
            size = clf.size
            if size != 48:
                raise ConfigError(f"{names[m]}: takes {size}x{size} faces; the study crops 48x48")
            correct = {key: (clf.classify(np.stack(v)).argmax(1) == labels[idx]) if len(v) else np.zeros(0, bool)
                       for key, v in crops.items()}
            base = correct.get(("margin", default))
            res = {"registered": round(float(registered[m][idx].mean()), 4) if len(idx) else None,
                   "pasted_box": round(float(correct[("pasted", 1.0)].mean()), 4) if len(idx) else None,
                   "margins": [], "jitter": []}
            for mg in measured:
                c = correct[("margin", mg)]
                row = {"margin": float(mg), "accuracy": round(float(c.mean()), 4) if len(c) else None,
                       "end_to_end": round(float(c.sum() / len(rows)), 4)}
                if base is not None and len(c):
                    diff = c.astype(float) - base.astype(float)
                    row["delta_vs_default"] = round(float(diff.mean()), 4)
                    row["delta_se"] = round(float(diff.std(ddof=1) / math.sqrt(len(diff))), 4) if len(diff) > 1 else None
                res["margins"].append(row)
            jbase = correct[("margin", jm)]
            res["jitter"].append({"kind": "none", "level": 0.0,
                                  "accuracy": round(float(jbase.mean()), 4) if len(jbase) else None})
            for k in JITTER_KINDS:
                for j in jitter_levels:
                    c = correct[(k, j)]
                    res["jitter"].append({"kind": k, "level": float(j), "accuracy": round(float(c.mean()), 4) if len(c) else None})
            d["models"][names[m]] = res
            log(f"{det_name} · {names[m]}: registered {res['registered']}, "
                + ", ".join(f"{r['margin']:g}→{r['accuracy']}" for r in res["margins"]))
        accs = {mg: [d["models"][names[m]]["margins"][i]["accuracy"] or 0.0 for m in models] for i, mg in enumerate(measured)}
        # the rule: the best mean accuracy over the models; a tie goes to the margin nearer the default
        d["best_margin"] = float(max(measured, key=lambda mg: (np.mean(accs[mg]), -abs(mg - default))))
        out["detectors"][det_name] = d
    return out


# --- rendering -------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def margin_table(r: dict) -> list[str]:
    ms = sorted({x["margin"] for d in r["detectors"].values() for res in d["models"].values() for x in res["margins"]})
    lines = ["| detector (default margin) | model | found | registered 48×48 | pasted square | "
             + " | ".join(f"m {m:g}" for m in ms) + " |",
             "|---|---|---|---|---|" + "---|" * len(ms)]
    for det, d in r["detectors"].items():
        for model, res in d["models"].items():
            cells = []
            best = max(x["accuracy"] or 0 for x in res["margins"])
            by = {x["margin"]: x for x in res["margins"]}
            for m in ms:
                x = by.get(m, {"margin": m, "accuracy": None})
                s = _pct(x["accuracy"])
                if x["margin"] == d["default_margin"]:
                    s = f"*{s}*"
                if x["accuracy"] == best:
                    s = f"**{s}**"
                cells.append(s)
            lines.append(f"| {det} ({d['default_margin']:g}) | {model} | {_pct(d['detection_rate'])}% | "
                         f"{_pct(res['registered'])} | {_pct(res['pasted_box'])} | " + " | ".join(cells) + " |")
    return lines


def jitter_table(r: dict) -> list[str]:
    levels = r["jitter_levels"]
    lines = ["| detector (crop margin) | model | no jitter | " + " | ".join(
        f"{k} {j:g}" for k in JITTER_KINDS for j in levels) + " |",
        "|---|---|---|" + "---|" * (len(JITTER_KINDS) * len(levels))]
    for det, d in r["detectors"].items():
        for model, res in d["models"].items():
            by = {(x["kind"], x["level"]): x["accuracy"] for x in res["jitter"]}
            lines.append(f"| {det} ({d['jitter_margin']:g}) | {model} | {_pct(by[('none', 0.0)])} | "
                         + " | ".join(_pct(by[(k, j)]) for k in JITTER_KINDS for j in levels) + " |")
    return lines


def box_table(r: dict) -> list[str]:
    lines = ["| detector | found (flat / textured background) | ms/frame (shared, loaded machine) | registering margin, median (p10–p90) | "
             "box centre − face centre, x / y (median, in face sides) |", "|---|---|---|---|---|"]
    for det, d in r["detectors"].items():
        b = d["box"]
        rm = b["registering_margin"]
        lines.append(f"| {det} | {_pct(d['detection_rate'])}% ({_pct(d['detection_rate_flat'])}% / "
                     f"{_pct(d['detection_rate_textured'])}%) | {d['detect_ms_per_frame']:.1f} | "
                     f"{rm['median']} ({rm['p10']}–{rm['p90']}) | {b['centre_dx']['median']} / {b['centre_dy']['median']} |")
    return lines


def plot(r: dict, path: Path) -> Path:
    from .plots import _plt, _save

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for det, d in r["detectors"].items():
        for model, res in d["models"].items():
            xs = [x["margin"] for x in res["margins"]]
            (line,) = a.plot(xs, [100 * (x["accuracy"] or 0) for x in res["margins"]], marker="o", label=f"{det} · {model}")
            a.axhline(100 * res["registered"], color=line.get_color(), ls=":", lw=1)
            by = {(x["kind"], x["level"]): x["accuracy"] for x in res["jitter"]}
            lv = [0.0] + list(r["jitter_levels"])
            b.plot([100 * j for j in lv], [100 * by[("none", 0.0)]] + [100 * by[("both", j)] for j in r["jitter_levels"]],
                   marker="o", color=line.get_color(), label=f"{det} · {model}")
    a.set(xlabel="crop margin (crop side / detector box side)", ylabel="accuracy %",
          title=f"{r['split']}, {r['n']} pasted faces (dotted: registered 48×48)")
    b.set(xlabel="box jitter (shift and scale, % of box side)", ylabel="accuracy %",
          title="detector box shifted and scaled, default margin")
    a.legend(fontsize=7)
    b.legend(fontsize=7)
    return _save(fig, path)


def render(reports: list[dict], commands: str, plot_path: str | None, notes: str = "") -> str:
    """The Markdown of the study: the selection split's tables, then each other split's margin table."""
    sel = [r for r in reports if r["split"] == "PublicTest"]
    other = [r for r in reports if r["split"] != "PublicTest"]
    lines = [START, "", "## The crop the classifier sees", ""]
    if commands:
        lines += [commands, ""]
    for r in sel:
        lines += [f"Measured on {r['cpu']}: {r['n']} {r['split']} faces (seed {r['seed']}; {', '.join(f'{c} {k}' for c, k in r['label_counts'].items())}), "
                  f"each pasted at 48 × U({r['face_scale'][0]:g}, {r['face_scale'][1]:g}) px into a {r['frame'][0]}×{r['frame'][1]} "
                  f"grey frame ({r['backgrounds']}); eyes levelled with the detector's landmarks where it gives them "
                  f"({'on' if r['align'] else 'off'}). Accuracy (%) on the faces each detector found; *italic*: the "
                  "detector's default margin when measured, **bold**: the best margin of the row. *Registered 48×48*: "
                  "the same faces as FER2013 stores them; *pasted square*: cropped from the exact pasted square "
                  "(margin 1, no detector), which isolates the cost of the upscale and resampling.", ""]
        lines += margin_table(r) + [""]
        lines += ["Where the detectors put their box (registering margin: the margin that would reproduce FER2013's "
                  "framing, pasted side / the box's longer side):", ""] + box_table(r) + [""]
        lines += ["Accuracy (%) with the detector's box moved before cropping at the margin in brackets: shifted by up to "
                  "±level × its side in x and y, scaled by 1 ± level, or both (one fixed U(−1, 1) draw per face, scaled "
                  "by the level):", ""] + jitter_table(r) + [""]
    for r in other:
        lines += [f"{r['split']}, {r['n']} faces (seed {r['seed']}), reported once for the chosen margin and the old one:", ""]
        lines += margin_table(r) + [""]
    if plot_path:
        lines += [f"![accuracy against crop margin and box jitter]({plot_path})", ""]
    if notes:
        lines += [notes.strip(), ""]
    lines += [END]
    return "\n".join(lines) + "\n"


def carry(old: str, new: str) -> str:
    """``new`` page text with the rendered crop-study block of ``old`` kept (appended when ``new`` has none)."""
    from .page_blocks import carry_block

    return carry_block(old, new, START, END)


def write_block(page: Path, block: str) -> None:
    from .page_blocks import write_block as write

    write(page, block, START, END)


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m edge_fer.report.crop_study", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure: faces pasted into frames, detected, cropped, classified → JSON")
    r.add_argument("--data", required=True, help="FER2013 csv, npz or image folder (e.g. ../shared/data/fer2013.npz)")
    r.add_argument("--split", default="PublicTest", choices=("PublicTest", "PrivateTest", "Training"),
                   help="faces to measure (default PublicTest: choose there; PrivateTest only to report a choice once)")
    r.add_argument("--n", type=int, default=800, help="faces (random, seeded; all-black images excluded; default 800)")
    r.add_argument("--models", default=",".join(MODELS), help=f"comma-separated shipped names or paths (default {','.join(MODELS)})")
    r.add_argument("--detectors", default=",".join(DETECTORS), help=f"comma-separated, of yunet, blazeface, haar (default all)")
    r.add_argument("--margins", default=",".join(f"{m:g}" for m in MARGINS), help="comma-separated crop margins")
    r.add_argument("--jitter", default=",".join(f"{j:g}" for j in JITTER_LEVELS),
                   help="comma-separated jitter levels (fractions of the box side; empty for none)")
    r.add_argument("--jitter-margin", type=float, default=None, help="margin of the jittered crops (default: the detector's)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-align", action="store_true", help="do not level the eyes (predict --no-align)")
    r.add_argument("--json", required=True, type=Path, help="where to write the report")
    g = sub.add_parser("render", help="the Markdown block (tables, plot) from reports into a page")
    g.add_argument("reports", nargs="+", type=Path)
    g.add_argument("--page", type=Path, default=Path("docs/results.md"), help="page whose crop-study block is written")
    g.add_argument("--plot", type=Path, default=Path(PLOT), help="plot of the PublicTest report")
    g.add_argument("--notes", type=Path, default=None,
                   help="a Markdown file kept beside the reports: what the figures say, ending the block")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "run":
            from ..runs import write_json

            dets = [d.strip() for d in args.detectors.split(",") if d.strip()]
            bad = [d for d in dets if d not in DETECTORS]
            if bad:
                raise ConfigError(f"unknown detector(s) {', '.join(bad)}; expected some of {', '.join(DETECTORS)}")
            try:
                margins, jitter = _floats(args.margins), _floats(args.jitter)
            except ValueError:
                raise ConfigError(f"--margins and --jitter take comma-separated numbers, got {args.margins!r} / "
                                  f"{args.jitter!r}; e.g. --margins 1.0,1.2,1.4") from None
            rep = run_study(args.data, split=args.split, n=args.n, models=[m for m in args.models.split(",") if m],
                            detectors=dets, margins=margins, jitter_levels=jitter, jitter_margin=args.jitter_margin,
                            seed=args.seed, align=not args.no_align, log=print)
            rep["command"] = "python -m edge_fer.report.crop_study " + shlex.join(argv if argv is not None else sys.argv[1:])
            write_json(args.json, rep)
            for det, d in rep["detectors"].items():
                print(f"{det}: found {d['detection_rate']:.1%}, default margin {d['default_margin']:g}, "
                      f"best on {rep['split']} {d['best_margin']:g}")
            print(f"wrote {args.json}")
        else:
            reports = [json.loads(p.read_text()) for p in args.reports]
            sel = [r for r in reports if r["split"] == "PublicTest"]
            plot_rel = None
            if sel:
                plot(sel[0], args.plot)
                plot_rel = str(Path(__import__("os").path.relpath(args.plot, args.page.parent)))
            shown = " ".join(shlex.quote(str(p)) for p in args.reports)
            notes = f" --notes {shlex.quote(str(args.notes))}" if args.notes else ""
            cmds = "\n".join(["```bash"] + [r["command"] for r in reports if r.get("command")]
                              + [f"python -m edge_fer.report.crop_study render {shown} --page {args.page} --plot {args.plot}"
                                 + notes, "```"])
            write_block(args.page, render(reports, cmds, plot_rel, args.notes.read_text() if args.notes else ""))
            print(f"wrote the crop-study block of {args.page} from {len(reports)} report(s)")
    except EdgeFerError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
