"""Training throughput of every builder on this machine: images/s and seconds per FER2013 epoch.

    python -m edge_fer.training.throughput                       # all models, float32 and mixed_bfloat16
    python -m edge_fer.training.throughput --models cnn --steps 30 --json out.json

Each measurement builds the model, runs the real input pipeline (augmentation included) on
faces from the embedded sample, warms up (graph tracing, first steps), then times ``--steps``
training steps of batch ``--batch-size`` with a monotonic clock. Run it on an otherwise idle
machine: the figures are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


FER_TRAIN_IMAGES = 28709


def measure_throughput(model_name: str, precision: str, *, steps: int, warmup: int, batch_size: int) -> dict:
    from .._tf import keras as _keras
    from .._tf import tf as _tf
    from ..data import load_fer
    from ..data.pipeline import Augment, make_dataset
    from ..models import create_model
    from .config import TrainConfig
    from .train import compile_model

    keras, tf = _keras(), _tf()
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(0)
        split = load_fer(None)["train"]
        model = compile_model(create_model(model_name), TrainConfig(model=model_name))
        ds = make_dataset(split.x, split.targets, batch_size=batch_size, training=True, augment=Augment()).repeat()
        it = iter(ds)
        step = model.make_train_function()
        for _ in range(warmup):
            step(it)
        tf.random.uniform([1]).numpy()
        t0 = time.perf_counter_ns()
        for _ in range(steps):
            logs = step(it)
        float(logs["loss"])  # wait for the last step
        seconds = (time.perf_counter_ns() - t0) / 1e9
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ips = steps * batch_size / seconds
    return {"model": model_name, "precision": precision, "batch_size": batch_size, "steps": steps,
            "images_per_s": round(ips, 1), "s_per_epoch": round(FER_TRAIN_IMAGES / ips, 1),
            "ms_per_step": round(1000 * seconds / steps, 1)}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from .._tf import tf as _tf

    return {"cpu": cpu, "cores": os.cpu_count(), "tensorflow": _tf().__version__,
            "gpu": [d.name for d in _tf().config.list_physical_devices("GPU")]}


def markdown(rows: list[dict]) -> str:
    by = {(r["model"], r["precision"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    precisions = list(dict.fromkeys(r["precision"] for r in rows))
    head = "| model | " + " | ".join(f"{p} img/s | {p} s/epoch" for p in precisions) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(precisions))]
    for m in models:
        cells = []
        for p in precisions:
            r = by.get((m, p))
            cells += [f"{r['images_per_s']:.0f}", f"{r['s_per_epoch']:.0f}"] if r else ["-", "-"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    from ..models import model_names, resolve_name

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    ap.add_argument("--precisions", default="float32,mixed_bfloat16")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=None, help="write the rows and machine info here")
    a = ap.parse_args(argv)
    names = model_names() if a.models == "all" else [resolve_name(n) for n in a.models.split(",")]
    rows = []
    for name in names:
        for precision in a.precisions.split(","):
            r = measure_throughput(name, precision, steps=a.steps, warmup=a.warmup, batch_size=a.batch_size)
            print(json.dumps(r), flush=True)
            rows.append(r)
    info = machine()
    print(f"\n{info['cpu']}, {info['cores']} cores, TensorFlow {info['tensorflow']}\n")
    print(markdown(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
