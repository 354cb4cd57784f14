"""The ``edgefer bench`` stage: a :class:`BenchConfig` over models → records → table and files.

    from edge_fer.device_bench.suite import BenchConfig, run_bench, write_outputs
    records = run_bench(["cnn_int8"], BenchConfig(threads=(1, 2), min_seconds=0.5))
    write_outputs(records, json_out=Path("cpu.json"))

Every default of the stage is written once, in :class:`BenchConfig`; the CLI's options read them.
The measurement itself is :func:`edge_fer.device_bench.bench.bench_models` (this machine, a GPU)
and :func:`~edge_fer.device_bench.bench.bench_fleet` (Raspberry Pis over SSH).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

DEVICES = ("cpu", "gpu", "rpi")
QUICK = "≥ 10 runs after 1 warm-up run, no throughput batch"  # --quick's timing (bench.QUICK_TIMING)
SPLITS = ("train", "validation", "test")


def _ints(value, option: str) -> tuple[int, ...]:
    if isinstance(value, str):
        try:
            return tuple(int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ConfigError(f"{option}: expected comma-separated integers, got {value!r}") from None
    return tuple(int(v) for v in value)


@dataclass(frozen=True)
class BenchConfig:
    device: str = "cpu"  # cpu: this machine (XNNPACK on); gpu: a GPU accelerator or delegate; rpi: Pis over SSH
    threads: tuple[int, ...] = (1, 2)  # thread counts to sweep ("1,2,4" accepted)
    data: str | None = None  # labelled faces; None: each model's own training data, else the embedded sample
    split: str = "test"
    xnnpack: bool = True  # TFLite's XNNPACK delegate on the CPU
    min_seconds: float | None = None  # minimum timed duration per model and thread count (after the warm-up
    # runs); None: 2 s, or 0 with quick (its 10 runs are the timing)
    quick: bool = False  # a rough latency (QUICK), accuracy as usual: for a slow device
    input_scale: tuple[float, float] | None = None  # models without edge_fer metadata: pixel × scale + offset
    input_size: int | None = None
    classes: tuple[str, ...] | None = None
    class_map: tuple[str, ...] = ()  # another dataset's classes: THEIRS=OURS
    drop_classes: tuple[str, ...] = ()
    allow_cpu_fallback: bool = False  # gpu: ops the GPU cannot run go to the CPU (recorded)
    delegate: str | None = None  # gpu: a TFLite GPU delegate library
    hosts: tuple[str, ...] = ()  # rpi: user@address; () = EDGEFER_RPI_HOST or [rpi] host in edgefer.toml
    port: int = 22
    identity: str | None = None
    remote_python: str = "python3"
    known_hosts: str | None = None
    trust_new_host: bool = False

    def __post_init__(self) -> None:
        raw = self.threads
        threads = _ints(raw, "--threads")
        if not threads or any(t < 1 for t in threads):
            shown = raw if isinstance(raw, str) else ",".join(map(str, raw))
            raise ConfigError(f"--threads: thread counts must be ≥ 1, got {shown!r}; e.g. --threads 1,2,4")
        object.__setattr__(self, "threads", threads)
        for name in ("class_map", "drop_classes", "hosts"):
            object.__setattr__(self, name, tuple(getattr(self, name) or ()))
        if self.device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        from .script import resolve_min_seconds  # here, not at the top: every edgefer command imports this module

        object.__setattr__(self, "min_seconds", resolve_min_seconds(self.min_seconds, self.quick))
        if not (math.isfinite(self.min_seconds) and self.min_seconds >= 0):
            raise ConfigError(f"--min-seconds: {self.min_seconds} is not a finite number ≥ 0")
        if self.input_scale is not None and not isinstance(self.input_scale, tuple):
            from .bench import parse_input_scale

            object.__setattr__(self, "input_scale", tuple(parse_input_scale(self.input_scale)))
        if self.classes is not None and not isinstance(self.classes, tuple):
            from .bench import parse_classes

            object.__setattr__(self, "classes", tuple(parse_classes(self.classes)))
        if (self.class_map or self.drop_classes) and self.data in (None, "embedded"):
            raise ConfigError("--class-map and --drop-class map the classes of another dataset given with --data, "
                              "e.g. --data ckplus48.npz --drop-class contempt")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """The settings every run prints before it measures (as TFLite's benchmark_model does)."""
        return (f"device {self.device}; threads {list(self.threads) if self.device != 'gpu' else '-'}; "
                f"XNNPACK {'off' if not self.xnnpack or self.device == 'gpu' else 'on'}; "
                f"≥ {self.min_seconds:g} s and {QUICK if self.quick else '≥ 200 runs after 50 warm-up runs'}; "
                f"split {self.split}")

    def _measure_kwargs(self, on_record) -> dict:
        feed = {"input_scale": self.input_scale, "input_size": self.input_size,
                "classes": list(self.classes) if self.classes is not None else None}
        mapping = ({"class_map": list(self.class_map), "drop_classes": list(self.drop_classes)}
                   if self.class_map or self.drop_classes else {})
        return {"threads": list(self.threads), "data": self.data, "split": self.split, "xnnpack": self.xnnpack,
                "min_seconds": self.min_seconds, "quick": self.quick, "on_record": on_record, **mapping, **feed}


def rpi_hosts(config: BenchConfig) -> list[str]:
    """The Pis to measure on: ``hosts``, else $EDGEFER_RPI_HOST (comma-separated) / [rpi] host in edgefer.toml."""
    from ..settings import setting

    hosts = list(config.hosts)
    if not hosts:
        value, _ = setting("host", None, section="rpi")
        hosts = value if isinstance(value, list) else [h.strip() for h in str(value).split(",") if h.strip()] \
            if value else []
    if not hosts:
        raise ConfigError("no Raspberry Pi address: pass --host user@pi, set EDGEFER_RPI_HOST, "
                          "or add [rpi] host = \"user@pi\" to edgefer.toml")
    return hosts


def run_bench(models, config: BenchConfig, *, shipped: bool = False, on_record=None, on_probe=None) -> list[dict]:
    """One record per model × device × thread count. ``shipped`` adds every shipped model's files.

    Ctrl-C raises :class:`~edge_fer.device_bench.bench.BenchInterrupted` whose ``records`` hold what was
    measured, then an ``interrupted`` record for what was not."""
    from .bench import BenchInterrupted, bench_fleet, bench_models, shipped_files

    models = [*map(str, models), *(map(str, shipped_files()) if shipped else ())]
    measured = []

    def record(r):
        measured.append(r)
        if on_record:
            on_record(r)

    common = config._measure_kwargs(record)
    try:
        if config.device != "rpi":
            return bench_models(models, device=config.device, allow_cpu_fallback=config.allow_cpu_fallback,
                                delegate=config.delegate, **common)
        return bench_fleet(models, rpi_hosts(config), port=config.port, identity=config.identity,
                           remote_python=config.remote_python, known_hosts=config.known_hosts,
                           trust_new_host=config.trust_new_host, on_probe=on_probe, **common)
    except BenchInterrupted:
        raise
    except KeyboardInterrupt:
        raise BenchInterrupted([*measured, {
            "model": ", ".join(models) or "(default models)", "device": config.device, "status": "interrupted",
            "reason": "not measured: the bench was interrupted (Ctrl-C)", "size_bytes": None}]) from None


def write_outputs(records: list[dict], json_out: Path | None = None, out: Path | None = None) -> list[Path]:
    """``json_out``: the records; ``out``: bench.json, the comparison table and the Pareto plot (when a
    record is ok). Returns the files written, bench.json / the records file first."""
    from ..runs import write_json

    written = []
    if json_out:
        write_json(json_out, records)
        written.append(Path(json_out))
    if out and any(r["status"] == "ok" for r in records):
        from ..report.bench_compare import compare_bench

        out = Path(out)
        write_json(out / "bench.json", records)
        result = compare_bench([out / "bench.json"], out=out)
        written += [out / "bench.json", *map(Path, result["outputs"])]
    return written


def record_line(r: dict) -> str:
    """One record as the progress line the CLI prints while measuring."""
    where = f"{r['host']}: " if r.get("host") else ""
    if r["status"] != "ok":
        return f"  {where}{r['model']}: {r['status']}: {r['reason']}"
    gpu = r.get("gpu") or {}
    accel = (f" on {gpu.get('adapter') or gpu.get('providers') or gpu.get('delegate')} [{gpu['label']}"
             f"{'' if gpu.get('fully_accelerated') in (True, None) else ', NOT fully accelerated'}]") if gpu else ""
    quality = (f"acc {r['accuracy']:.4f} on {r['data']}" if r["accuracy"] is not None
               else "accuracy not measured (no edge_fer metadata; see --classes, --input-scale)")
    return f"  {where}{r['model']} × {r['threads']} thread(s){accel}: p50 {r['latency']['p50_ms']:.3f} ms, {quality}"


def machine_line(records: list[dict]) -> str | None:
    """The machine and runtime the first measured record ran on; None when nothing ran."""
    ok = [r for r in records if r["status"] == "ok"]
    if not ok:
        return None
    m = ok[0]["machine"]
    return f"{m.get('cpu', m['machine'])}, {m['cores']} cores; {ok[0]['runtime']} {ok[0]['runtime_version']}"


def probe_line(host: str, info: dict) -> str:
    """What a Pi said about itself before it is measured."""
    return (f"{host}: {info.get('model') or 'unknown model'}, {info.get('arch')}, {info.get('cores')} cores, "
            f"governor {info.get('governor') or '?'}, {info.get('temp') or 'no vcgencmd'}, "
            f"Python {info.get('python') or '?'}, "
            + (f"edge_fer {info['edge_fer']} installed" if info.get("edge_fer") else "no edge_fer installed"))
