"""FERPlus labels as FERPlus' authors derive them, for training and evaluation.

    from edge_fer.data.ferplus import ferplus_majority, ferplus_probability, read_ferplus_votes
    votes = read_ferplus_votes("fer2013new.csv", 35887)
    labels, reason = ferplus_majority(votes)        # -1 where dropped
    targets, reason = ferplus_probability(votes)    # vote distributions over our 7 classes

The faces of one split with these labels are :func:`edge_fer.data.labelled.load_ferplus_split`.

The rule is microsoft/FERPlus ``_process_data`` in ``majority`` mode: on each row's ten votes
(neutral … contempt, unknown, NF), a class with a single vote is treated as an outlier and set to
0; the row's label is the class holding more than half of the remaining votes, else the row is
"unknown". Rows whose label is unknown or not-a-face (NF) are dropped, as the authors' reader
drops them. FERPlus has an eighth class, contempt, that edge_fer's seven do not: rows whose
majority is contempt are dropped too (counted in ``dropped``), never folded into another class.

The soft targets follow the same code's ``probability`` mode: after the outlier removal, the
most-voted classes (ties together, at most three) are taken until they hold 75% of the votes;
the row is kept when they hold more than half of them and its top class is an emotion, and its
target is their votes normalised. As above, a row whose top class is contempt is dropped; a
contempt share below the top is removed and the rest renormalised.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError

# fer2013new.csv's vote columns, in its order.
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
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


def ferplus_probability(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, reason)`` from (N, 10) votes: float32 (N, 7) vote distributions in :data:`CLASSES`
    order (all zero where dropped), and ``reason`` per row as in :func:`ferplus_majority`."""
    raw = np.where(np.asarray(votes, dtype=np.float64) <= 1.0, 0.0, votes)  # single votes are outliers
    n, size = raw.shape
    total = raw.sum(axis=1)
    kept = np.zeros_like(raw)
    reason = np.full(n, "", dtype=object)
    for i in range(n):
        r, e = raw[i].copy(), kept[i]
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total[i] and count < 3 and valid:
            top = r.max()
            for j in range(size):
                if r[j] == top:
                    e[j], r[j] = top, 0.0
                    part += top
                    count += 1
                    if j >= 8:  # unknown or NF tied with the top: stop there
                        valid = False
                        if e.sum() > top:
                            e[j] = 0.0
                            count -= 1
                        break
        if total[i] <= 0 or e.sum() <= 0.5 * total[i] or count > 3:
            reason[i] = "no majority"
            continue
        name = FERPLUS_COLUMNS[int(e.argmax())]
        if name in ("unknown", "NF", "contempt"):
            reason[i] = {"NF": "not a face"}.get(name, name)
    targets = np.zeros((n, len(_TO_OURS)), dtype=np.float32)
    for col, ours in _TO_OURS.items():
        targets[:, ours] = kept[:, FERPLUS_COLUMNS.index(col)]
    mass = targets.sum(axis=1, keepdims=True)
    ok = (reason == "") & (mass[:, 0] > 0)
    reason = np.where((reason == "") & ~ok, "no majority", reason).astype(str)
    targets = np.where(ok[:, None], targets / np.maximum(mass, 1e-9), 0.0).astype(np.float32)
    return targets, reason
