"""Make the embedded FER2013 sample that ships inside the package.

    python scripts/make_sample.py ../shared/data/fer2013.npz

A class-stratified random sample (fixed seed) of each FER2013 Usage, stored as uint8 with
the source row numbers, so every face can be traced back to the full dataset.
"""

import json
import sys
from pathlib import Path

import numpy as np

PER_USAGE = {"Training": 1800, "PublicTest": 400, "PrivateTest": 600}
SEED = 2013
OUT = Path(__file__).resolve().parents[1] / "edge_fer" / "data" / "sample"


def main(src: str) -> None:
    d = np.load(src)
    rng = np.random.default_rng(SEED)
    picked = []
    for usage, n in PER_USAGE.items():
        idx = np.flatnonzero(d["usage"] == usage)
        labels = d["labels"][idx]
        for c in range(7):
            members = idx[labels == c]
            k = max(1, round(n * len(members) / len(idx)))
            picked.append(rng.choice(members, size=k, replace=False))
    rows = np.sort(np.concatenate(picked))
    np.savez_compressed(OUT / "fer2013_sample.npz", pixels=d["pixels"][rows], labels=d["labels"][rows],
                        usage=d["usage"][rows], row=d["row"][rows], classes=d["classes"])
    prov = {
        "what": "class-stratified random sample of FER2013, per Usage",
        "source": "FER2013 (Goodfellow et al., 'Challenges in Representation Learning', ICML 2013 workshop; "
                  "Kaggle fer2013.csv), all 35,887 rows in csv order",
        "rows_are": "row numbers of the Kaggle fer2013.csv (field 'row')",
        "seed": SEED,
        "per_usage": {u: int((d["usage"][rows] == u).sum()) for u in PER_USAGE},
        "per_usage_class": {u: np.bincount(d["labels"][rows][d["usage"][rows] == u], minlength=7).tolist()
                            for u in PER_USAGE},
        "made_by": "python scripts/make_sample.py ../shared/data/fer2013.npz",
        "licence_note": "FER2013 is distributed for research; the sample is for offline demos and tests.",
    }
    (OUT / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
    print(json.dumps(prov["per_usage"]), (OUT / "fer2013_sample.npz").stat().st_size, "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/fer2013.npz")
