"""The gpu target, run for real on SwiftShader (a software Vulkan device; scripts/setup.sh fetches it).

No GPU exists on the machines this suite runs on, so LiteRT's GPU accelerator (WebGPU over Vulkan)
runs on SwiftShader: the GPU code path is exercised end to end and the records say
"software GPU emulation". Its timings say nothing about GPU speed.
"""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edge_fer.cli import main
from edge_fer.device_bench.bench import bench_models
from edge_fer.errors import ModelError
from edge_fer.runtime import tflite as R

from conftest import assert_user_error, pick_rows, write_subset_npz

pytestmark = pytest.mark.slow

ICD = Path(__file__).resolve().parent.parent / ".venv" / "swiftshader" / "vk_swiftshader_icd.json"


@pytest.fixture
def swiftshader(monkeypatch):
    assert ICD.is_file(), f"{ICD} missing: run `bash scripts/setup.sh` (or scripts/swiftshader.sh)"
    monkeypatch.setenv("VK_ICD_FILENAMES", str(ICD))
    return ICD


@pytest.fixture(scope="module")
def exported_b1(trained, tmp_path_factory):
    from edge_fer.export import export_run

    out = tmp_path_factory.mktemp("exported_b1")
    export_run(trained.run_dir, formats=["tflite", "onnx"], precisions=["float32", "int8"], source="ptq", force=True,
               out=out, batch=1)
    return out


def _probabilities(model, faces):
    out = []
    for face in faces:
        y = np.asarray(model.invoke(model.prepare(face[None])), dtype=np.float32)
        out.append(y)
    y = np.concatenate(out)
    if model.__class__ is R.TFLiteModel and model.out["dtype"] != np.float32:
        scale, zp = model.out["quantization"]
        return (y - zp) * scale
    return y


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_gpu_outputs_equal_cpu(precision, exported_b1, fer, swiftshader):
    path = str(exported_b1 / f"cnn_{precision}.tflite")
    faces = fer["pixels"][fer["usage"] == "PrivateTest"][:24]
    gpu = R.LiteRTGpuModel(path)
    assert gpu.fully_accelerated and gpu.software and "SwiftShader" in gpu.adapter, (gpu.adapter, gpu.adapter_type)
    cpu = R.TFLiteModel(path, 1)
    p_gpu, p_cpu = _probabilities(gpu, faces), _probabilities(cpu, faces)
    if precision == "int8":
        # The GPU dequantises an int8 model and computes in float, so it cannot reproduce the CPU's
        # integer rounding; measured: at most 3 steps (1/256) of the int8 softmax apart.
        scale, zp = cpu.out["quantization"]
        p_gpu = (p_gpu - zp) * scale
        tol = 4 * scale + 1e-6
    else:
        tol = 1e-3
    np.testing.assert_allclose(p_gpu, p_cpu, atol=tol)
    assert (p_gpu.argmax(1) == p_cpu.argmax(1)).mean() >= (0.95 if precision == "int8" else 1.0)


@pytest.mark.parametrize("name, kwargs", [("cnn", {"width": 0.5}), ("mobilenetv3_small", {}),
                                          ("mobilenetv3_large", {}), ("resnet50", {}), ("vgg16", {})])
def test_study_models_are_fully_accelerated(name, kwargs, swiftshader, tmp_path):
    from edge_fer._tf import keras
    from edge_fer.export import convert
    from edge_fer.models import create_model

    path = tmp_path / f"{name}.tflite"
    path.write_bytes(convert.to_tflite(create_model(name, **kwargs), "float32", batch=1))
    model = R.LiteRTGpuModel(str(path))  # GPU only: raises if any op cannot run there
    assert model.fully_accelerated  # (untrained: its outputs are near-uniform, so parity is checked below, trained)
    keras().backend.clear_session()


