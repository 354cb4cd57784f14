"""The zoo's results page: every architecture, float and int8, on PrivateTest, with its figures.

    python -m edge_fer.report.results ~/edgefer-runs/{cnn,mobilenetv3_small,...} --out docs/results.md

For each run (trained, QAT-fine-tuned and exported with `edgefer export RUN --int8`): the float
model's evaluation report (confusion matrix, ROC curves, training curves), the int8 TFLite and
ONNX artefacts measured on PrivateTest (accuracy, macro P/R/F1, per-class F1, ROC-AUC, agreement
with float), sizes, batch-1 p50 latency on this CPU (1 and 2 threads), training time and epochs, and a
correctness check of the int8 TFLite file on the emulated Raspberry Pi (aarch64 under qemu-user,
``scripts/arm64_pi.sh``; ``--rpi-python none`` skips it). A run trained with builder options
(``-o stem_stride=1``) is labelled with them; a run's own ``notes.md`` (what happened to it that its
files do not say) is printed in its section.
Then one Pareto plot of every int8 artefact. Figures are copied next to the page (small PNGs).
A run that has not finished its planned epochs is marked so — never presented as converged — and so is
a run whose plan was shorter than the study's 45 epochs (a budget schedule, e.g. ResNet-50 on this CPU).
"""

from __future__ import annotations

import argparse
import json
import operator
import shutil
from pathlib import Path

from ..errors import RunError
from ..labels import CLASSES
from ..runs import RunLayout, atomic_path, read_state, resolve_run, write_json
from .quant_bench import ranges_label

STUDY_EPOCHS = 45  # the study's recipe; a shorter plan is a budget run and is labelled as one
# What the edge-native architecture aims at, each checked against the run's measured figures.
EDGE_NATIVE = "ferlite"
EDGE_TARGETS = (  # (what, how it is read from a row, comparison, target, format)
    ("int8 PrivateTest accuracy", lambda r: r["test"]["int8"]["accuracy"], "≥", 0.72, ".4f"),
    ("int8 TFLite size (KB)", lambda r: r["sizes"]["int8_tflite"] / 1024, "≤", 500, ".0f"),
    ("batch-1 p50, 1 thread (ms)", lambda r: r["latency_ms"].get("tflite", {}).get("1"), "≤", 0.25, ".3f"),
    ("training + QAT wall time (h)",
     lambda r: ((r["train_seconds"] or 0) + ((r["qat"] or {}).get("seconds") or 0)) / 3600, "≤", 2.0, ".2f"),
)
_MEETS = {"≥": operator.ge, "≤": operator.le}


def edge_targets(row: dict) -> list[tuple[str, str, str, bool | None]]:
    """(what, measured, target, met) for an edge-native row; met is None when the figure was not measured."""
    out = []
    for what, read, op, target, spec in EDGE_TARGETS:
        v = read(row)
        out.append((what, _fmt(v, spec), f"{op} {target:{spec}}", None if v is None else _MEETS[op](v, target)))
    return out


def run_results(run, *, threads=(1, 2), min_seconds: float = 2.0, data_path: str | None = None,
                rpi_python: str | None = None, rpi_faces: int = 200) -> dict:
    from ..device_bench.bench import cross_check
    from ..training import TrainConfig
    from ..zoo.ship import _non_default_flags, _schedule_text, int8_artefact, measure_card
    from .evaluate import evaluate_run

    run_dir = resolve_run(run)
    cfg = TrainConfig.load(run_dir)
    state = read_state(run_dir)
    layout = RunLayout(run_dir)
    tflite = int8_artefact(layout.export_dir, cfg.model, ".tflite")
    if tflite is None:
        raise RunError(f"{run_dir}: no int8 export; run `edgefer qat {run_dir}` then `edgefer export {run_dir} --int8`")
    onnx = int8_artefact(layout.export_dir, cfg.model, ".onnx")
    evaluate_run(run_dir, split="test", data_path=data_path)  # writes the confusion matrix, ROC and curves
    params = int(json.loads(layout.model_info.read_text())["params"])  # written by `edgefer train`
    measured = measure_card(run_dir, tflite, onnx, data_path=data_path, threads=threads, min_seconds=min_seconds)
    pi = cross_check(tflite, rpi_python, data=data_path or cfg.data, faces=rpi_faces) if rpi_python else None
    return {
        "architecture": cfg.label, "run": run_dir.name, "run_dir": str(run_dir),
        "emulated_pi": pi,
        "epochs_planned": cfg.epochs, "epochs_trained": state.get("epoch"), "finished": state.get("status") == "finished",
        "stopped_early": state.get("stopped_early"), "best_epoch": state.get("best", {}).get("epoch"),
        "train_seconds": state.get("seconds"), "qat": layout.qat(),
        "params": params,
        "note": (run_dir / "notes.md").read_text().strip() if (run_dir / "notes.md").is_file() else None,
        "recipe": {"batch_size": cfg.batch_size, "lr": cfg.lr, "schedule": _schedule_text(cfg.to_dict()),
                   "flags": _non_default_flags(cfg).strip()},
        "sizes": {"float32_weights": params * 4, "int8_tflite": tflite.stat().st_size,
                  **({"int8_onnx": onnx.stat().st_size} if onnx else {})},
        "artefacts": {"tflite": tflite.name, **({"onnx": onnx.name} if onnx else {})},
        "figures": {"confusion": str(layout.eval_dir("test") / "confusion_matrix.png"),
                    "roc": str(layout.eval_dir("test") / "roc.png"), "curves": str(run_dir / "training_curves.png")},
        **measured,
    }


