"""Training under tf.distribute on CPUs: MirroredStrategy over two logical CPU devices and
MultiWorkerMirroredStrategy with two worker processes on 127.0.0.1, each in its own process (the
devices and the cluster must be set before TensorFlow starts).

The weight comparisons use ``probe``, a small model the worker script registers: convolution,
pooling and a dense layer, no batch normalisation and no dropout. Batch normalisation normalises each
replica's share of the batch, and dropout draws per replica, so models with them match a
single-device run only statistically; without them the global-batch gradient is the same sum in
another order.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error, pick_rows, write_subset_npz

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# `python WORKER ARGS` = `edgefer ARGS` with $PROBE_CPUS logical CPU devices and the probe model.
WORKER = '''
import os
from edge_fer._tf import keras, tf

tf_ = tf()
cpus = int(os.environ.get("PROBE_CPUS", "1"))
if cpus > 1:
    tf_.config.set_logical_device_configuration(tf_.config.list_physical_devices("CPU")[0],
                                                [tf_.config.LogicalDeviceConfiguration()] * cpus)
from edge_fer.models.registry import register_model


@register_model("probe", description="test model: conv, pool, dense; no batch norm, no dropout")
def build_probe(input_shape=(48, 48, 1), classes=7, width=1.0, weights=None):
    K = keras()
    L = K.layers
    inputs = K.Input(shape=tuple(input_shape), name="image")
    x = L.Rescaling(1 / 255.0, name="preprocess")(inputs)
    x = L.Conv2D(8, 3, strides=2, activation="relu", name="conv")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(classes, name="logits")(x)
    return K.Model(inputs, L.Activation("softmax", dtype="float32", name="predictions")(x), name="probe")


from edge_fer.cli import main

main()
'''

# Weights after training: a distributed run sums the same per-example gradients in another order
# (float32), and Adam's first steps divide by |gradient|, so a weight whose gradient is near zero may
# move by up to 2·lr differently. The bound is on the whole: the difference between the runs must be
# under 1% of how far training moved the weights, and the validation accuracy within one face in 100.
REL_TOL = 1e-4
VAL_TOL = 0.01


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("worker") / "worker.py"
    p.write_text(WORKER)
    return p


@pytest.fixture(scope="module")
def faces(fer, tmp_path_factory) -> Path:
    return write_subset_npz(tmp_path_factory.mktemp("faces") / "faces.npz", fer, pick_rows(fer, 400))


@pytest.fixture(scope="module")
def single(worker, faces, tmp_path_factory) -> Path:
    """An uninterrupted 3-epoch one-device run: what a killed and resumed multi-worker run must end as."""
    out = tmp_path_factory.mktemp("single") / "single"
    r = subprocess.run([sys.executable, str(worker), *_train_args(faces, out, 3, "--strategy", "none")],
                       env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def w0(worker, faces, tmp_path_factory) -> list[np.ndarray]:
    return _initial_weights(faces, worker, tmp_path_factory.mktemp("w0"))


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "EDGEFER_WORKER_TIMEOUT")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **{k: str(v) for k, v in extra.items()}}


def _train_args(faces, out, epochs, *extra):
    return ["train", "--model", "probe", "--data", str(faces), "--epochs", str(epochs), "--batch-size", "32",
            "--no-augment", "--patience", "0", "--out", str(out), *extra]


def _weights(run_dir: Path) -> list[np.ndarray]:
    from edge_fer.models import load_model

    (last,) = run_dir.glob("last-e*.keras")
    return [np.asarray(w) for w in load_model(last, compile=False).get_weights()]


def _initial_weights(faces, worker, tmp_path) -> list[np.ndarray]:
    """The probe's weights at step 0 (seed 0): zero epochs are not a run, so read them from a script."""
    code = WORKER.replace("main()\n", "") + (
        "import numpy as np, sys\nfrom edge_fer.models import create_model\n"
        "keras().utils.set_random_seed(0)\n"
        "np.savez(sys.argv[1], *create_model('probe').get_weights())\n")
    script = tmp_path / "init.py"
    script.write_text(code)
    subprocess.run([sys.executable, str(script), str(tmp_path / "w0.npz")], env=_env(), check=True, timeout=300)
    with np.load(tmp_path / "w0.npz") as d:
        return [d[f"arr_{i}"] for i in range(len(d.files))]


