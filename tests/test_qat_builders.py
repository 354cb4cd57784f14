"""QAT on every registered builder: annotated fully, ranges warmed, reloadable, full-integer TFLite."""

import numpy as np
import pytest

from edge_fer.calibration import CalibrationSet
from edge_fer.data import load_fer
from edge_fer.export import convert
from edge_fer.export.exporter import float_ops
from edge_fer.runtime.tflite import TFLiteModel
from edge_fer.models import create_model, model_names
from edge_fer.quantization import load_qat_model, quantize_model, warm_up_ranges

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faces():
    return load_fer(None)["train"].x[:96].astype(np.float32)[..., None]


@pytest.fixture(scope="module")
def labels():
    return load_fer(None)["train"].y[:96]


def int8_logits(path, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """The int8 graph's logits (the SOFTMAX's input) for raw faces, dequantised, and their scale."""
    from edge_fer.runtime.tflite import interpreter_class

    interpreter = interpreter_class()[0](model_path=str(path), experimental_preserve_all_tensors=True)
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], [len(faces), *inp["shape"][1:]])
    interpreter.allocate_tensors()
    scale, zero = inp["quantization"]
    interpreter.set_tensor(inp["index"], np.clip(np.round(faces / scale + zero), -128, 127).astype(np.int8))
    interpreter.invoke()
    (softmax,) = [op for op in interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"]
    logits = next(t for t in interpreter.get_tensor_details() if t["index"] == softmax["inputs"][0])
    scale, zero = logits["quantization"]
    return (interpreter.get_tensor(logits["index"]).astype(np.float32) - zero) * scale, scale


def _settle_batchnorm(model, faces: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to its batch statistics on ``faces``.

    After six steps the moving averages (momentum 0.99) are still near their initial values, so the model in
    inference mode is not the one trained: MobileNetV3-Large's logits then span a fraction of one int8 step
    (0.2 against 24-33 in training mode), and whether they clear the spread check depended on the CPU's
    rounding. Settled, inference mode computes what training mode computed on these faces (dropout aside)."""
    from edge_fer._tf import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras().layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(faces, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


# How far the int8 graph's logits may be from the QAT model's, in int8 steps of the logits (whose range spans
# 255). Both compute the same quantised function, but each int8 kernel rounds where the QAT model computes in
# float (HARD_SWISH, MEAN, requantised ADD and MUL), and the differences add up with depth. Measured on these
# faces, five or six runs of each builder: largest distance 1-5 steps for the cnns and VGG-16s, 6-21 for
# ResNet-50 and the MobileNetV3s; mean 0.2-3.9 steps; the same top class on 75-100% of the 32 faces. With every
# bias requantised at 1.25x its scale, six or seven of the eight builds fail (largest distances 27-159 steps).
LOGIT_STEPS, MEAN_STEPS, AGREEMENT = 40, 6, 0.5
BUILDS = [(name, {}) for name in model_names()] + [
    ("vgg16", {"batch_norm": True}), ("mobilenetv3_small", {"minimalistic": True, "stem_stride": 1})]


@pytest.mark.parametrize("name,options", BUILDS, ids=[n + "".join(f"-{k}" for k in o) for n, o in BUILDS])
def test_qat_every_builder(name, options, faces, labels, tmp_path):
    from edge_fer._tf import keras

    model = create_model(name, **options)
    # a few steps on real faces, then BatchNorm settled on them: untrained logits are near-constant (within a step
    # or two of 0), which any int8 graph matches; trained a little and settled, they span most of the logits'
    # int8 range and differ by face
    # plain VGG-16 (no BatchNorm) at 1e-3 switches every ReLU off within these steps: its logits are all 0
    lr = 1e-4 if name == "vgg16" and not options.get("batch_norm") else 1e-3
    # eagerly: six steps cost less than tracing the train step (and the calls below less than predict's tracing)
    model.compile(keras().optimizers.Adam(lr), "sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(faces, labels, batch_size=32, epochs=2, verbose=0)
    _settle_batchnorm(model, faces)
    weights = [w.copy() for w in model.get_weights()]
    qat = quantize_model(model)
    # QAT works on a copy: the input model keeps its layers and every weight
    assert qat is not model and not any("Quantize" in type(l).__name__ for l in model.layers)
    assert len(model.get_weights()) == len(weights) > 0
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))
    kinds = {type(l).__name__ for l in qat.layers}
    assert kinds <= {"InputLayer", "QuantizeLayer", "QuantizeWrapperV2"}, kinds  # nothing left un-annotated
    before = [v.numpy().copy() for v in qat.trainable_variables]
    warm_up_ranges(qat, [faces[:32], faces[32:64]])
    after = [v.numpy() for v in qat.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # warm-up moves ranges, not weights
    ranges = {v.name: float(v.numpy()) for v in qat.variables if v.name.endswith("_max:0") and v.shape == ()}
    assert any(abs(r - 6.0) > 1e-3 for r in ranges.values())  # no longer tfmot's initial [-6, 6]

    path = tmp_path / f"{name}.h5"
    qat.save(path)
    x = faces[64:72]
    np.testing.assert_allclose(load_qat_model(path)(x, training=False), qat(x, training=False), atol=1e-6)

    blob = convert.to_tflite(qat, "int8", calib=CalibrationSet(faces[:32], "sample"))
    (tmp_path / "m.tflite").write_bytes(blob)
    int8_model = TFLiteModel(tmp_path / "m.tflite")
    assert float_ops(int8_model) == [], f"{name}: ops left in float"
    assert int8_model.predict(x.astype(np.uint8)[..., 0]).shape == (8, 7)
    # the int8 graph computes the QAT model's function on real faces: its logits within LOGIT_STEPS int8 steps
    # of the QAT model's (mean under MEAN_STEPS), and mostly the same top class
    x = faces[64:96]
    got, step = int8_logits(tmp_path / "m.tflite", x)
    want = keras().Model(qat.input, qat.get_layer("quant_logits").output)(x, training=False).numpy()
    steps = np.rint(np.abs(got - want) / step)  # both are on the logits' int8 grid
    assert np.ptp(want) / step > 5, f"{name}: QAT logits span {np.ptp(want) / step:.1f} steps"
    assert steps.max() <= LOGIT_STEPS and steps.mean() < MEAN_STEPS, (name, steps.max(), steps.mean())
    assert (got.argmax(1) == want.argmax(1)).mean() >= AGREEMENT, name
    keras().backend.clear_session()


@pytest.mark.parametrize("hard_swish, partitions", [("split", 1), ("fused", None)])
def test_mobilenetv3_int8_graph_is_one_xnnpack_partition(hard_swish, partitions, faces, tmp_path):
    """XNNPACK has no int8 HARD_SWISH: a fused hard-swish splits the int8 graph at every activation.

    The split form (x · hard_sigmoid(x), each with its own QAT range) converts to ops XNNPACK runs
    in int8, so the whole graph is one delegate partition.
    """
    import collections

    qat = quantize_model(create_model("mobilenetv3_small", hard_swish=hard_swish))
    warm_up_ranges(qat, [faces[:48], faces[48:]])
    (tmp_path / "m.tflite").write_bytes(convert.to_tflite(qat, "int8", calib=CalibrationSet(faces, "s"), batch=1))
    ops = collections.Counter(o["op"] for o in TFLiteModel(tmp_path / "m.tflite").ops())
    if partitions is None:
        assert ops["DELEGATE"] > 10 and ops["HARD_SWISH"] > 0
    else:
        assert ops["DELEGATE"] == partitions and ops["HARD_SWISH"] == 0


def test_qat_model_computes_what_the_int8_graph_computes(faces, tmp_path):
    """QAT must round where TFLite's int8 graph rounds, or QAT trains a different model.

    Three places where tfmot's default scheme did not (MobileNetV3-Small QAT int8 agreed with its
    QAT Keras model on 95.0% of validation faces before these fixes): the preprocessing MUL of
    Rescaling(1/127.5, -1), the RELU6 inside hard-sigmoid, the weights of a Conv2D followed by a
    ReLU layer (the squeeze-excite conv), and per-channel depthwise kernels.
    """
    from edge_fer._tf import keras
    from edge_fer.runtime.tflite import interpreter_class

    qat = quantize_model(create_model("mobilenetv3_small", width=0.5))
    names = {v.name: tuple(v.shape) for v in qat.variables}
    channels = names["expanded_conv/depthwise/depthwise_kernel:0"][2]
    assert names["quant_expanded_conv/depthwise/depthwise_kernel_min:0"] == (channels,)  # per channel, not (1,)
    assert "quant_expanded_conv/squeeze_excite/Conv/kernel_min:0" in names  # weights of Conv+ReLU quantised
    assert "quant_expanded_conv/squeeze_excite/Conv/post_activation_min:0" not in names  # ...but no FQ before the ReLU
    for inner in ("quant_conv/hsigmoid", "quant_preprocess"):  # the RELU6 inside hard-sigmoid; the preprocessing MUL
        assert type(qat.get_layer(inner).layer.activation).__name__ == "QuantizeAwareActivation"
    warm_up_ranges(qat, [faces[:48], faces[48:]])
    path = tmp_path / "m.tflite"
    path.write_bytes(convert.to_tflite(qat, "int8", calib=CalibrationSet(faces, "s"), batch=1))

    interpreter = interpreter_class()[0](model_path=str(path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    tensors = interpreter.get_tensor_details()
    x = faces[:16]
    probe = keras().Model(qat.input, [qat.get_layer(n).output for n in ("quant_preprocess", "quant_conv/hsigmoid")])
    expected = [t.numpy() for t in probe(x, training=False)]
    for layer, want in zip(("quant_preprocess/", "quant_conv/hsigmoid/"), expected):
        t = [d for d in tensors if layer in d["name"] and tuple(d["shape"][1:]) == want.shape[1:]][-1]
        scale, zero = t["quantization"]
        got = []
        for face in x:
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], (face[None] - 128).astype(np.int8))
            interpreter.invoke()
            got.append((interpreter.get_tensor(t["index"]).astype(np.float32) - zero) * scale)
        steps = np.abs(np.concatenate(got) - want) / scale
        assert steps.max() <= 1.01 and steps.mean() < 0.01, (layer, steps.max(), steps.mean())
    keras().backend.clear_session()


def test_warm_up_traced_from_ten_batches_sets_the_ranges_eager_passes_set(faces, monkeypatch):
    """From TRACED_FROM batches on, the warm-up runs as one traced function: the same ranges as eager passes
    (no dropout here: it would draw other masks), weights and BatchNorm statistics untouched either way."""
    from edge_fer.quantization import ranges

    batches = [faces[i % 3 * 32:(i % 3 + 1) * 32] for i in range(ranges.TRACED_FROM)]
    float_model = create_model("cnn", width=0.25, dropout=0.0)
    got = []
    for traced_from in (len(batches) + 1, len(batches)):  # eager, then traced
        qat = quantize_model(float_model)
        start = {v.name: v.numpy().copy() for v in qat.variables}
        monkeypatch.setattr(ranges, "TRACED_FROM", traced_from)
        assert warm_up_ranges(qat, iter(batches)) == len(batches)
        range_vars = {v.name for v in ranges._range_vars(qat)}
        assert all(np.array_equal(v.numpy(), start[v.name]) for v in qat.variables if v.name not in range_vars)
        got.append([v.numpy() for v in ranges._range_vars(qat)])
    eager, traced = got
    assert len(eager) > 10 and any(abs(float(np.max(r)) - 6.0) > 1e-3 for r in traced)
    for a, b in zip(eager, traced):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_clip_activation_ranges_shrinks_data_ranges_only(faces):
    """Percentile ranges (`edgefer qat --range-percentile`): data-driven activation ranges shrink,
    fixed ones (hard-sigmoid's [0, 6]) and weight ranges do not move, and the model still runs."""
    from edge_fer.quantization.ranges import clip_activation_ranges

    qat = quantize_model(create_model("mobilenetv3_small"))
    warm_up_ranges(qat, [faces[:32], faces[32:64]])

    def ranges():
        return {v.name: float(np.max(np.abs(v.numpy()))) for v in qat.variables if v.name.split("/")[-1].split(":")[0]
                .endswith(("_min", "_max"))}

    before = ranges()
    shrunk = clip_activation_ranges(qat, [faces[:32]], 99.0)
    after = ranges()
    assert shrunk > 10
    assert all(after[k] <= before[k] + 1e-6 for k in before)
    moved = {k for k in before if after[k] < before[k] - 1e-6}
    assert moved and all(k.split("/")[-1].startswith(("post_activation", "output")) for k in moved), moved
    assert np.isfinite(qat(faces[:8], training=False)).all()



def test_dense_batchnorm_scale_is_folded_before_qat(faces):
    """The cnn's fc1 → fc1_bn: per-tensor Dense kernels do not survive the converter's BatchNorm fold, so
    QAT starts from the folded kernel; the folded model computes the float model's function."""
    from edge_fer._tf import keras
    from edge_fer.quantization.scheme import _fold_batchnorm_scales

    K = keras()
    model = create_model("cnn", width=0.25)
    rng = np.random.default_rng(0)
    n = model.get_layer("fc1_bn").get_weights()[0].shape[0]
    stats = [rng.uniform(0.05, 3.0, n), rng.normal(0, 0.5, n), rng.normal(0, 1, n), rng.uniform(0.01, 4.0, n)]
    model.get_layer("fc1_bn").set_weights([w.astype(np.float32) for w in stats])
    folded = K.models.clone_model(model)
    folded.set_weights(model.get_weights())
    assert _fold_batchnorm_scales(folded) == 1  # fc1 only: every other BatchNorm follows a conv
    x = faces[:32]
    a = K.Model(model.input, model.get_layer("fc1_relu").output)(x, training=False).numpy()
    b = K.Model(folded.input, folded.get_layer("fc1_relu").output)(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
    assert np.allclose(folded.get_layer("fc1_bn").get_weights()[0], 1.0) and not folded.get_layer("fc1_bn").trainable
    qat = quantize_model(model)  # folds its own copy
    qbn = next(l for l in qat.layers if l.name.endswith("fc1_bn"))
    assert np.allclose(qbn.get_weights()[0], 1.0) and not qbn.trainable
    assert np.allclose(model.get_layer("fc1_bn").get_weights()[0], stats[0])  # the float model is untouched


def test_per_tensor_qat_folds_every_batchnorm_and_quantises_kernels_whole(faces):
    """Per-tensor QAT: every BatchNorm after a conv, depthwise conv or Dense is folded into its kernel first
    (the folded model computes the same function), and each kernel gets one range, not one per channel."""
    from edge_fer._tf import keras
    from edge_fer.quantization.scheme import _fold_batchnorm_scales, model_weights

    K = keras()
    model = create_model("ferlite", width=0.5)
    rng = np.random.default_rng(1)
    bns = [l for l in model.layers if isinstance(l, K.layers.BatchNormalization)]
    for bn in bns:  # trained-looking statistics, different in every channel
        n = bn.get_weights()[0].shape[0]
        bn.set_weights([rng.uniform(0.2, 2.0, n).astype(np.float32), rng.normal(0, 0.3, n).astype(np.float32),
                        rng.normal(0, 0.5, n).astype(np.float32), rng.uniform(0.1, 3.0, n).astype(np.float32)])
    folded = K.models.clone_model(model)
    folded.set_weights(model.get_weights())
    assert _fold_batchnorm_scales(folded, dense_only=False) == len(bns)
    assert all(np.allclose(l.get_weights()[0], 1.0) and not l.trainable
               for l in folded.layers if isinstance(l, K.layers.BatchNormalization))
    x = faces[:16]
    a, b = model(x, training=False).numpy(), folded(x, training=False).numpy()
    assert np.abs(a - b).max() <= 1e-4
    qat = quantize_model(model, per_tensor=True)
    ranges = {v.name: v.shape for v in qat.variables if "kernel_m" in v.name}
    assert ranges and all(shape == () for shape in ranges.values()), ranges  # per channel: shape (channels,)
    per_channel = quantize_model(model)
    assert any(v.shape != () for v in per_channel.variables if "kernel_m" in v.name)
    assert (model_weights(qat), model_weights(per_channel)) == ("per-tensor", "per-channel")  # what export follows


def test_the_frozen_conversion_is_from_keras_models_model_with_its_signature(faces, tmp_path):
    """to_tflite converts the model's frozen inference function, not a SavedModel of the whole tf_keras model
    (~30× slower): the same int8 model as TFLiteConverter.from_keras_model, bit for bit on real faces, with its
    serving_default signature and I/O tensor names."""
    import tensorflow as tf

    qat = quantize_model(create_model("cnn", width=0.25))
    warm_up_ranges(qat, [faces[:48], faces[48:]])
    calib = CalibrationSet(faces, "s")
    conv = tf.lite.TFLiteConverter.from_keras_model(qat)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calib.tflite_dataset
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    (tmp_path / "keras.tflite").write_bytes(convert.fix_bias_scales(conv.convert())[0])
    (tmp_path / "frozen.tflite").write_bytes(convert.to_tflite(qat, "int8", calib=calib))
    keras_route, frozen = TFLiteModel(tmp_path / "keras.tflite"), TFLiteModel(tmp_path / "frozen.tflite")
    assert frozen.interpreter.get_signature_list() == keras_route.interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["image"], "outputs": ["quant_predictions"]}}
    assert (frozen.inp["name"], frozen.out["name"]) == (keras_route.inp["name"], keras_route.out["name"])
    assert frozen.input_quantization == keras_route.input_quantization
    x = load_fer(None)["test"].x[:100]
    assert np.array_equal(frozen.predict(x), keras_route.predict(x))
