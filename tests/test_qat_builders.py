"""QAT on every registered builder: annotated fully, ranges warmed, reloadable, full-integer TFLite."""

import numpy as np
import pytest

from edge_fer.calibration import CalibrationSet
from edge_fer.data import load_fer
from edge_fer.export import convert
from edge_fer.export.exporter import float_ops
from edge_fer.export.runtimes import TFLiteRunner
from edge_fer.models import create_model, model_names
from edge_fer.quantization import load_qat_model, quantize_model, warm_up_ranges

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faces():
    return load_fer(None)["train"].x[:96].astype(np.float32)[..., None]


@pytest.mark.parametrize("name", model_names())
def test_qat_every_builder(name, faces, tmp_path):
    from edge_fer._tf import keras

    model = create_model(name)
    qat = quantize_model(model)
    assert model.get_weights()[0] is not None and qat is not model
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
    np.testing.assert_allclose(load_qat_model(path).predict(x, verbose=0), qat.predict(x, verbose=0), atol=1e-6)

    blob = convert.to_tflite(qat, "int8", calib=CalibrationSet(faces[:32], "sample"))
    (tmp_path / "m.tflite").write_bytes(blob)
    runner = TFLiteRunner(tmp_path / "m.tflite")
    assert float_ops(runner) == [], f"{name}: ops left in float"
    assert runner.predict(x.astype(np.uint8)[..., 0]).shape == (8, 7)
    keras().backend.clear_session()