def _assert_same_training(a: Path, b: Path, w0: list[np.ndarray]) -> None:
    wa, wb = _weights(a), _weights(b)
    moved = np.sqrt(sum(float(np.sum((x - x0) ** 2)) for x, x0 in zip(wa, w0)))
    differ = np.sqrt(sum(float(np.sum((x - y) ** 2)) for x, y in zip(wa, wb)))
    print(f"{a.name} vs {b.name}: weights moved {moved:.4g} from init, differ by {differ:.3g}; "
          f"max |Δw| {max(float(np.abs(x - y).max()) for x, y in zip(wa, wb)):.3g}")
    assert moved > 0.1, moved  # training did move the weights
    assert differ < REL_TOL * moved, (differ, moved)
    va = json.loads((a / "state.json").read_text())["history"][-1]["val_accuracy"]
    vb = json.loads((b / "state.json").read_text())["history"][-1]["val_accuracy"]
    assert abs(va - vb) <= VAL_TOL, (va, vb)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _tf_config(ports, index) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _start_workers(worker, faces, out, ports, logs, epochs=3) -> list[subprocess.Popen]:
    """The same `edgefer train --strategy multiworker` once per worker of a loopback TF_CONFIG."""
    return [subprocess.Popen([sys.executable, str(worker), *_train_args(faces, out, epochs, "--strategy", "multiworker")],
                             env=_env(TF_CONFIG=_tf_config(ports, i), EDGEFER_WORKER_TIMEOUT=240),
                             stdout=subprocess.DEVNULL, stderr=open(log, "a")) for i, log in enumerate(logs)]