@pytest.mark.parametrize("name", ["cnn_int8", "ferlite_int8", "mobilenetv3_small_int8"])
def test_shipped_models_on_the_gpu_match_the_cpu_on_real_faces(name, fer, swiftshader):
    """Trained models on 48 PrivateTest faces: the GPU computes the dequantised graph in float, so its
    softmax may sit a few int8 steps from the CPU's (measured: at most 5), never on another label."""
    from edge_fer.zoo import get_shipped

    path = str(get_shipped(name).files[".tflite"])
    private = fer["usage"] == "PrivateTest"
    faces, labels = fer["pixels"][private][:48], fer["labels"][private][:48]
    gpu, cpu = R.LiteRTGpuModel(path), R.TFLiteModel(path, 1)
    assert gpu.fully_accelerated and gpu.software
    scale, zp = cpu.out["quantization"]
    p_cpu = _probabilities(cpu, faces)
    p_gpu = (_probabilities(gpu, faces) - zp) * scale
    assert np.abs(p_gpu - p_cpu).max() <= 6 * scale + 1e-6
    assert np.array_equal(p_gpu.argmax(1), p_cpu.argmax(1))
    assert (p_cpu.argmax(1) == labels).mean() >= 0.5  # a trained model: its outputs follow the faces


@pytest.fixture(scope="module")
def bucketize_model(tmp_path_factory):
    """A model with an op LiteRT's GPU accelerator cannot run (BUCKETIZE)."""
    from edge_fer._tf import keras, tf

    tf, keras = tf(), keras()
    inp = keras.Input((48, 48, 1), batch_size=1)
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Lambda(lambda t: tf.cast(tf.raw_ops.Bucketize(input=t, boundaries=[64.0, 192.0]), tf.float32))(x)
    out = keras.layers.Dense(7, activation="softmax")(x)
    path = tmp_path_factory.mktemp("unsupported") / "bucketize.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out)).convert())
    return path


def test_gpu_only_refuses_an_unsupported_op(bucketize_model, swiftshader):
    with pytest.raises(ModelError, match="the GPU cannot run BUCKETIZE of this model; --allow-cpu-fallback"):
        R.LiteRTGpuModel(str(bucketize_model))
    model = R.LiteRTGpuModel(str(bucketize_model), cpu_fallback=True)
    assert not model.fully_accelerated
    assert _probabilities(model, np.zeros((1, 48, 48), np.uint8)).shape == (1, 7)


def test_bench_gpu_records_software_emulation(exported_b1, fer, swiftshader, tmp_path):
    # 100 test faces, --quick: no latency is read, and the software GPU is slow
    faces = write_subset_npz(tmp_path / "faces.npz", fer, pick_rows(fer, (10, 10, 100)))
    out = tmp_path / "gpu.json"
    r = CliRunner().invoke(main, ["bench", str(exported_b1 / "cnn_int8.tflite"), "--device", "gpu", "--data",
                                  str(faces), "--min-seconds", "0", "--quick", "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "[software GPU emulation]" in r.output and "SwiftShader" in r.output
    import json

    rec = json.loads(out.read_text())[0]
    assert rec["status"] == "ok" and rec["device"] == "gpu" and rec["accelerator_label"] == "software GPU emulation"
    assert rec["gpu"]["fully_accelerated"] is True and rec["gpu"]["cpu_fallback"] is False
    assert 0.3 < rec["accuracy"] < 0.7 and np.array(rec["confusion_matrix"]).sum() == 100


def test_gpu_unavailable_without_a_vulkan_device(exported_b1, subset, monkeypatch, tmp_path):
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "no-such-icd.json"))
    records = bench_models([exported_b1 / "cnn_float32.tflite", exported_b1 / "cnn_float32.onnx"], device="gpu",
                           data=str(subset), min_seconds=0.1)
    assert [r["status"] for r in records] == ["unavailable", "unavailable"]
    assert "no GPU adapter" in records[0]["reason"] and "VK_ICD_FILENAMES" in records[0]["reason"]
    assert "no GPU execution provider" in records[1]["reason"]
    r = CliRunner().invoke(main, ["bench", str(exported_b1 / "cnn_float32.tflite"), "--device", "gpu", "--data",
                                  str(subset)])
    assert_user_error(r, "no model ran")


def test_gpu_options_belong_to_gpu(exported_b1, subset):
    r = CliRunner().invoke(main, ["bench", str(exported_b1 / "cnn_float32.tflite"), "--allow-cpu-fallback",
                                  "--data", str(subset)])
    assert r.exit_code == 2 and "apply to --device gpu only" in r.output


def test_missing_delegate_library_is_unavailable(exported_b1, subset, tmp_path):
    records = bench_models([exported_b1 / "cnn_float32.tflite"], device="gpu", delegate=str(tmp_path / "libnone.so"),
                           data=str(subset), min_seconds=0.1)
    assert records[0]["status"] == "unavailable" and "cannot load the delegate" in records[0]["reason"]