def _pending(run, reason: str) -> dict:
    p = Path(run).expanduser()
    state = read_state(p) if p.is_dir() else {}
    name = p.name
    if not state:
        what = f"{name}: not started" if not RunLayout(p).config.is_file() else f"{name}: 0 epochs trained"
    else:
        what = (f"{name}: {state.get('epoch')} of {state.get('epochs')} epochs trained"
                + (" (finished; QAT/export pending)" if state.get("status") == "finished" else ""))
    return {"run": name, "what": what, "reason": reason}


def _fmt(v, spec=".4f"):
    return "—" if v is None else format(v, spec)


def _pi_cell(pi: dict | None) -> str:
    if not pi:
        return "—"
    same = round(pi["labels_equal"] * pi["faces"])
    return (f"{same}/{pi['faces']} labels, "
            + ("bit-exact" if pi["sample_outputs_equal"] else f"max Δ {pi['sample_outputs_max_diff']:.0f} step"))


# The study's pretrained ResNet-50: its recipe as commands, where its row would be. Not measured:
# ImageNet weights cannot be fetched on the machines this page is made on.
PRETRAINED_RESNET50 = [
    "## The study's pretrained ResNet-50 (not measured)", "",
    "The study's ResNet-50 started from ImageNet weights (its reported accuracy is ≈ 0.67); the `resnet50` row "
    "above is trained from scratch. The study's recipe (45 epochs, batch 64, Adam 1e-3, ReduceLROnPlateau, "
    "the defaults of `edgefer train`) from ImageNet weights:", "",
    "```bash",
    "edgefer train --model resnet50 --weights imagenet --data fer2013.csv --out runs/resnet50-imagenet",
    "# without internet: the same no-top weights file, downloaded once from",
    "# https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "edgefer train --model resnet50 --weights resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 "
    "--data fer2013.csv --out runs/resnet50-imagenet",
    "```", "",
    "The grey 48×48 face is repeated to three channels and ImageNet's caffe-style channel means (B, G, R "
    "103.939, 116.779, 123.68) are subtracted inside the graph, so the exported model takes raw grey pixels like "
    "the others; the backbone runs at 48×48 (keras.applications accepts no-top inputs from 32×32), not "
    "ImageNet's 224×224, and the head is edge_fer's (dropout, one Dense layer), not the study's extra layers. "
    "The run's config.json records the weights file's name and SHA-256. **ImageNet weights cannot be fetched on "
    "this project's machines (no network access), so this row is not measured.**",
]