def _wait_for_epoch(state_file: Path, epoch: int, procs, logs, timeout: float = 480) -> None:
    """Return once the chief's state.json records ``epoch``; every worker must still be running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["epoch"] >= epoch:
            return
        for p, log in zip(procs, logs):
            assert p.poll() is None, log.read_text()[-3000:]
        time.sleep(0.02)
    pytest.fail(f"no epoch {epoch} in {state_file} after {timeout} s")


def _resume_and_check(worker, faces, out, ports, logs, resumed_at, first_history, single, w0) -> None:
    """The same commands again: the run resumes at ``resumed_at`` and ends as the uninterrupted one-device run."""
    procs = _start_workers(worker, faces, out, ports, logs)
    for p, log in zip(procs, logs):
        assert p.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert f"resuming {out} from epoch {resumed_at} of 3" in logs[0].read_text()
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "finished" and [h["epoch"] for h in state["history"]] == [1, 2, 3]
    assert state["history"][:resumed_at] == first_history
    dist = json.loads((out / "config.json").read_text())["distribute"]
    assert dist["strategy"] == "multiworker" and dist["workers"] == 2 and dist["replicas"] == 2
    assert dist["task"] == "worker 0"  # the chief wrote it
    _assert_same_training(single, out, w0)


def test_mirrored_two_cpus_matches_one_device(worker, faces, w0, tmp_path):
    """MirroredStrategy over two logical CPUs trains the weights one device trains on the same global batch."""
    one, two = tmp_path / "one", tmp_path / "two"
    env = _env(PROBE_CPUS=2)
    for out, extra in ((one, ["--strategy", "none"]), (two, ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"])):
        r = subprocess.run([sys.executable, str(worker), *_train_args(faces, out, 2, *extra)], env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    dist = json.loads((two / "config.json").read_text())["distribute"]
    assert dist["strategy"] == "mirrored" and dist["replicas"] == 2 and dist["global_batch"] == 32
    assert dist["lr"] == 1e-3  # not rescaled without --scale-lr
    assert json.loads((one / "config.json").read_text())["distribute"]["replicas"] == 1
    _assert_same_training(one, two, w0)


def test_multiworker_kill_9_resumes_as_uninterrupted(worker, faces, single, w0, tmp_path):
    """Two workers on loopback with a real TF_CONFIG train 3 epochs; both are killed -9 after epoch 1; the
    same commands resume from the last finished epoch and end where an uninterrupted single-device run
    ends. Only the chief writes the run directory."""
    out, ports = tmp_path / "multi", _free_ports(2)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = _start_workers(worker, faces, out, ports, logs)
    state_file = out / "state.json"
    _wait_for_epoch(state_file, 1, procs, logs)
    for p in procs:  # stop both at once, then kill: the whole job dies mid-epoch
        p.send_signal(signal.SIGSTOP)
    killed_at = json.loads(state_file.read_text())["epoch"]
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert 1 <= killed_at < 3, killed_at
    _resume_and_check(worker, faces, out, ports, logs, killed_at, json.loads(state_file.read_text())["history"],
                      single, w0)


def test_multiworker_one_worker_killed(worker, faces, single, w0, tmp_path):
    """Worker 1 alone is killed -9 after epoch 1. The chief, left waiting in an all-reduce, has it aborted by
    TensorFlow (the coordination service's heartbeats, the strategy's health check behind them) and ends
    with one line saying to run the command again and the epoch it resumes from; the same commands resume
    from there and end where an uninterrupted one-device run ends."""
    out, ports = tmp_path / "multi", _free_ports(2)
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    chief, other = procs = _start_workers(worker, faces, out, ports, logs)
    state_file = out / "state.json"
    _wait_for_epoch(state_file, 1, procs, logs)
    other.send_signal(signal.SIGKILL)
    other.wait()
    t0 = time.time()
    assert chief.wait(timeout=300) == 2, logs[0].read_text()[-3000:]
    print(f"the chief stopped {time.time() - t0:.0f} s after worker 1 was killed")
    err = logs[0].read_text()
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    state = json.loads(state_file.read_text())
    assert 1 <= state["epoch"] < 3 and state["status"] != "finished", state
    assert "worker 0: a worker of the cluster stopped answering" in errors[0], errors
    assert f"resumes from epoch {state['epoch']}" in errors[0], errors
    _resume_and_check(worker, faces, out, ports, logs, state["epoch"], state["history"], single, w0)


def test_worker_that_never_comes_up_is_one_line(worker, faces, tmp_path):
    ports = _free_ports(2)  # nobody listens on the second
    t0 = time.time()
    r = subprocess.run([sys.executable, str(worker),
                        *_train_args(faces, tmp_path / "run", 1, "--strategy", "multiworker")],
                       env=_env(TF_CONFIG=_tf_config(ports, 0), EDGEFER_WORKER_TIMEOUT=5),
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert f"127.0.0.1:{ports[1]}" in errors[0] and "within 5 s" in errors[0] and "--worker-timeout" in errors[0]
    assert time.time() - t0 < 200
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.parametrize("tf_config, fragments", [
    (None, ["--strategy multiworker needs TF_CONFIG", '"task"']),
    ("{not json", ["TF_CONFIG is not JSON"]),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     ["task index 3", "use 0 … 0"]),
])
def test_multiworker_bad_tf_config_is_one_line(run, faces, monkeypatch, tf_config, fragments):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    r = run("train", "--model", "cnn", "--data", faces, "--epochs", "1", "--strategy", "multiworker")
    assert_user_error(r, *fragments)
    assert not Path("runs").exists()


def test_unknown_device_is_one_line(run, faces):
    r = run("train", "--model", "cnn", "--data", faces, "--epochs", "1", "--strategy", "mirrored",
            "--devices", "GPU:7")
    assert_user_error(r, "--devices: no device 'GPU:7' here", "CPU:0")


def test_mixed_float16_jit_and_scaled_lr_are_recorded(worker, faces, tmp_path):
    """--precision mixed_float16 (Keras loss scaling) with --jit (XLA), and with --scale-lr under two replicas,
    train and are recorded: the learning rate used is --lr × replicas. XLA cannot run a mirrored step over
    logical CPU devices: that is one line before anything is written."""
    runs = {"jit": ["--jit", "--strategy", "none"],
            "scaled": ["--scale-lr", "--strategy", "mirrored", "--devices", "CPU:0,CPU:1"]}
    for name, extra in runs.items():
        r = subprocess.run([sys.executable, str(worker), *_train_args(faces, tmp_path / name, 1, "--precision",
                                                                      "mixed_float16", "--lr", "0.002", *extra)],
                           env=_env(PROBE_CPUS=2), capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads((tmp_path / name / "state.json").read_text())["status"] == "finished"
    jit = json.loads((tmp_path / "jit" / "config.json").read_text())
    assert jit["precision"] == "mixed_float16" and jit["jit"] is True
    assert jit["distribute"] == {"strategy": "none", "replicas": 1, "workers": 1, "devices": [], "task": "local",
                                 "global_batch": 32, "lr": 0.002, "precision": "mixed_float16", "jit": True}
    scaled = json.loads((tmp_path / "scaled" / "config.json").read_text())
    assert scaled["scale_lr"] is True and scaled["lr"] == 0.002
    assert scaled["distribute"]["replicas"] == 2 and scaled["distribute"]["lr"] == pytest.approx(0.004)

    r = subprocess.run([sys.executable, str(worker), *_train_args(faces, tmp_path / "no", 1, "--jit", "--strategy",
                                                                  "mirrored", "--devices", "CPU:0,CPU:1")],
                       env=_env(PROBE_CPUS=2), capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "--jit with --strategy mirrored over CPU devices" in errors[0] and not (tmp_path / "no").exists()


# `python CHAIN CMD1 -- CMD2 -- ...`: edgefer commands one after the other in one process (one TensorFlow
# start), each as the CLI runs it; "EXIT i CODE" on stderr after each.
CHAIN = WORKER.replace("main()\n", """
import sys
cmds = [[]]
for a in sys.argv[1:]:
    cmds.append([]) if a == "--" else cmds[-1].append(a)
