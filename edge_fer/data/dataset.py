"""FER2013 as train / validation / test splits, from any source, with optional FERPlus labels.

    from edge_fer.data import load_fer
    data = load_fer("fer2013.csv")                 # official splits
    data = load_fer(None)                          # the embedded sample
    data = load_fer("fer2013.npz", ferplus="fer2013new.csv", label_mode="soft")
    x, y = data["train"].x, data["train"].y        # uint8 (N,48,48), int64 (N,)
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import CLASSES, NUM_CLASSES, OFFICIAL_SPLITS, SPLITS
from .loaders import RawFER, read_any

log = logging.getLogger(__name__)

SPLIT_MODES = ("official", "random80")
LABEL_MODES = ("hard", "soft")
SAMPLE_NAME = "embedded"
SAMPLE_FILE = "fer2013_sample.npz"


@dataclass
class Split:
    """One split: ``x`` uint8 (N,48,48), ``y`` int64 (N,), ``targets`` float32 (N,7) used for training."""

    name: str
    x: np.ndarray
    y: np.ndarray
    targets: np.ndarray
    rows: np.ndarray  # row index in the source, to trace any image back

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self) -> list[int]:
        return np.bincount(self.y, minlength=NUM_CLASSES).tolist()


@dataclass
class FERData:
    splits: dict[str, Split]
    source: str
    split_mode: str
    label_mode: str
    ferplus: str | None
    skipped: int = 0

    def __getitem__(self, name: str) -> Split:
        if name not in self.splits:
            raise ConfigError(f"unknown split {name!r}; expected one of {', '.join(self.splits)}")
        return self.splits[name]

    def summary(self) -> dict:
        return {
            "source": self.source,
            "split_mode": self.split_mode,
            "label_mode": self.label_mode,
            "ferplus": self.ferplus,
            "skipped_rows": self.skipped,
            "classes": list(CLASSES),
            "splits": {n: {"size": len(s), "per_class": s.class_counts()} for n, s in self.splits.items()},
        }


def sample_path() -> Path:
    """Path of the embedded FER2013 sample that ships inside the package."""
    return Path(str(resources.files("edge_fer.data") / "sample" / SAMPLE_FILE))


def sample_provenance() -> dict:
    return json.loads((sample_path().parent / "provenance.json").read_text())


def resolve_data_path(path: str | Path | None) -> Path:
    """``None`` or ``"embedded"`` means the embedded sample; anything else is a user path."""
    if path is None or str(path) == SAMPLE_NAME:
        return sample_path()
    return Path(path).expanduser()


def load_raw(path: str | Path | None, *, skip_bad: bool = False) -> RawFER:
    return read_any(resolve_data_path(path), skip_bad=skip_bad)


def load_fer(
    path: str | Path | None = None,
    *,
    split_mode: str = "official",
    ferplus: str | Path | None = None,
    label_mode: str = "hard",
    skip_bad: bool = False,
    seed: int = 0,
) -> FERData:
    """Load FER2013 from ``path`` (csv, npz, image folder; ``None`` = embedded sample) and split it.

    ``split_mode="official"``: Training → train, PublicTest → validation, PrivateTest → test.
    When a source has no PublicTest rows (an image folder without the Kaggle file prefixes),
    validation is a stratified 10% of train, so the test split is never used for selection.
    ``split_mode="random80"``: the study's stratified random 80/20 train/test split of all rows,
    with validation a stratified 10% of that train part.

    ``ferplus``: Microsoft's fer2013new.csv, aligned by row, with labels derived as FERPlus'
    authors do (:mod:`edge_fer.data.ferplus`; contempt, unknown and not-a-face rows are left out).
    Validation and test always hold the majority label of the faces that have one, so a model is
    selected and reported on the same faces whichever targets it learned; training targets are
    the majority one-hot (``label_mode="hard"``) or the vote distribution of every face FERPlus'
    ``probability`` mode keeps (``"soft"``).
    """
    if split_mode not in SPLIT_MODES:
        raise ConfigError(f"unknown split mode {split_mode!r}; expected one of {', '.join(SPLIT_MODES)}")
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"unknown label mode {label_mode!r}; expected one of {', '.join(LABEL_MODES)}")
    if label_mode == "soft" and ferplus is None:
        raise ConfigError("soft labels need FERPlus votes; pass --ferplus PATH/fer2013new.csv or use hard labels")
    raw = load_raw(path, skip_bad=skip_bad)
    n = len(raw.labels)
    labels = raw.labels
    targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    keep = np.ones(n, dtype=bool)
    train_keep = keep
    if ferplus is not None:
        if raw.skipped:
            raise DataError("FERPlus labels align by row, so they cannot be combined with --skip-bad; fix the bad rows")
        labels, targets, keep, train_keep = _ferplus_labels(ferplus, n, label_mode)

    rows = np.arange(n)
    rng = np.random.default_rng(seed)
    if split_mode == "official":
        index = {s: rows[(train_keep if s == "train" else keep) & (raw.usage == u)] for u, s in OFFICIAL_SPLITS.items()}
        if len(index["validation"]) == 0 and len(index["train"]) > 0:
            index["train"], index["validation"] = _stratified_split(index["train"], labels, 0.1, rng)
            log.info("no PublicTest rows in %s: validation is a stratified 10%% of train", raw.source)
    else:
        train_all, test = _stratified_split(rows[keep], labels, 0.2, rng)
        train, validation = _stratified_split(train_all, labels, 0.1, rng)
        index = {"train": train, "validation": validation, "test": test}

    one_hot = np.eye(NUM_CLASSES, dtype=np.float32)
    splits = {  # soft targets are for training; validation and test score the label
        s: Split(s, raw.pixels[idx], labels[idx], targets[idx] if s == "train" else one_hot[labels[idx]], idx)
        for s, idx in ((s, index[s]) for s in SPLITS)
    }
    return FERData(
        splits=splits,
        source=raw.source,
        split_mode=split_mode,
        label_mode=label_mode,
        ferplus=str(ferplus) if ferplus else None,
        skipped=len(raw.skipped),
    )


def _ferplus_labels(path, n: int, label_mode: str):
    """``(labels, targets, keep, train_keep)`` of every row from FERPlus votes: majority labels and
    their rows (``keep``, for validation and test), and the training targets and rows of ``label_mode``."""
    from .ferplus import ferplus_majority, ferplus_probability, read_ferplus_votes

    votes = read_ferplus_votes(path, n)
    majority, reason = ferplus_majority(votes)
    keep = majority >= 0
    if label_mode == "soft":
        targets, soft_reason = ferplus_probability(votes)
        train_keep = soft_reason == ""
        labels = np.where(keep, majority, targets.argmax(axis=1)).astype(np.int64)
    else:
        train_keep = keep
        labels = np.where(keep, majority, 0).astype(np.int64)
        targets = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    log.info("FERPlus: %d face(s) with a majority label (left out: %s); %d training target(s) in %s mode",
             int(keep.sum()), ", ".join(f"{r} {int((reason == r).sum())}" for r in sorted(set(reason) - {""})),
             int(train_keep.sum()), label_mode)
    return labels, targets, keep, train_keep


def _stratified_split(idx: np.ndarray, labels: np.ndarray, fraction: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (rest, part) with ``fraction`` of every class in ``part``."""
    part = []
    for c in range(NUM_CLASSES):
        members = idx[labels[idx] == c]
        k = int(round(len(members) * fraction))
        part.append(rng.permutation(members)[:k])
    part_idx = np.sort(np.concatenate(part)) if part else np.array([], dtype=int)
    rest = np.setdiff1d(idx, part_idx)
    return rest, part_idx
