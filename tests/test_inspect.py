"""edgefer inspect (per-layer int8 debugger) and the export options it points to: --keep-float, int16x8.

The broken model: the trained cnn with one fc1 unit made dead (always 0 after its ReLU) and its weights into
the logits set huge. The float model ignores them, but the logits' int8 weight scales (one per class) grow
with them, so in int8 every other weight of the logits rounds to 0 — one layer's range forced wrong.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_user_error

THRESHOLD = "0.9"


@pytest.fixture(scope="module")
def broken(trained, tmp_path_factory) -> Path:
    from edge_fer.models import load_model

    dst = tmp_path_factory.mktemp("broken") / "cnn"
    shutil.copytree(trained.run_dir, dst)
    model = load_model(dst / "best.keras")
    bn, logits = model.get_layer("fc1_bn"), model.get_layer("logits")
    gamma, beta, mean, var = bn.get_weights()
    gamma[0], beta[0] = 0.0, -1.0
    bn.set_weights([gamma, beta, mean, var])
    w, b = logits.get_weights()
    w[0, :] = 1000.0
    logits.set_weights([w, b])
    model.save(dst / "best.keras")
    return dst


def _export(run, broken, out, *extra):
    return run("export", broken, "--int8", "--from", "ptq", "--formats", "tflite", "--calib-size", 64,
               "--threshold", THRESHOLD, "--out", out, *extra)


def test_inspect_ranks_the_broken_layer_first_and_keep_float_repairs_it(run, broken, tmp_path):
    r = run("inspect", broken, "--faces", 100, "--calib-size", 64, "--out", tmp_path / "inspect")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "inspect" / "inspect.json").read_text())
    assert (tmp_path / "inspect" / "inspect.png").stat().st_size > 0
    assert report["ranking"][0] == "logits", report["ranking"]
    by_layer = {x["layer"]: x for x in report["layers"]}
    worst = by_layer["logits"]
    assert worst["cost"] >= 0.2 and worst["cosine"] < 0.9, worst
    # every layer has its int8 parameters and error figures; the others cost far less alone
    for x in report["layers"]:
        assert x["scale"] > 0 and -128 <= x["zero_point"] <= 127 and 0 <= x["clipped"] <= 1, x
    assert max(x["cost"] for x in report["layers"] if x["layer"] != "logits") < worst["cost"] / 2
    assert "--keep-float logits" in r.output and "| 1 | logits | FULLY_CONNECTED |" in r.output
    # every layer of the cnn runs in XNNPACK's one partition but the int8 SOFTMAX (XNNPACK has none)
    assert {(x["op"], x["xnnpack"]) for x in report["layers"]} == {
        ("CONV_2D", 1), ("MAX_POOL_2D", 1), ("RESHAPE", 1), ("FULLY_CONNECTED", 1), ("SOFTMAX", None)}, report["layers"]

    refused = _export(run, broken, tmp_path / "e_int8")
    assert_user_error(refused, "below 90%", "edgefer inspect RUN", "--keep-float")
    assert not (tmp_path / "e_int8" / "cnn_int8.tflite").exists()

    fixed = _export(run, broken, tmp_path / "e_keep", "--keep-float", "logits")
    assert fixed.exit_code == 0, fixed.output
    meta = json.loads((tmp_path / "e_keep" / "cnn_int8.tflite.json").read_text())
    assert meta["keep_float"]["layers"] == ["logits"]
    assert meta["verification"]["agreement"] >= float(THRESHOLD)

    from edge_fer.device_bench.ops import inspect_model

    ops = inspect_model(tmp_path / "e_keep" / "cnn_int8.tflite")["ops"]
    assert ops["not_int8"] == {"FULLY_CONNECTED": 1} and ops["int8"] == ops["total"] - 1, ops  # one float island
    data = json.loads((broken / "config.json").read_text())["data"]
    bench = run("bench", tmp_path / "e_keep" / "cnn_int8.tflite", "--threads", 1, "--min-seconds", 0.1, "--data", data)
    assert bench.exit_code == 0, bench.output
    assert "ok; not int8: FULLY_CONNECTED×1" in bench.output


def test_xnnpack_partitions_follow_the_delegate_node():
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edge_fer.export.inspect import xnnpack_partitions

    path = Path(__file__).resolve().parents[1] / "edge_fer" / "zoo" / "shipped" / "cnn_int8.tflite"
    ops = Interpreter(model_path=str(path),
                      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)._get_ops_details()
    part = xnnpack_partitions(path)
    # XNNPACK has no int8 softmax: LiteRT's delegate node ends at the logits, the SOFTMAX runs on TFLite's kernels
    assert [o["op_name"] for o, k in zip(ops, part) if k is None] == ["SOFTMAX"], list(zip(ops, part))
    assert set(part) == {1, None} and len(part) == len(ops)


def test_inspect_model_file_points_at_the_broken_layer(run, broken, tmp_path):
    forced = _export(run, broken, tmp_path / "e", "--force")
    assert forced.exit_code == 0, forced.output
    int8 = tmp_path / "e" / "cnn_int8.tflite"
    data = json.loads((broken / "config.json").read_text())["data"]
    from edge_fer.export.inspect import float_tflite

    (tmp_path / "float.tflite").write_bytes(float_tflite(broken / "best.keras"))
    r = run("inspect", int8, "--float", tmp_path / "float.tflite", "--faces", 60, "--data", data)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "e" / "inspect-cnn_int8.json").read_text())
    assert report["format"] == "tflite-file" and report["ranking"][0] == "logits", report["ranking"]
    assert report["agreement_int8"] < float(THRESHOLD) and 0 < report["accuracy_float"] <= 1
    logits = next(x for x in report["layers"] if x["layer"] == "logits")
    assert logits["cosine"] < 0.9 and logits["added_noise"] > 0.5, logits
    assert all(x["added_noise"] < 0.05 for x in report["layers"] if x["layer"] != "logits"), report["layers"]
    assert report["xnnpack"] == {"partitions": 1, "ops_outside": ["SOFTMAX"]} and logits["xnnpack"] == 1
    assert "worst: logits" in r.output and "| 1 | logits | FULLY_CONNECTED |" in r.output

    bad = run("inspect", int8, "--float", broken / "config.json", "--data", data)
    assert_user_error(bad, "--float", "config.json", ".keras, .h5 or float .tflite")
    alone = run("inspect", int8, "--data", data)
    assert_user_error(alone, "cnn_int8.tflite", "--float model.keras")


def test_keep_float_auto_adds_the_worst_layer_and_reports_its_cost(run, broken, tmp_path):
    r = _export(run, broken, tmp_path / "e_auto", "--keep-float", "auto")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "e_auto" / "cnn_int8.tflite.json").read_text())
    keep = meta["keep_float"]
    assert keep["mode"] == "auto" and keep["passed"] and keep["layers"][0] == "logits", keep
    assert keep["steps"][0]["agreement"] < float(THRESHOLD) <= keep["steps"][-1]["agreement"]
    assert keep["size_bytes"] > keep["size_bytes_all_int8"] and keep["latency_ms"] > 0
    assert meta["verification"]["agreement"] >= float(THRESHOLD)
    from edge_fer.quantization.converter import layer_labels

    assert keep["nodes"] and layer_labels(keep["nodes"]) == keep["layers"], keep  # the exact nodes chosen


def test_keep_float_labels_name_a_layer_once():
    """A convolution and its activation are two converter nodes of one Keras layer: the labels list it once,
    and the label keeps both nodes (the exact nodes the search chose are recorded apart)."""
    from edge_fer.quantization.converter import layer_labels, resolve_keep_float

    nodes = ["model/conv_1/Conv2D", "model/conv_1/HardSwish;model/conv_1/mul", "model/logits/MatMul"]
    assert layer_labels(nodes[:2] + nodes[2:] + nodes[:1]) == ["conv_1", "logits"]
    assert resolve_keep_float(nodes, ["conv_1"]) == nodes[:2] and resolve_keep_float(nodes, nodes[1:2]) == nodes[1:2]


def test_keep_float_unknown_layer_is_one_line_with_the_close_name(run, broken, tmp_path):
    r = _export(run, broken, tmp_path / "e", "--keep-float", "logitz")
    assert_user_error(r, "--keep-float 'logitz'", "did you mean logits", "edgefer inspect RUN")
    assert not (tmp_path / "e").exists()


def test_int16x8_export_has_16_bit_activations_and_passes(run, trained, tmp_path):
    r = run("export", trained.run_dir, "--precisions", "int16x8", "--formats", "tflite", "--calib-size", 64,
            "--out", tmp_path)
    assert r.exit_code == 0, r.output
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(tmp_path / "cnn_int16x8.tflite"))
    kinds = {np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    assert "int16" in kinds and "int8" in kinds, kinds
    assert np.dtype(interp.get_input_details()[0]["dtype"]) == np.float32
    meta = json.loads((tmp_path / "cnn_int16x8.tflite.json").read_text())
    assert meta["precision"] == "int16x8" and meta["verification"]["agreement"] >= 0.98


def test_int16x8_keeps_ops_without_a_16x8_kernel_in_float():
    """TFLite has no 16x8 HARD_SWISH (a post-training MobileNetV3's activations): the conversion keeps those ops
    in float (the converter's TFLITE_BUILTINS fallback), quantises the rest to 16-bit activations, and the
    file computes what the float model does."""
    from ai_edge_litert.interpreter import Interpreter

    from edge_fer._tf import keras
    from edge_fer.calibration import CalibrationSet
    from edge_fer.models.layers import HardSwish
    from edge_fer.quantization.converter import to_tflite

    K = keras()
    x = inputs = K.Input((48, 48, 1), name="image")
    x = K.layers.Rescaling(1 / 127.5, offset=-1)(x)
    x = HardSwish(name="hswish")(K.layers.Conv2D(8, 3, strides=2, name="conv")(x))
    x = K.layers.Dense(7, name="logits")(K.layers.GlobalAveragePooling2D()(x))
    model = K.Model(inputs, K.layers.Softmax(name="predictions")(x))
    faces = np.random.default_rng(0).uniform(0, 255, (64, 48, 48, 1)).astype(np.float32)
    interp = Interpreter(model_content=to_tflite(model, "int16x8", calib=CalibrationSet(faces, "random faces")))
    ops = {op["op_name"]: op for op in interp._get_ops_details()}
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    assert {dtype[i] for i in ops["HARD_SWISH"]["inputs"]} == {"float32"}  # the op without a 16x8 kernel
    assert dtype[ops["CONV_2D"]["outputs"][0]] == "int16"  # the rest: 16-bit activations
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], faces[:1])
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, model.predict(faces[:1], verbose=0), atol=2e-3)


def test_onnx_report_ranks_the_broken_layer_first_and_keep_float_repairs_it(run, broken, tmp_path):
    r = run("inspect", broken, "--format", "onnx", "--faces", 100, "--calib-size", 64, "--out", tmp_path / "i")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "i" / "inspect-onnx.json").read_text())
    assert report["format"] == "onnx" and report["ranking"][0] == "logits", report["ranking"]
    assert report["agreement_int8"] < float(THRESHOLD)
    logits = next(x for x in report["layers"] if x["layer"] == "logits")
    assert logits["sqnr_db"] < 10 and logits["cosine"] < 0.9, logits
    assert all(x["sqnr_db"] > logits["sqnr_db"] + 10 for x in report["layers"] if x["layer"] != "logits")
    # ranked by the agreement quantising each layer alone costs (ORT's quantiser, the rest excluded)
    assert logits["cost"] >= 0.2 and logits["rank"] == 1, logits
    assert max(x["cost"] for x in report["layers"] if x["layer"] != "logits") < logits["cost"] / 2

    refused = run("export", broken, "--int8", "--from", "ptq", "--formats", "onnx", "--calib-size", 64,
                  "--threshold", THRESHOLD, "--out", tmp_path / "e_int8")
    assert_user_error(refused, "below 90%", "cnn_int8.onnx")
    fixed = run("export", broken, "--int8", "--from", "ptq", "--formats", "onnx", "--calib-size", 64,
                "--threshold", THRESHOLD, "--out", tmp_path / "e", "--keep-float", "logits")
    assert fixed.exit_code == 0, fixed.output
    meta = json.loads((tmp_path / "e" / "cnn_int8.onnx.json").read_text())
    assert meta["keep_float"]["layers"] == ["logits"] and meta["verification"]["agreement"] >= float(THRESHOLD)


@pytest.fixture(scope="module")
def qat_hswish(subset, tmp_path_factory):
    """A quarter-width full-block MobileNetV3-Small (split hard-swish, squeeze-excite) fitted a few steps, QAT
    with min/max ranges and converted to int8 TFLite: several MULs and ADDs per Keras block where the float
    graph has one HARD_SWISH, and its float source as a float .tflite."""
    from edge_fer._tf import keras
    from edge_fer.calibration import CalibrationSet
    from edge_fer.data import load_fer
    from edge_fer.export import convert
    from edge_fer.export.inspect import float_tflite
    from edge_fer.models import create_model
    from edge_fer.quantization import quantize_model, warm_up_ranges

    d = tmp_path_factory.mktemp("qat_hswish")
    train = load_fer(subset)["train"]
    x, y = train.x[:256].astype(np.float32)[..., None], train.y[:256]
    model = create_model("mobilenetv3_small", width=0.25)
    model.compile(keras().optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    model.save(d / "float.keras")
    qat = quantize_model(model)
    warm_up_ranges(qat, [x[i:i + 32] for i in range(0, 128, 32)])
    (d / "int8_qat.tflite").write_bytes(convert.to_tflite(qat, "int8", calib=CalibrationSet(x[:64], "sample")))
    (d / "float.tflite").write_bytes(float_tflite(d / "float.keras"))
    return d


@pytest.mark.slow
def test_inspect_model_file_pairs_a_split_hard_swish_qat_file_by_what_each_tensor_computes(run, qat_hswish, subset):
    from ai_edge_litert.interpreter import Interpreter

    int8 = qat_hswish / "int8_qat.tflite"
    r = run("inspect", int8, "--float", qat_hswish / "float.tflite", "--faces", 40, "--data", subset)
    assert r.exit_code == 0, r.output
    report = json.loads((qat_hswish / "inspect-int8_qat.json").read_text())
    rows, unpaired = report["layers"], report["unpaired"]
    assert f"{unpaired['count']} int8 tensors unpaired, not compared" in r.output
    # the float graph fuses each split hard-swish into one HARD_SWISH: its inner ADD (x + 3, ReLU6) and MUL
    # (· 1/6) have no float tensor and are listed with the reason, never compared with another tensor
    inner = [u for u in unpaired["tensors"] if "/hsigmoid/" in u["tensor"]]
    assert inner and {u["op"] for u in inner} == {"ADD", "MUL"} and all(u["reason"] for u in inner), inner
    assert unpaired["count"] == len(unpaired["tensors"]) and report["paired"] == len(rows)
    assert not [x for x in rows if "/hsigmoid/" in x["tensor"]], rows
    # x · hard_sigmoid(x) is paired with the float HARD_SWISH of the same layer, the squeeze-excite's MUL with its MUL
    hswish = [x for x in rows if x["tensor"].endswith("hswish/mul")]
    assert hswish and all(x["op"] == "MUL" and x["float_op"] == "HARD_SWISH" for x in hswish), hswish
    se = [x for x in rows if x["tensor"].endswith("squeeze_excite/Mul/mul")]
    assert se and all(x["float_op"] == "MUL" and x["tensor"] in x["float_node"] for x in se), se
    # every pair has the float tensor's shape and is named after the same op (pairing by layer and op type
    # matched 29 of this model's 84 int8 tensors with another op's: a hard-swish MUL with the squeeze-excite's)
    floats = {t["name"]: [int(v) for v in t["shape"]] for t in Interpreter(
        model_path=str(qat_hswish / "float.tflite")).get_tensor_details()}
    assert all(floats[x["float_node"]] == x["shape"] for x in rows), rows
    assert all(x["float_node"].split(";")[0].split("/", 1)[-1] == x["tensor"] for x in rows), rows
    stem = next(x for x in rows if x["tensor"] == "conv/hswish/mul")  # before error builds up: the same values
    assert stem["cosine"] > 0.98, stem