for i, cmd in enumerate(cmds):
    try:
        main(cmd)
    except SystemExit as e:
        print(f"EXIT {i} {e.code or 0}", file=sys.stderr, flush=True)
""")


@pytest.fixture(scope="module")
def learnable(fer, tmp_path_factory) -> Path:
    """3,000 Training, 400 PublicTest and 100 PrivateTest faces: enough for a model that is not constant."""
    return write_subset_npz(tmp_path_factory.mktemp("learnable") / "faces.npz", fer, pick_rows(fer, (3000, 400, 100), 1))


def test_mirrored_qat_exports_through_the_gate(learnable, tmp_path):
    """A cnn (with BatchNorm) trained, then QAT fine-tuned, under MirroredStrategy over two logical CPUs in one
    process gives an int8 TFLite export that passes the 98% gate. (The second strategy of a process once
    failed its first all-reduce: TensorFlow had kept the first one's shapes under the same collective keys.)
    The range warm-up takes 10 batches, not 50: each is an eager call, and the gate passes either way."""
    script = tmp_path / "chain.py"
    script.write_text(CHAIN)
    run_dir, out = tmp_path / "cnn", tmp_path / "exported"
    mirrored = ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"]
    r = subprocess.run([sys.executable, str(script),
                        "train", "--model", "cnn", "-o", "width=0.25", "--data", str(learnable), "--epochs", "3",
                        "--lr", "0.002", "--no-augment", "--out", str(run_dir), *mirrored, "--",
                        "qat", str(run_dir), "--epochs", "1", "--warmup-batches", "10", *mirrored, "--",
                        "export", str(run_dir), "--int8", "--formats", "tflite", "--out", str(out)],
                       env=_env(PROBE_CPUS=2), capture_output=True, text=True, timeout=900)
    codes = [line for line in r.stderr.splitlines() if line.startswith("EXIT ")]
    assert codes == ["EXIT 0 0", "EXIT 1 0", "EXIT 2 0"], r.stderr[-3000:]
    assert json.loads((run_dir / "config.json").read_text())["distribute"]["replicas"] == 2
    qat = json.loads((run_dir / "qat" / "qat.json").read_text())
    assert qat["distribute"]["strategy"] == "mirrored" and qat["distribute"]["replicas"] == 2, qat["distribute"]
    assert [h["epoch"] for h in qat["history"]] == [1]  # it fine-tuned over both replicas
    (sidecar,) = out.glob("*int8*.tflite.json")
    meta = json.loads(sidecar.read_text())
    assert meta["source"] == "qat" and meta["status"] == "ok" and meta["verification"]["agreement"] >= 0.98, meta
    # a model that learned (the majority class, happy, is 25% of PublicTest): agreement with a constant one is free
    assert meta["verification"]["accuracy"] > 0.3, meta["verification"]
