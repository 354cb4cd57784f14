"""FERPlus majority labels as FERPlus' authors derive them, for evaluation.

    from edge_fer.data.ferplus import ferplus_majority, read_ferplus_votes
    labels, reason = ferplus_majority(read_ferplus_votes("fer2013new.csv", 35887))   # -1 where dropped

The faces of one split with these labels are :func:`edge_fer.data.labelled.load_ferplus_split`.

The rule is microsoft/FERPlus ``_process_data`` in ``majority`` mode: on each row's ten votes
(neutral … contempt, unknown, NF), a class with a single vote is treated as an outlier and set to
0; the row's label is the class holding more than half of the remaining votes, else the row is
"unknown". Rows whose label is unknown or not-a-face (NF) are dropped, as the authors' reader
drops them. FERPlus has an eighth class, contempt, that edge_fer's seven do not: rows whose
majority is contempt are dropped too (counted in ``dropped``), never folded into another class.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError
from .loaders import FERPLUS_COLUMNS

# FERPlus column → our class index (contempt, unknown and NF have none).
_TO_OURS = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6}


def read_ferplus_votes(path: str | Path, n_rows: int) -> np.ndarray:
    """All ten vote columns of fer2013new.csv, float (N, 10) in :data:`FERPLUS_COLUMNS` order, row-aligned."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file; pass --ferplus PATH to Microsoft's fer2013new.csv")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        missing = [c for c in FERPLUS_COLUMNS if c not in header]
        if missing:
            raise DataError(f"{p}: missing FERPlus column(s) {', '.join(missing)}; expected Microsoft's fer2013new.csv")
        idx = [header.index(c) for c in FERPLUS_COLUMNS]
        rows = list(reader)
    if len(rows) != n_rows:
        raise DataError(f"{p}: {len(rows)} FERPlus rows but the dataset has {n_rows}; FERPlus aligns by row with "
                        "the full FER2013 csv, so use it only with the complete 35,887-row dataset")
    votes = np.zeros((n_rows, len(FERPLUS_COLUMNS)), dtype=np.float64)
    for i, row in enumerate(rows):
        try:
            votes[i] = [float(row[j] or 0) for j in idx]
        except (ValueError, IndexError):
            raise DataError(f"{p}:{i + 2}: vote counts must be numbers; fix the row") from None
    return votes


def ferplus_majority(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, reason)`` from (N, 10) votes: labels in :data:`CLASSES` order, -1 where dropped;
    ``reason`` per row: "" kept, or "no majority", "unknown", "not a face", "contempt"."""
    v = np.where(np.asarray(votes, dtype=np.float64) <= 1.0, 0.0, votes)  # single votes are outliers
    total = v.sum(axis=1)
    top = v.argmax(axis=1)
    has_majority = v.max(axis=1) > 0.5 * total
    names = np.asarray(FERPLUS_COLUMNS)[top]
    reason = np.where(~has_majority, "no majority",
                      np.where(names == "unknown", "unknown",
                               np.where(names == "NF", "not a face",
                                        np.where(names == "contempt", "contempt", ""))))
    to_ours = np.array([_TO_OURS.get(c, -1) for c in FERPLUS_COLUMNS])
    labels = np.where(reason == "", to_ours[top], -1).astype(np.int64)
    return labels, reason