def markdown(rows: list[dict], command: str, pareto: str | None, pending: list[dict] = ()) -> str:
    lines = ["# Results: the study's architectures on FER2013, float and int8", "",
             "Trained on Training, epochs and QAT epochs chosen on PublicTest, every figure below on PrivateTest "
             "(3,589 faces), measured once. Latency: batch 1, p50, this toolkit's runner on this machine's CPU "
             "(XNNPACK). Reproduce this page (runs trained with `scripts/zoo_train.sh`):", "", "```bash", command,
             "```", "",
             "| architecture | epochs | float acc | int8 acc | int8 macro P | R | F1 | ROC-AUC | agreement | float KB "
             "| int8 KB | p50 1t ms | p50 2t ms | training | emulated Pi |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["test"]
        f, q = t["float32"], t["int8"]
        lat = r["latency_ms"].get("tflite", {})
        ep = (f"{r['epochs_trained']}/{r['epochs_planned']}" + ("" if r["finished"] else " **not finished**")
              + (" (short plan)" if r["epochs_planned"] < STUDY_EPOCHS else ""))
        lines.append(
            f"| {r['architecture']} | {ep} | {f['accuracy']:.4f} | {q['accuracy']:.4f} | {q['macro_precision']:.4f} | "
            f"{q['macro_recall']:.4f} | {q['macro_f1']:.4f} | {q['roc_auc_macro']:.4f} | {q['agreement_with_float']:.2%} | "
            f"{r['sizes']['float32_weights'] / 1024:.0f} | {r['sizes']['int8_tflite'] / 1024:.0f} | {_fmt(lat.get('1'), '.3f')} | "
            f"{_fmt(lat.get('2'), '.3f')} | {(r['train_seconds'] or 0) / 3600:.2f} h | {_pi_cell(r.get('emulated_pi'))} |")
    lines += ["", "int8 = the QAT model exported to full-integer TFLite (int8 in/out); agreement = top-1 agreement of "
              "the int8 TFLite model with the float Keras model (the checkpoint before QAT) on PrivateTest. Float KB: "
              "parameters × 4 bytes. Training: the wall time the run recorded on its 2-core machine, which it "
              "shared with other work, so not a speed figure (`docs/benchmarks.md` has training throughput). "
              "Emulated Pi: the int8 TFLite file run by the device runner on an aarch64 Python under qemu-user "
              "(Cortex-A72, `scripts/arm64_pi.sh`; what `edgefer bench --device rpi` runs over SSH) against the same "
              "runner here, on the first PrivateTest faces: labels equal, and whether the raw int8 outputs of the "
              "first 8 faces are bit-exact. A correctness check; emulated timings mean nothing. Each architecture's "
              "section below says how its QAT activation ranges were set: min/max, or clipped at a percentile; "
              "\"(auto)\": chosen on PublicTest by `edgefer qat --range-percentile auto`.", "",
              "Per-class F1 (int8 TFLite):", "", "| architecture | " + " | ".join(CLASSES) + " |",
              "|---|" + "---|" * len(CLASSES)]
    for r in rows:
        pc = r["test"]["int8"]["per_class_f1"]
        lines.append(f"| {r['architecture']} | " + " | ".join(f"{pc[c]:.3f}" for c in CLASSES) + " |")
    for r in rows:
        if r["architecture"].split(" ")[0] != EDGE_NATIVE:
            continue
        lines += ["", f"Edge-native targets, run `{r['run']}` as measured above "
                  "(experiment log, one change at a time on PublicTest: [ferlite.md](ferlite.md)):", "",
                  "| target | measured | aim | met |", "|---|---|---|---|"]
        lines += [f"| {what} | {v} | {aim} | {'—' if met is None else ('yes' if met else '**no**')} |"
                  for what, v, aim, met in edge_targets(r)]
    if pending:
        lines += ["", "Not in the table yet (still training in the background; rerun the command "
                  "above when they are done):", ""] + [f"- {p['what']}" for p in pending]
    lines += [""] + PRETRAINED_RESNET50
    machines = {}
    for r in rows:
        machines.setdefault(r.get("latency_machine") or "unknown CPU", []).append(r["architecture"])
    timed_on = ("" if len(machines) < 2 else
                " The rows were timed on different CPUs: "
                + "; ".join(f"{cpu}: {', '.join(archs)}" for cpu, archs in machines.items())
                + ". Compare latencies within one CPU.")
    if pareto:
        lines += ["", "## Accuracy against latency", "", f"![Pareto plot]({pareto})", "",
                  "Latency on a shared 2-core machine varies from one measurement to the next by up to ~40% (the model "
                  "cards were timed separately); compare models within one page." + timed_on, ""]
    if any(r["epochs_planned"] < STUDY_EPOCHS for r in rows):
        lines += ["", f"\"(short plan)\": the run was planned for fewer epochs than the study's {STUDY_EPOCHS}, "
                  "with a learning-rate schedule that ends inside that plan, because the study's length does not fit "
                  "the time this CPU can give it (its section says how long one epoch takes). It finished its own "
                  "plan, but it is a budget run, not the study's recipe trained to convergence: its accuracy is a "
                  "lower bound for the architecture.", ""]
    for r in rows:
        a = r["architecture"]
        rec = r.get("recipe")
        per_epoch = (r["train_seconds"] or 0) / 60 / max(r["epochs_trained"] or 1, 1)
        lines += ["", f"## {a}", "",
                  f"Run `{r['run']}`: {r['epochs_trained']} of {r['epochs_planned']} epochs "
                  f"({'finished' if r['finished'] else 'NOT finished: not converged, figures provisional'}"
                  f"{', stopped early' if r['stopped_early'] else ''}), best epoch {r['best_epoch']}, "
                  f"{(r['train_seconds'] or 0) / 3600:.2f} h; "
                  + (f"QAT {r['qat']['epochs']} epochs, best {r['qat']['best_epoch']}, {ranges_label(r['qat'])}."
                     if r["qat"] else "no QAT.")
                  + (f" Recipe: batch {rec['batch_size']}, Adam {rec['lr']:g}, {rec['schedule']}"
                     f"{' (flags: `' + rec['flags'] + '`)' if rec['flags'] else ''}." if rec else "")
                  + (f" **Short plan**: {r['epochs_planned']} epochs instead of the study's {STUDY_EPOCHS} "
                     f"(≈ {per_epoch:.0f} min an epoch here), so not converged to the study's recipe."
                     if r["epochs_planned"] < STUDY_EPOCHS else ""),
                  ""] + ([r["note"], ""] if r.get("note") else [])
        for key, title in (("curves", "training curves"), ("confusion", "confusion matrix (float)"),
                           ("roc", "ROC curves (float)")):
            if r["figures"].get(key):
                lines.append(f"![{a} {title}]({r['figures'][key]})")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="The zoo's results page (docs/results.md) from trained, exported runs.")
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--data", default=None)
    ap.add_argument("--rpi-python", default=str(Path(__file__).resolve().parents[2] / ".venv" / "arm64-pi" / "python"),
                    help="the emulated Raspberry Pi's Python for the correctness column (scripts/arm64_pi.sh); "
                         "'none' skips it")
    ap.add_argument("--rpi-faces", type=int, default=200)
    ap.add_argument("--render-only", action="store_true",
                    help="re-render the page and plots from the saved results.json / bench.json, measuring nothing")
    args = ap.parse_args(argv)
    from .bench_compare import compare_bench

    rpi_python = None if args.rpi_python == "none" else args.rpi_python
    if rpi_python and not Path(rpi_python).is_file():
        print(f"note: no emulated Pi at {rpi_python} (make it with `bash scripts/arm64_pi.sh`); "
              "the emulated-Pi column stays empty")
        rpi_python = None
    fig_dir = args.out.parent / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    rows, records, pending = [], [], []
    saved, saved_records = {}, []
    if (fig_dir / "results.json").is_file() and (fig_dir / "bench.json").is_file():
        saved = {str(Path(r["run_dir"]).expanduser()): r for r in json.loads((fig_dir / "results.json").read_text())}
        saved_records = json.loads((fig_dir / "bench.json").read_text())
    elif args.render_only:
        ap.error(f"--render-only needs {fig_dir}/results.json and bench.json from an earlier run of this command")
    for run in args.runs:
        key = str(Path(run).expanduser())
        # A run measured earlier whose directory is gone (trained on another machine, or
        # removed since) keeps its measured row instead of turning into "not started".
        if key in saved and (args.render_only or not RunLayout(key).config.is_file()):
            rows.append(saved[key])
            records += [rec for rec in saved_records if str(Path(rec.get("path", "")).expanduser()).startswith(key + "/")]
            if not args.render_only:
                print(f"kept: {key} as measured earlier (its run directory is gone)")
            continue
        if args.render_only:
            pending.append(_pending(run, "not measured"))
            continue
        try:
            r = run_results(run, threads=[int(t) for t in args.threads.split(",")], min_seconds=args.min_seconds,
                            data_path=args.data, rpi_python=rpi_python, rpi_faces=args.rpi_faces)
        except RunError as e:  # not trained, not finished or not exported yet: listed as pending
            pending.append(_pending(run, str(e)))
            print(f"pending: {pending[-1]['what']}")
            continue
        for rec in r["bench_records"]:  # label variants (builder options) apart in the comparison and the plot
            rec["architecture"] = r["architecture"]
        records += r.pop("bench_records")
        for key, src in list(r["figures"].items()):
            if src and Path(src).is_file():
                dest = fig_dir / f"{r['run']}_{Path(src).name}"
                shutil.copyfile(src, dest)
                r["figures"][key] = str(dest.relative_to(args.out.parent))
            else:
                r["figures"][key] = None
        rows.append(r)
        print(f"{r['architecture']}: float {r['test']['float32']['accuracy']:.4f}, int8 {r['test']['int8']['accuracy']:.4f}")
    write_json(fig_dir / "bench.json", records)
    cmp = compare_bench([fig_dir / "bench.json"], out=fig_dir)
    pareto = fig_dir / "pareto_cpu.png"
    write_json(fig_dir / "results.json", rows)
    home = str(Path.home())
    shown = [r.replace(home, "~", 1) if r.startswith(home) else r for r in args.runs]
    command = "python -m edge_fer.report.results " + " ".join(shown) + f" --out {args.out}"
    from .crop_study import carry as carry_crop  # the crop-study block too (python -m edge_fer.report.crop_study)
    from .shipped_eval import carry  # the page's FERPlus / CK+48 / calibration block is rendered on its own

    old = args.out.read_text() if args.out.is_file() else ""
    with atomic_path(args.out) as tmp:
        tmp.write_text(carry_crop(old, carry(old, markdown(rows, command, str(pareto.relative_to(args.out.parent))
                                                           if pareto.is_file() else None, pending))))
    print(f"wrote {args.out} and {fig_dir}/ ({len(cmp['outputs'])} comparison files)")


if __name__ == "__main__":
    main()
