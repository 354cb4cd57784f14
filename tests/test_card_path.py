"""What the model card's path — train, qat, export --int8, ONNX included — rests on: ORT's exact int8 mode
(``EXACT_INT8``, set on x86 CPUs without VNNI) loads every ONNX model edge_fer writes, however its
DequantizeLinear nodes share their constants. The path itself runs on the full-block MobileNetV3 as the
README's commands (tests/test_readme.py, ``_check_the_card_path``).

    .venv/bin/python -m pytest -p no:xdist -q tests/test_card_path.py
"""

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_fer.runtime import onnx_model as device_runner
from edge_fer.runtime.onnx_model import EXACT_INT8, exact_int8_needed, ort_session, unshare_initializers

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "edge_fer" / "zoo" / "shipped").glob("*.onnx"))
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86")


def _session(model, exact: bool, optimize: bool = True):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 4
    if exact:
        so.add_session_config_entry(EXACT_INT8, "1")
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def _shared_constant_model():
    """A QDQ graph as tf2onnx writes them: one int8 constant (values beyond ±64, so ORT rewrites it as uint8)
    and its zero point read by two DequantizeLinear nodes, and one DequantizeLinear read by two MatMuls."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.integers(-127, 128, (8, 4)).astype(np.int8), "w"),
             numpy_helper.from_array(rng.integers(-127, 128, (8, 4)).astype(np.int8), "v"),
             numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
             numpy_helper.from_array(np.array(0.02, np.float32), "v_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
             numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(-3, np.int8), "x_zp")]
    dq = lambda i, o: helper.make_node("DequantizeLinear", i, [o], name=f"dq_{o}")  # noqa: E731
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["xq"], name="q_x"),
             dq(["xq", "x_scale", "x_zp"], "xd"),
             dq(["w", "w_scale", "w_zp"], "w1"),
             dq(["w", "w_scale", "w_zp"], "w2"),  # the same constant, a second node
             dq(["v", "v_scale", "w_zp"], "v1"),  # the same zero point
             helper.make_node("MatMul", ["xd", "w1"], ["a"]),
             helper.make_node("MatMul", ["xd", "w2"], ["b"]),
             helper.make_node("MatMul", ["xd", "v1"], ["c"]),
             helper.make_node("MatMul", ["xd", "v1"], ["d"]),  # one node, two readers
             helper.make_node("Sum", ["a", "b", "c", "d"], ["y"])]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dequantize_nodes_sharing_a_constant_load_in_exact_int8_mode():
    """ORT 1.32 rewrites each DequantizeLinear's int8 constant and zero point under the same new name, after
    splitting a node with several readers into one per reader: a shared one cannot load in EXACT_INT8 mode.
    unshare_initializers makes every such node own its constant and zero point, and nothing else changes."""
    model = _shared_constant_model()
    if X86:  # elsewhere ORT has no such rewrite
        with pytest.raises(Exception, match="replace the existing tensor"):
            _session(model, exact=True)
    x = np.random.default_rng(1).uniform(-3, 3, (2, 8)).astype(np.float32)
    reference = _session(model, exact=False, optimize=False).run(None, {"x": x})[0]  # DQ → float MatMul as written

    assert unshare_initializers(model)
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] != "xq"]
    assert len(dqs) == 4
    for i in (0, 2):  # data and zero point: one node each
        assert len({n.input[i] for n in dqs}) == 4
    assert sorted(n.input[1] for n in dqs) == ["v_scale", "v_scale", "w_scale", "w_scale"]  # scales may stay shared
    readers = [name for n in model.graph.node for name in n.input]
    assert all(readers.count(n.output[0]) == 1 for n in dqs)
    exact = _session(model, exact=True).run(None, {"x": x})[0]
    np.testing.assert_allclose(exact, reference, rtol=1e-5, atol=1e-5)
    assert not unshare_initializers(model)  # nothing left to do


@pytest.mark.parametrize("model", SHIPPED, ids=lambda p: p.name)
def test_shipped_onnx_loads_in_exact_int8_mode_unchanged(model):
    """The shipped ONNX files load as shipped in EXACT_INT8 mode and give the same outputs as the same model
    rewritten by unshare_initializers (what edge_fer's runners fall back to for older files)."""
    import onnx

    with np.load(ROOT / "edge_fer" / "data" / "sample" / "fer2013_sample.npz") as d:
        faces = d["pixels"][:200]
    session = _session(model, exact=True)
    x = faces.astype(np.float32)[..., None]
    shipped = session.run(None, {session.get_inputs()[0].name: x})[0]
    proto = onnx.load(str(model))
    unshare_initializers(proto)
    rewritten = _session(proto, exact=True)
    np.testing.assert_array_equal(rewritten.run(None, {rewritten.get_inputs()[0].name: x})[0], shipped)


def test_exact_int8_only_on_x86_without_vnni(monkeypatch):
    """ORT acts on EXACT_INT8 on every x86 CPU with AVX2, VNNI or not (rewriting int8 constants that VNNI's
    exact kernels do not need rewritten): edge_fer sets it on x86 CPUs without AVX-512 VNNI only."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__ as features
    monkeypatch.setattr(device_runner.platform, "machine", lambda: "aarch64")
    assert not exact_int8_needed()
    monkeypatch.setattr(device_runner.platform, "machine", lambda: "x86_64")
    monkeypatch.setitem(features, "AVX512VNNI", True)
    assert not exact_int8_needed()
    monkeypatch.setitem(features, "AVX512VNNI", False)
    assert exact_int8_needed()


def test_bench_record_says_whether_exact_int8_was_set(tmp_path):
    """An ONNX model's bench record (what `edgefer bench` keeps) says whether the ONNX session used EXACT_INT8, and the
    session was opened so."""
    model = next(p for p in SHIPPED if p.name.startswith("cnn"))
    faces = tmp_path / "faces.npz"
    np.savez(faces, x=np.random.default_rng(0).integers(0, 256, (4, 48, 48)).astype(np.uint8), y=np.zeros(4, int))
    from edge_fer.runtime.standalone import build_device_script

    out = subprocess.run([sys.executable, str(build_device_script(tmp_path)), "--model", str(model),
                          "--data", str(faces), "--min-runs", "3", "--min-seconds", "0", "--warmup", "1",
                          "--throughput-batch", "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout.strip().splitlines()[-1])
    assert record["exact_int8"] is exact_int8_needed()
    import onnxruntime as ort

    assert ort_session(model, ort.SessionOptions(), ["CPUExecutionProvider"]).exact_int8 is exact_int8_needed()


def test_a_runtime_error_is_one_whole_line(tmp_path):
    """ORT's message comes whole and on one line, not cut at 160 characters mid-word."""
    from onnx import TensorProto, helper

    from edge_fer.errors import EdgeFerError
    from edge_fer.runtime import open_model

    graph = helper.make_graph([helper.make_node("NoSuchOperatorAnywhere", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 48, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 7])])
    path = tmp_path / ("a_model_with_a_long_name_" * 3 + ".onnx")
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    with pytest.raises(EdgeFerError) as e:
        open_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: not a loadable ONNX model (") and message.endswith(")")
    assert "\n" not in message and "NoSuchOperatorAnywhere with domain_version of 17" in message
