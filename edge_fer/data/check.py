"""``edgefer data check``: what is in a FER2013 source and what is wrong with it.

Counts per Usage and class, byte-identical duplicates within and across Usages (FER2013 has
test images copied in Training), blank (constant) images and duplicates with conflicting labels.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..labels import CLASSES, USAGES
from .dataset import load_raw


def check_data(path: str | Path | None, *, skip_bad: bool = False) -> dict:
    raw = load_raw(path, skip_bad=skip_bad)
    counts = {
        u: np.bincount(raw.labels[raw.usage == u], minlength=len(CLASSES)).tolist()
        for u in USAGES
        if (raw.usage == u).any()
    }
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, img in enumerate(raw.pixels):
        groups[hashlib.blake2b(img.tobytes(), digest_size=16).digest()].append(i)
    dup_groups = [g for g in groups.values() if len(g) > 1]

    within = {u: 0 for u in counts}
    across: dict[str, int] = defaultdict(int)  # "PrivateTest~Training": test rows with a copy in Training
    conflicting = 0
    for g in dup_groups:
        usages = raw.usage[g]
        for u in counts:
            n_u = int((usages == u).sum())
            if n_u > 1:
                within[u] += n_u
        present = set(usages.tolist())
        for u in present:
            for other in present - {u}:
                across[f"{u}~{other}"] += int((usages == u).sum())
        if len(set(raw.labels[g].tolist())) > 1:
            conflicting += 1

    flat = raw.pixels.reshape(len(raw.pixels), -1)
    blank = np.flatnonzero(flat.min(axis=1) == flat.max(axis=1))
    return {
        "source": raw.source,
        "rows": int(len(raw.labels)),
        "skipped_rows": len(raw.skipped),
        "classes": list(CLASSES),
        "per_usage_class": counts,
        "duplicates": {
            "groups": len(dup_groups),
            "rows_in_groups": int(sum(len(g) for g in dup_groups)),
            "rows_duplicated_within_usage": within,
            "rows_with_copy_in_other_usage": dict(sorted(across.items())),
            "groups_with_conflicting_labels": conflicting,
        },
        "blank_images": {"count": int(len(blank)), "rows": blank[:50].tolist()},
    }


def format_check(report: dict) -> str:
    """A readable table of :func:`check_data`'s report."""
    classes = report["classes"]
    width = max(len(c) for c in classes) + 1
    lines = [f"source: {report['source']}  ({report['rows']} rows, {report['skipped_rows']} skipped)", ""]
    lines.append("usage".ljust(12) + "".join(c[:width].rjust(width) for c in classes) + "total".rjust(8))
    for u, row in report["per_usage_class"].items():
        lines.append(u.ljust(12) + "".join(str(v).rjust(width) for v in row) + str(sum(row)).rjust(8))
    d = report["duplicates"]
    lines += [
        "",
        f"byte-identical duplicates: {d['rows_in_groups']} rows in {d['groups']} groups, "
        f"{d['groups_with_conflicting_labels']} groups with conflicting labels",
    ]
    for u, n in d["rows_duplicated_within_usage"].items():
        lines.append(f"  within {u}: {n} rows")
    for pair, n in d["rows_with_copy_in_other_usage"].items():
        a, b = pair.split("~")
        lines.append(f"  {a} rows with a copy in {b}: {n}")
    lines.append(f"blank images: {report['blank_images']['count']}")
    return "\n".join(lines)
