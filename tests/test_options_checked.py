"""Options are checked before anything runs, `--seed` repeats a training, and listings are instant.

Builder options (``-o KEY=VALUE``), edgefer.toml keys and train/qat ranges each fail as one line
naming the value and what is valid; `edgefer models` and the trivial errors never import TensorFlow.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import pick_rows, write_subset_npz

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_same_seed_trains_the_same_weights(fer, tmp_path):
    """Shuffle, augmentation and mixup are all drawn from --seed: two trainings give the same weights."""
    from edge_fer.models import load_model
    from edge_fer.training import TrainConfig, train

    data = write_subset_npz(tmp_path / "d.npz", fer, pick_rows(fer, 96, seed=1))
    cfg = dict(model="cnn", data=str(data), epochs=2, batch_size=32, mixup=0.2, model_options={"width": 0.25})
    runs = [train(TrainConfig(**cfg, seed=seed), tmp_path / name, verbose=0)
            for name, seed in (("a", 7), ("b", 7), ("c", 8))]
    hist = [json.loads((r.run_dir / "history.json").read_text()) for r in runs]
    last = [r.run_dir / json.loads((r.run_dir / "state.json").read_text())["last"] for r in runs]
    weights = [load_model(p).get_weights() for p in last]
    assert [h["loss"] for h in hist[0]] == [h["loss"] for h in hist[1]]
    assert [h["val_accuracy"] for h in hist[0]] == [h["val_accuracy"] for h in hist[1]]
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))
    assert not all(np.array_equal(a, b) for a, b in zip(weights[0], weights[2]))  # the seed is what decides
