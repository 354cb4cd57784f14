"""Training on several devices or machines with TensorFlow's own ``tf.distribute`` strategies.

    from edge_fer.training.distribute import make_distribution
    dist = make_distribution("multiworker")      # the cluster comes from TF_CONFIG
    with dist.scope():
        model = ...                              # model, optimizer, metrics, tf.data pipeline
    if dist.is_chief:
        ...                                      # only the chief writes the run directory

Strategies (``--strategy``):

- ``none``: the default device, as without a strategy;
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the visible GPUs, or the devices named by
  ``--devices`` (e.g. ``GPU:0,GPU:1``);
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the cluster in ``TF_CONFIG``;
  the chief (task ``chief``, else worker 0) writes the run directory, the others only log;
- ``auto``: ``mirrored`` when more than one GPU is visible, else ``none``.

``--batch-size`` stays the global batch; the learning rate is multiplied by the replica count
only with ``--scale-lr``. MultiWorkerMirroredStrategy must be made before TensorFlow runs
anything else in the process, so :func:`make_distribution` comes first in a training.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from .._tf import tf as _tf
from ..errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "none", "mirrored", "multiworker")
WORKER_TIMEOUT_ENV = "EDGEFER_WORKER_TIMEOUT"
DEFAULT_WORKER_TIMEOUT = 300.0  # seconds to wait for every worker of a cluster to come up


def worker_timeout(value: float | None = None) -> float:
    """The wait for the cluster: ``value``, else $EDGEFER_WORKER_TIMEOUT, else 300 s."""
    if value is None:
        raw = os.environ.get(WORKER_TIMEOUT_ENV)
        if raw is None:
            return DEFAULT_WORKER_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"${WORKER_TIMEOUT_ENV}={raw!r} is not a number of seconds; set e.g. "
                              f"{WORKER_TIMEOUT_ENV}=300") from None
    if not value > 0:
        raise ConfigError(f"the worker timeout must be > 0 seconds, got {value}; e.g. --worker-timeout 300")
    return float(value)


def read_tf_config(raw: str | None = None) -> dict:
    """``TF_CONFIG`` parsed and checked: ``{"cluster": {"worker": [...], "chief"?: [...]}, "task": {...}}``."""
    raw = os.environ.get("TF_CONFIG") if raw is None else raw
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not raw:
        raise ConfigError(f"--strategy multiworker needs TF_CONFIG describing the cluster and this task; set e.g. {example}")
    try:
        conf = json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not JSON ({e}): {raw[:80]!r}; set e.g. {example}") from None
    cluster = conf.get("cluster") if isinstance(conf, dict) else None
    task = conf.get("task") if isinstance(conf, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise ConfigError(f"TF_CONFIG has no cluster with workers (got {raw[:80]!r}); set e.g. {example}")
    unknown = set(cluster) - {"chief", "worker", "evaluator"}
    if unknown:
        raise ConfigError(f"TF_CONFIG cluster has task types {sorted(unknown)}; MultiWorkerMirroredStrategy takes "
                          "chief and worker only")
    for kind, hosts in cluster.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise ConfigError(f"TF_CONFIG cluster {kind!r} must be a list of \"host:port\" strings, got {hosts!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ConfigError(f"TF_CONFIG task must name this process, one of the cluster's types "
                          f"{sorted(cluster)} with an index, e.g. {{\"type\": \"worker\", \"index\": 0}}; got {task!r}")
    index = task.get("index", 0)
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG task index {index!r} is not in the cluster's {task['type']!r} list of "
                          f"{len(cluster[task['type']])}; use 0 … {len(cluster[task['type']]) - 1}")
    return conf


def is_chief(conf: dict) -> bool:
    """The chief: task ``chief``, or worker 0 of a cluster without one (TensorFlow's rule)."""
    task, cluster = conf["task"], conf["cluster"]
    return task["type"] == "chief" or (task["type"] == "worker" and task.get("index", 0) == 0 and "chief" not in cluster)


@dataclass
class Distribution:
    """A resolved strategy and this process's place in it."""

    name: str  # none | mirrored | multiworker
    strategy: object  # tf.distribute.Strategy
    is_chief: bool = True
    task: str = "local"
    workers: int = 1
    devices: list[str] = field(default_factory=list)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def scope(self):
        return self.strategy.scope()

    def describe(self) -> dict:
        return {"strategy": self.name, "replicas": self.replicas, "workers": self.workers,
                "devices": self.devices, "task": self.task}

    def agree(self, value: int, what: str) -> None:
        """Every worker holds the same ``value`` (e.g. the epoch to resume from), or a ClusterError on all."""
        if self.workers <= 1:
            return
        tf = _tf()
        v = tf.constant([float(value), float(value) ** 2, 1.0])
        total = self.strategy.reduce("SUM", self.strategy.run(lambda: tf.identity(v)), axis=None).numpy()
        s, s2, n = (float(t) for t in total)
        if abs(s2 * n - s * s) > 1e-6 * max(1.0, s * s):
            raise ClusterError(
                f"the workers disagree on {what} (this worker, {self.task}: {value}; mean {s / n:g}); every worker must "
                "see the same run directory: put --out on a filesystem shared by all hosts, at the same path")

    @contextmanager
    def writable(self, path):
        """A temporary path to save to: on the chief it replaces ``path`` when the block succeeds; on
        other workers it is thrown away (they save too, as TensorFlow asks of distributed saving)."""
        if self.is_chief:
            from ..runs import atomic_path

            with atomic_path(path) as tmp:
                yield tmp
            return
        tmp = tempfile.mkdtemp(prefix="edgefer-worker-")
        try:
            yield os.path.join(tmp, os.path.basename(str(path)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _check_devices(tf, devices: list[str]) -> list[str]:
    known = {d.name.split("device:")[-1].upper(): d.name for d in tf.config.list_logical_devices()}
    out = []
    for d in devices:
        key = d.split("device:")[-1].lstrip("/").upper()
        if key not in known:
            raise ConfigError(f"--devices: no device {d!r} here; visible: {', '.join(sorted(known)) or 'none'} "
                              "(e.g. --devices GPU:0,GPU:1)")
        out.append(known[key])
    return out


def make_distribution(name: str = "auto", devices: list[str] | tuple[str, ...] | None = None,
                      timeout: float | None = None) -> Distribution:
    """The strategy named by ``--strategy``. ``timeout``: seconds to wait for every worker of a
    multi-worker cluster (default $EDGEFER_WORKER_TIMEOUT, else 300)."""
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    devices = list(devices or [])
    if devices and name not in ("mirrored", "auto"):
        raise ConfigError(f"--devices applies to --strategy mirrored only (got --strategy {name}); drop --devices "
                          "or use --strategy mirrored")
    if name == "multiworker":
        return _multiworker(worker_timeout(timeout))
    tf = _tf()
    if name == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        name = "mirrored" if len(gpus) > 1 or devices else "none"
    if name == "none":
        return Distribution("none", tf.distribute.get_strategy())
    devices = _check_devices(tf, devices) if devices else []
    strategy = _mirrored_strategy(tf, devices or None)
    used = list(strategy.extended.worker_devices)
    if len(used) == 1:
        log.warning("mirrored strategy over one device (%s): no GPU visible and no --devices", used[0])
    return Distribution("mirrored", strategy, devices=used)


def _mirrored_strategy(tf, devices):
    """A MirroredStrategy with collective keys of its own in this process.

    TensorFlow internals: every MirroredStrategy numbers its all-reduces from the same keys (group 1,
    instance 100 …), and the runtime keeps each key's tensor shape for the life of the process. A
    second strategy in one process (``train`` then ``qat``, or ``zoo build``) whose gradients differ
    in size from the first's fails at its first step ("Shape mismatch in the collective instance 100",
    tensorflow#62790). TensorFlow's own tests give each strategy its own key range by raising the
    class's ``_collective_key_base``; so does this.
    """
    cls = tf.distribute.MirroredStrategy
    if hasattr(cls, "_collective_key_base"):
        cls._collective_key_base += 100_000
    return cls(devices=devices)


def _multiworker(timeout: float) -> Distribution:
    conf = read_tf_config()
    tf = _tf()

    task = f"{conf['task']['type']} {conf['task'].get('index', 0)}"
    workers = sum(len(conf["cluster"].get(k, [])) for k in ("chief", "worker"))
    log.info("%s: waiting up to %.0f s for %d workers (%s)", task, timeout, workers,
             ", ".join(h for k in ("chief", "worker") for h in conf["cluster"].get(k, [])))
    _wait_for_peers(conf, task, timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    return Distribution("multiworker", strategy, is_chief=is_chief(conf), task=task, workers=workers,
                        devices=list(strategy.extended.worker_devices))


def _address(host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    return host.strip("[]"), int(port)


def _wait_for_peers(conf: dict, task: str, timeout: float) -> None:
    """Return once every other worker of the cluster answers on its port; a ClusterError after ``timeout``.

    TensorFlow's own wait for the cluster (when the strategy is made) has no deadline and holds the
    interpreter, so it is entered only once every peer is known to be up. Until then this worker
    listens on its own port, so that the peers see it in the same way.
    """
    kinds = [k for k in ("chief", "worker") if k in conf["cluster"]]
    me = conf["cluster"][conf["task"]["type"]][conf["task"].get("index", 0)]
    peers = [h for k in kinds for h in conf["cluster"][k] if h != me]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(("", _address(me)[1]))
        listener.listen(64)
    except OSError as e:
        listener.close()
        raise ClusterError(f"{task}: cannot listen on {me}, this task's address in TF_CONFIG ({e.strerror}); free "
                           "the port or give this task another one in every worker's TF_CONFIG") from None
    deadline = time.monotonic() + timeout
    waiting = list(peers)
    try:
        while waiting:
            try:
                with socket.create_connection(_address(waiting[0]), timeout=1.0):
                    waiting.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(_lost(task, conf, timeout, waiting))
            time.sleep(0.2)
    finally:
        listener.close()


def _lost(task: str, conf: dict, timeout: float, missing: list[str]) -> str:
    return (f"{task}: no answer from {', '.join(missing)} (TF_CONFIG's cluster) within {timeout:.0f} s; start the same "
            f"command on each host with its own task in TF_CONFIG, or wait longer with --worker-timeout "
            f"(${WORKER_TIMEOUT_ENV})")


def lost_worker(dist: Distribution, epoch: int) -> ClusterError:
    """The error for a worker lost while training (its collectives failed)."""
    return ClusterError(f"{dist.task}: a worker of the cluster stopped answering while training; run the same command "
                        f"on every worker again: it resumes from epoch {epoch}")


def scaled_lr(lr: float, replicas: int, scale: bool) -> float:
    """The learning rate used: ``lr`` × replicas with ``--scale-lr`` (the linear scaling rule), else ``lr``."""
    return lr * replicas if scale else lr
