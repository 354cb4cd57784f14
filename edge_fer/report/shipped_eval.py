"""The FERPlus, CK+48 and calibration sections of docs/results.md, rendered from ``edgefer evaluate --json`` reports.

    python -m edge_fer.report.shipped_eval docs/results/shipped_eval/*.json --out docs/results.md

Each report is one shipped model (and format) on one evaluation: ``*.ferplus.json`` (FERPlus majority
labels on PrivateTest, with --fit-temperature), ``*.ck.json`` (CK+48, contempt dropped), ``*.fer.json``
(FER2013 labels, with --fit-temperature). The sections are written between the markers below, so the
rest of the page (``python -m edge_fer.report.results``) is left as it is, and that page keeps them.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from ..labels import CLASSES

START = "<!-- shipped-eval: rendered by python -m edge_fer.report.shipped_eval; edit the reports, not this block -->"
END = "<!-- /shipped-eval -->"

COMMANDS = """```bash
D=../shared/data   # fer2013.npz, fer2013new.csv, ckplus48.npz
for m in {models}; do
  edgefer evaluate $m --data $D/fer2013.npz --ferplus $D/fer2013new.csv --fit-temperature --json docs/results/shipped_eval/$m.ferplus.json
  edgefer evaluate $m --data $D/ckplus48.npz --drop-class contempt --json docs/results/shipped_eval/$m.ck.json
  edgefer evaluate $m --data $D/fer2013.npz --fit-temperature --json docs/results/shipped_eval/$m.fer.json
done
python -m edge_fer.report.shipped_eval docs/results/shipped_eval/*.json --out docs/results.md
```"""


def _name(r: dict) -> str:
    fmt = Path(r["model_path"]).suffix.lstrip(".")
    return f"{r['model']} | {fmt}"


def learned(model: str) -> str:
    """The labels a shipped model learned, from its card ("FER2013", "FERPlus vote distribution", …)."""
    return _learned_by_name().get(Path(model).stem, "?")


@functools.lru_cache(maxsize=1)
def _learned_by_name() -> dict:
    from ..runtime.shipped import shipped_models

    return {m.name: (m.card.get("labels") or {}).get("learned", "FER2013") for m in shipped_models()}


def _temperature_text(reports: list[dict]) -> str:
    """Which of the reported models' metadata carries a temperature (read from the model files)."""
    from ..runtime.metadata import read_metadata
    from ..runtime.shipped import shipped_models

    shipped = {m.name: m.path for m in shipped_models()}
    carry, none = [], []
    for name in sorted({Path(r["model"]).stem for r in reports} & set(shipped)):
        meta, _ = read_metadata(shipped[name])
        t = ((meta or {}).get("calibration") or {}).get("temperature")
        (carry if t else none).append(f"`{name}`" + (f" ({t:.2f})" if t else ""))
    out = []
    if carry:
        out.append(f"Carrying one: {', '.join(carry)}.")
    if none:
        out.append(f"Carrying none (shipped before temperatures were): {', '.join(none)}; they report the "
                   "probabilities as they are.")
    return " ".join(out)


def _learned_text(reports: list[dict]) -> str:
    groups: dict[str, list[str]] = {}
    for name in sorted({Path(r["model"]).stem for r in reports}):
        groups.setdefault(learned(name), []).append(f"`{name}`")
    return "; ".join(f"{', '.join(names)} learned {labels} labels" for labels, names in groups.items())


def _recalls(r: dict) -> str:
    return " | ".join(f"{r['per_class'][c]['recall']:.2f}" if r["per_class"][c]["support"] else "—" for c in CLASSES)


