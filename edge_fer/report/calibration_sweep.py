"""``edgefer calibrate``: int8 validation accuracy by calibration-set size and method.

    from edge_fer.report.calibration_sweep import calibration_sweep
    report = calibration_sweep("runs/cnn", sizes=[64, 256, 1024], methods=["minmax", "entropy"])

Post-training int8 of the run's float model: TFLite (the converter's min/max calibration) and
ONNX Runtime static quantisation with each method. Everything is measured on the validation
split, so the choice it informs stays off the test split. Writes RUN/calibration/.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from .._tf import quiet_native_stderr
from ..calibration import CalibrationMethod, CalibrationSet
from ..runs import atomic_path, resolve_run, write_json


def calibration_sweep(run, *, sizes=(64, 256, 1024), methods=("minmax", "entropy", "percentile"),
                      calib_data=None, seed: int = 0, data=None, data_path=None, on_row=None) -> dict:
    from ..data.pipeline import as_model_input
    from ..export import convert
    from ..runtime import open_model
    from ..quantization import load_float_model

    run_dir = resolve_run(run)
    model, cfg = load_float_model(run_dir)
    methods = [CalibrationMethod.parse(m) for m in methods]
    data = data or cfg.load_data(data_path)
    val, channels = data["validation"], model.input_shape[-1]
    p_float = model.predict(as_model_input(val.x, channels), batch_size=256, verbose=0)
    float_acc = float((p_float.argmax(1) == val.y).mean())
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgefer-calib-") as d, warnings.catch_warnings(), quiet_native_stderr():
        warnings.simplefilter("ignore")
        float_onnx = convert.to_onnx_float(model)
        for size in sizes:
            calib = CalibrationSet.from_source(calib_data, data["train"], size=size, seed=seed, channels=channels)
            candidates = [("tflite", "minmax", lambda c=calib: convert.to_tflite(model, "int8", calib=c), ".tflite")]
            candidates += [("onnx", m.value, lambda m=m, c=calib: convert.onnx_int8_from_float(float_onnx, c, m), ".onnx")
                           for m in methods]
            for runtime, method, make, suffix in candidates:
                path = Path(d) / f"m{suffix}"
                path.write_bytes(make())
                p = open_model(path).predict(val.x)
                row = {"runtime": runtime, "method": method, "size": len(calib),
                       "accuracy": float((p.argmax(1) == val.y).mean()),
                       "agreement": float((p.argmax(1) == p_float.argmax(1)).mean())}
                rows.append(row)
                if on_row:
                    on_row(row)
    report = {"run": str(run_dir), "model": cfg.model, "split": "validation", "float_accuracy": float_acc,
              "calibration_source": calib_data or "train split, class-balanced", "rows": rows}
    out = run_dir / "calibration"
    write_json(out / "calibration.json", report)
    with atomic_path(out / "calibration.md") as tmp:
        tmp.write_text(_markdown(report))
    _plot(report, out / "calibration.png")
    report["outputs"] = [str(out / n) for n in ("calibration.json", "calibration.md", "calibration.png")]
    return report


def _markdown(report: dict) -> str:
    lines = [f"int8 validation accuracy of `{report['model']}` by calibration size and method "
             f"(float: {report['float_accuracy']:.4f})", "",
             "| runtime | method | size | accuracy | agreement with float |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['runtime']} | {r['method']} | {r['size']} | {r['accuracy']:.4f} | {r['agreement']:.2%} |")
    return "\n".join(lines) + "\n"


def _plot(report: dict, path: Path) -> None:
    from .plots import _plt, _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    series = {}
    for r in report["rows"]:
        series.setdefault(f"{r['runtime']} {r['method']}", []).append((r["size"], r["accuracy"]))
    for label, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.axhline(report["float_accuracy"], color="k", ls="--", lw=0.8, label="float32")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calibration faces")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8)
    ax.set_title(f"{report['model']}: int8 accuracy by calibration")
    _save(fig, path)