def render(reports: list[dict]) -> str:
    by_kind: dict[str, list[dict]] = {"ferplus": [], "ck": [], "fer": []}
    for r in reports:
        by_kind[r["_kind"]].append(r)
    for rows in by_kind.values():
        rows.sort(key=lambda r: (r["model"], r["model_path"]))
    lines = [START, ""]
    fp = by_kind["ferplus"]
    if fp:
        r0 = fp[0]
        left = ", ".join(f"{k} {v}" for k, v in r0["left_out"].items())
        counts = ", ".join(f"{c} {r0['per_class'][c]['support']:,}" for c in CLASSES)
        lines += [
            "## FERPlus: shipped models on FERPlus PrivateTest (majority labels)", "",
            f"{_learned_text(fp)} (each card says which). Here PrivateTest faces are scored against FERPlus' "
            "ten-annotator labels (`fer2013new.csv`), derived as FERPlus' authors do in `majority` mode: a class with a "
            "single vote is dropped as an outlier, the label is the class holding more than half of the remaining votes, "
            "and faces whose label is *unknown* or *not a face*, or that have no such majority, are left out. FERPlus' "
            "eighth class, contempt, is not one of edge_fer's seven: its faces are left out too, never folded into "
            f"another class. Of PrivateTest's 3,589 faces {r0['n']:,} remain ({counts}); left out: {left}. "
            "The last column scores the same faces against their FER2013 labels "
            f"(FER2013 and FERPlus agree on {r0['fer2013_labels']['agreement_with_ferplus']:.1%} of them).", "",
            "| model | format | learned | accuracy | macro-F1 | " + " | ".join(f"recall {c}" for c in CLASSES)
            + " | FER2013-label accuracy |",
            "|---|---|---|---|---|" + "---|" * len(CLASSES) + "---|"]
        for r in fp:
            lines.append(f"| {_name(r)} | {learned(r['model'])} | {r['accuracy']:.4f} | {r['macro']['f1']:.4f} | "
                         f"{_recalls(r)} | {r['fer2013_labels']['accuracy']:.4f} |")
        lines += [""]
    ck = by_kind["ck"]
    if ck:
        r0 = ck[0]
        present = r0["macro_present"]["classes"]
        counts = ", ".join(f"{c} {r0['per_class'][c]['support']}" for c in present)
        left = ", ".join(f"{k} {v}" for k, v in r0["left_out"].items())
        lines += [
            "## CK+48: shipped models on another dataset", "",
            f"CK+48 (`ckplus48.npz`: {r0['n'] + sum(r0['left_out'].values())} posed 48×48 faces, the last three frames "
            "of 327 sequences of 118 subjects) is never trained or selected on; it is only measured. Its classes are "
            "mapped to ours by name (anger→angry, sadness→sad …); its contempt faces have no class here and are left "
            f"out with `--drop-class contempt` ({left}), so {r0['n']} faces remain ({counts}). CK+ has no neutral face, "
            f"so macro-F1 is over the {len(present)} classes present. Three frames of a sequence are near-identical: "
            "the effective sample is ≈ 309 sequences, so differences of a few points are within noise.", "",
            "| model | format | accuracy | macro-F1 (6 classes) | " + " | ".join(f"recall {c}" for c in CLASSES) + " |",
            "|---|---|---|---|" + "---|" * len(CLASSES)]
        for r in ck:
            lines.append(f"| {_name(r)} | {r['accuracy']:.4f} | {r['macro_present']['f1']:.4f} | {_recalls(r)} |")
        lines += [""]
    cal = [r for r in (*by_kind["fer"], *fp) if r.get("calibration")]
    if cal:
        lines += [
            "## Calibrated confidence", "",
            "Expected calibration error (ECE, 15 equal-width bins of the top probability) of the int8 models' "
            "probabilities on PrivateTest, and a temperature fitted on PublicTest (never PrivateTest) by minimising "
            "its negative log-likelihood (NLL), with ECE and NLL on PrivateTest before and after it. The temperature "
            "divides the model's log-probabilities in one place, `Recognizer.classify` (used by `predict` and "
            "`evaluate`), when a model's metadata carries `calibration.temperature`; `edgefer zoo ship` writes it and "
            f"states it in the card. {_temperature_text(cal)}", "",
            "| model | format | labels | ECE | temperature | ECE with it | NLL | NLL with it |",
            "|---|---|---|---|---|---|---|---|"]
        for r in sorted(cal, key=lambda r: (r["labels"], r["model"], r["model_path"])):
            c = r["calibration"]
            lines.append(f"| {_name(r)} | {r['labels']} | {c['ece_before']:.4f} | {c['temperature']:.3f} | "
                         f"{c['ece_after']:.4f} | {c['nll_before']:.4f} | {c['nll_after']:.4f} |")
        def names(rows):
            return ", ".join(f"`{r['model']}` ({r['calibration']['temperature']:.2f})" for r in rows) or "none"

        ref = [r for r in cal if r["labels"] == "FER2013" and r["model_path"].endswith(".tflite")]
        over = [r for r in ref if r["calibration"]["temperature"] > 1.05]
        under = [r for r in ref if r["calibration"]["temperature"] < 0.95]
        worse_rows = [r for r in cal if r["calibration"]["ece_after"] > r["calibration"]["ece_before"]]
        worse = [f"`{r['model']}` ({r['format_label']})" for r in worse_rows]
        worse_ece = max((r["calibration"]["ece_before"] for r in worse_rows), default=0.0)
        lines += [
            "", f"On FER2013 labels (TFLite), a temperature above 1 softens over-confident models: {names(over)}; "
            f"one below 1 sharpens under-confident ones: {names(under)}. A temperature fitted on PublicTest is not "
            "bound to lower PrivateTest's ECE"
            + (f"; here it does not for {'; '.join(worse)}, whose ECE is already ≤ {worse_ece:.3f}." if worse
               else "; here it does for every row.")]
        lines += [
            "", "`edgefer predict --uncertain-below P` (off by default) labels a face `uncertain` when its top "
            "probability is below P; the record keeps the probabilities, so nothing is lost. With a calibrated "
            "model, P reads as the accuracy wanted of the faces that keep a label: faces at 0.4 are right about "
            "40% of the time.", ""]
    names = sorted({Path(r["model_path"]).name.replace(".tflite", "") for r in reports})
    lines += ["Reproduce (this machine: AMD EPYC, AVX2, 2 cores; the figures do not depend on it):", "",
              COMMANDS.replace("{models}", " ".join(names)), "",
              END]
    return "\n".join(lines) + "\n"


def kind_of(path: Path) -> str:
    for k in ("ferplus", "ck", "fer"):
        if path.name.endswith(f".{k}.json"):
            return k
    raise SystemExit(f"{path}: expected a name ending .ferplus.json, .ck.json or .fer.json")


def carry(old: str, new: str) -> str:
    """``new`` page text with the rendered block of ``old`` kept (appended when ``new`` has none)."""
    from .page_blocks import carry_block

    return carry_block(old, new, START, END)


def write_block(page: Path, block: str) -> None:
    from .page_blocks import write_block as write

    write(page, block, START, END)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/results.md"))
    args = ap.parse_args(argv)
    reports = []
    for p in args.reports:
        r = {**json.loads(p.read_text()), "_kind": kind_of(p)}
        r["format_label"] = f"{Path(r['model_path']).suffix.lstrip('.')}, {r['labels']} labels"
        reports.append(r)
    write_block(args.out, render(reports))
    print(f"wrote the FERPlus, CK+48 and calibration sections of {args.out} from {len(reports)} report(s)")


if __name__ == "__main__":
    main()
