"""Labelled faces from other datasets, their class names mapped to edge_fer's, for evaluation only.

    from edge_fer.data.labelled import read_labelled, load_eval_set
    s = read_labelled("ckplus48.npz", drop=["contempt"])       # CK+48: anger→angry, sadness→sad …
    s = load_eval_set("fer2013.npz", "test", ferplus="fer2013new.csv")   # FERPlus majority labels
    s.x, s.y, s.source                                          # uint8 (N,48,48), int64 (N,), a name

A dataset names its classes its own way ("happiness", "anger", "surprised" …). Names are matched
by :data:`CLASS_ALIASES`; ``class_map`` maps any other name ("contempt=disgust"), and ``drop``
leaves a class out. A class that is neither ours, an alias, mapped nor dropped is an error that
says how to map or drop it, so no face is ever scored against a class the models do not have.

Sources: an ``.npz`` with ``pixels`` and either string labels (``label``/``labels``/``emotion``/
``expression``/``class`` or any ``*_label`` field, e.g. CK+48's ``ck_label``) or integer ``labels``
with the names in ``classes``; a ``.csv`` with ``pixels`` and a label column (names, or integers in
edge_fer's order), ``Usage`` optional; a folder ``ROOT/<class>/*`` or ``ROOT/<split>/<class>/*``.
FER2013 itself (npz/csv with Usage, the Kaggle folders) is read by :func:`edge_fer.data.load_fer`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..labels import CLASSES, IMAGE_SIZE, OFFICIAL_SPLITS
from .loaders import _FOLDER_USAGE, IMAGE_SUFFIXES, read_face_image

log = logging.getLogger(__name__)

# Other datasets' names for our classes (lower case; matched after stripping spaces, '-' and '_').
CLASS_ALIASES: dict[str, str] = {
    **{c: c for c in CLASSES},
    "anger": "angry", "angered": "angry", "mad": "angry",
    "disgusted": "disgust", "disgusting": "disgust",
    "fearful": "fear", "afraid": "fear", "scared": "fear", "fearfulness": "fear",
    "happiness": "happy", "joy": "happy", "joyful": "happy", "smile": "happy", "smiling": "happy",
    "sadness": "sad", "unhappy": "sad", "sorrow": "sad",
    "surprised": "surprise", "suprise": "surprise", "surprising": "surprise",
    "neutrality": "neutral", "none": "neutral", "calm": "neutral",
}
LABEL_FIELDS = ("label", "labels", "emotion", "expression", "class")
SPLIT_USAGE = {v: k for k, v in OFFICIAL_SPLITS.items()}  # test → PrivateTest …


def _key(name: str) -> str:
    return "".join(ch for ch in str(name).strip().lower() if ch not in " -_")


@dataclass
class LabelledSet:
    """Faces to evaluate on: ``x`` uint8 (N,48,48), ``y`` int64 (N,) in :data:`CLASSES` order."""

    x: np.ndarray
    y: np.ndarray
    source: str
    split: str = "all"
    dropped: dict[str, int] = field(default_factory=dict)  # faces left out, by reason
    extra: dict = field(default_factory=dict)  # e.g. FER2013 labels of the same faces

    def __len__(self) -> int:
        return len(self.y)

    def describe(self) -> str:
        return f"{self.source} [{self.split}, {len(self)} faces]"


def parse_class_map(value) -> dict[str, str]:
    """``"contempt=disgust,happiness=happy"`` (or a list of such items) → {their name: our class}."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out = {}
    for item in (p for v in items if v for p in str(v).split(",")):
        if not item.strip():
            continue
        theirs, sep, ours = item.partition("=")
        if not sep or not theirs.strip() or _key(ours) not in CLASS_ALIASES:
            raise ConfigError(f"bad class mapping {item.strip()!r}; expected THEIRS=OURS with OURS one of "
                              f"{', '.join(CLASSES)}, e.g. --class-map contempt=disgust")
        out[_key(theirs)] = CLASS_ALIASES[_key(ours)]
    return out


def class_lookup(names, *, class_map=None, drop=(), source: str = "the data") -> dict[str, int]:
    """{their name: our class index, or -1 when dropped}; an unknown name is one DataError with the fix."""
    mapping = parse_class_map(class_map) if not isinstance(class_map, dict) else {_key(k): v for k, v in class_map.items()}
    dropped = {_key(d) for d in (drop or ())}
    out, unknown = {}, []
    for name in names:
        k = _key(name)
        if k in dropped:
            out[name] = -1
        elif k in mapping:
            out[name] = CLASSES.index(mapping[k])
        elif k in CLASS_ALIASES:
            out[name] = CLASSES.index(CLASS_ALIASES[k])
        else:
            unknown.append(str(name))
    if unknown:
        first = unknown[0]
        raise DataError(
            f"{source}: class {', '.join(repr(u) for u in unknown)} is not one of edge_fer's classes "
            f"({', '.join(CLASSES)}); leave it out with --drop-class {first} or map it with --class-map {first}=CLASS")
    return out


def _apply(names: np.ndarray, lookup: dict[str, int]) -> tuple[np.ndarray, dict[str, int]]:
    y = np.array([lookup[n] for n in names.tolist()], dtype=np.int64)
    gone = {f"class {n}": int((names == n).sum()) for n, v in lookup.items() if v < 0 and (names == n).any()}
    return y, gone


def read_labelled(path: str | Path, *, class_map=None, drop=(), split: str | None = None) -> LabelledSet:
    """Read another labelled dataset (npz, csv or folder) with its class names mapped to ours.

    ``split``: train/validation/test; used only when the data has a Usage column or split folders
    (then only that split's faces are kept), otherwise every face is evaluated (split ``all``)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; pass --data PATH to a labelled .npz, .csv or image folder")
    if p.is_dir():
        x, names, usage = _read_folder(p)
    elif p.suffix.lower() == ".npz":
        x, names, usage = _read_npz(p)
    elif p.suffix.lower() == ".csv":
        x, names, usage = _read_csv(p)
    else:
        raise DataError(f"{p}: unknown data format {p.suffix!r}; expected a labelled .npz, .csv or image folder")
    names = np.asarray([str(n).strip() for n in names])
    lookup = class_lookup(sorted(set(names.tolist())), class_map=class_map, drop=drop, source=str(p))
    y, dropped = _apply(names, lookup)
    keep = y >= 0
    which = "all"
    if usage is not None and split is not None and split != "all":
        want = SPLIT_USAGE.get(split)
        if want is None:
            raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLIT_USAGE)} or all")
        in_split = usage == want
        if in_split.any():
            keep &= in_split
            which = split
        else:
            log.info("%s: no %s faces; evaluating all of them", p, want)
    x, y = x[keep], y[keep]
    if len(y) == 0:
        raise DataError(f"{p}: no faces left after dropping {', '.join(dropped) or 'nothing'}; check --drop-class")
    log.info("%s: %d faces%s", p, len(y), f" (left out: {dropped})" if dropped else "")
    return LabelledSet(x=x, y=y, source=str(p), split=which, dropped=dropped)


def _check_pixels(p: Path, pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 3 or pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or pixels.dtype != np.uint8:
        raise DataError(f"{p}: pixels are {pixels.dtype} {pixels.shape}; expected uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE})")
    return pixels


def _read_npz(p: Path):
    try:
        with np.load(p, allow_pickle=False) as d:
            files = list(d.files)
            arrays = {k: d[k] for k in files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError …
        raise DataError(f"{p}: not a readable npz ({e}); expected an npz with pixels and labels") from None
    if "pixels" not in arrays:
        raise DataError(f"{p}: no 'pixels' array (has {', '.join(files)}); expected pixels (N,48,48) uint8 and labels")
    pixels = _check_pixels(p, arrays["pixels"])
    string_fields = [k for k in (*LABEL_FIELDS, *sorted(f for f in files if f.endswith("_label")))
                     if k in arrays and arrays[k].dtype.kind in "US" and len(arrays[k]) == len(pixels)]
    if string_fields:
        names = arrays[string_fields[0]].astype(str)
    elif "labels" in arrays and "classes" in arrays:
        classes = arrays["classes"].astype(str)
        labels = arrays["labels"].astype(np.int64)
        bad = sorted(set(np.unique(labels).tolist()) - set(range(len(classes))))
        if bad:
            raise DataError(f"{p}: label(s) {bad} have no name in 'classes' ({', '.join(classes)}); store the class "
                            "names as strings (e.g. a 'label' array) to evaluate these faces")
        names = classes[labels]
    elif "labels" in arrays:
        labels = arrays["labels"].astype(np.int64)
        if set(np.unique(labels).tolist()) - set(range(len(CLASSES))):
            raise DataError(f"{p}: integer labels outside 0–{len(CLASSES) - 1} and no 'classes' names; add "
                            "a 'classes' array naming each label")
        names = np.asarray(CLASSES)[labels]
    else:
        raise DataError(f"{p}: no labels (has {', '.join(files)}); expected string labels ('label', 'emotion', "
                        "'*_label') or integer 'labels' with 'classes'")
    if len(names) != len(pixels):
        raise DataError(f"{p}: {len(pixels)} images but {len(names)} labels")
    usage = arrays["usage"].astype(str) if "usage" in arrays and len(arrays["usage"]) == len(pixels) else None
    return pixels, names, usage


def _read_csv(p: Path):
    n_pixels = IMAGE_SIZE * IMAGE_SIZE
    try:
        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{p}: not a readable csv ({e}); expected columns pixels and a label column") from None
    if not rows:
        raise DataError(f"{p}: the file is empty; expected a header with pixels and a label column")
    header = [h.strip().lstrip("\ufeff").lower() for h in rows[0]]
    label_col = next((header.index(c) for c in LABEL_FIELDS if c in header), None)
    if "pixels" not in header or label_col is None:
        raise DataError(f"{p}: header is {','.join(header)!r}; expected a 'pixels' column and one of "
                        f"{', '.join(LABEL_FIELDS)}")
    i_pix = header.index("pixels")
    i_use = header.index("usage") if "usage" in header else None
    pixels, names, usage = [], [], []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        values = row[i_pix].split() if len(row) > i_pix else []
        if len(values) != n_pixels or not all(v.isdigit() and int(v) <= 255 for v in values):
            raise DataError(f"{p}:{line_no}: expected {n_pixels} pixel values 0–255, got {len(values)} values; "
                            "fix or remove the row")
        label = row[label_col].strip()
        if label.isdigit():
            if int(label) >= len(CLASSES):
                raise DataError(f"{p}:{line_no}: integer label {label} outside 0–{len(CLASSES) - 1} "
                                f"({', '.join(CLASSES)}); write class names instead")
            label = CLASSES[int(label)]
        pixels.append(np.array(values, dtype=np.uint8))
        names.append(label)
        usage.append(row[i_use].strip() if i_use is not None and len(row) > i_use else "")
    if not pixels:
        raise DataError(f"{p}: no rows; expected one face per row")
    x = np.stack(pixels).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    return x, np.asarray(names), (np.asarray(usage) if i_use is not None else None)


def _read_folder(root: Path):
    from PIL import UnidentifiedImageError

    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    split_dirs = [d for d in subdirs if d.name.lower() in _FOLDER_USAGE]
    groups = [(d, _FOLDER_USAGE[d.name.lower()]) for d in split_dirs] if split_dirs else [(root, None)]
    pixels, names, usage = [], [], []
    for base, u in groups:
        for class_dir in sorted(d for d in base.iterdir() if d.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    pixels.append(read_face_image(f))
                except (UnidentifiedImageError, OSError, ValueError) as e:
                    raise DataError(f"{f}: unreadable image ({type(e).__name__}); replace or remove it") from None
                names.append(class_dir.name)
                usage.append(u or "")
    if not pixels:
        raise DataError(f"{root}: no images in class folders; expected ROOT/<class>/*.png or ROOT/<split>/<class>/*")
    return np.stack(pixels), np.asarray(names), (np.asarray(usage) if split_dirs else None)


def is_fer2013(path: str | Path) -> bool:
    """Whether ``path`` is FER2013 in one of the layouts :func:`edge_fer.data.load_fer` reads."""
    p = Path(path).expanduser()
    if p.is_dir():
        splits = [d for d in p.iterdir() if d.is_dir() and d.name.lower() in _FOLDER_USAGE]
        return bool(splits) and all(c.name.lower() in CLASSES for d in splits for c in d.iterdir() if c.is_dir())
    if p.suffix.lower() == ".npz" and p.is_file():
        try:
            with np.load(p, allow_pickle=False) as d:
                return "usage" in d.files and not any(
                    k in d.files and d[k].dtype.kind in "US" for k in LABEL_FIELDS)
        except Exception:
            return False
    if p.suffix.lower() == ".csv" and p.is_file():
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            header = [h.strip().lstrip("\ufeff") for h in next(csv.reader(f), [])]
        return {"emotion", "pixels", "Usage"} <= set(header)
    return True  # embedded sample / unknown: load_fer decides and explains


def load_ferplus_split(path, ferplus, split: str = "test"):
    """FER2013's ``split`` (official Usage) with FERPlus majority labels; the FER2013 labels of the
    same faces in ``extra["fer2013_y"]`` and the dropped rows counted by reason."""
    from .dataset import load_raw
    from .ferplus import ferplus_majority, read_ferplus_votes

    usage_of = {v: k for k, v in OFFICIAL_SPLITS.items()}
    if split not in usage_of:
        raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(usage_of)}")
    raw = load_raw(path)
    labels, reason = ferplus_majority(read_ferplus_votes(ferplus, len(raw.labels)))
    in_split = raw.usage == usage_of[split]
    keep = in_split & (labels >= 0)
    dropped = {r: int((in_split & (reason == r)).sum()) for r in ("no majority", "unknown", "not a face", "contempt")}
    return LabelledSet(x=raw.pixels[keep], y=labels[keep], source=f"{raw.source} + FERPlus {Path(ferplus).name}",
                       split=split, dropped={k: v for k, v in dropped.items() if v},
                       extra={"fer2013_y": raw.labels[keep], "classes": list(CLASSES)})


def load_eval_set(path, split: str = "test", *, class_map=None, drop=(), ferplus=None) -> LabelledSet:
    """The faces an evaluation scores: FER2013's ``split`` (with FERPlus majority labels when
    ``ferplus`` is given), or another labelled dataset with its classes mapped (see the module doc)."""
    from .dataset import load_fer

    if ferplus is not None:
        if class_map or drop:
            raise ConfigError("--class-map and --drop-class map another dataset's classes; FERPlus labels are "
                              "already edge_fer's (contempt is left out): drop them or --ferplus")
        return load_ferplus_split(path, ferplus, split)
    if path is not None and not is_fer2013(path):
        return read_labelled(path, class_map=class_map, drop=drop, split=split)
    if class_map or drop:
        raise ConfigError(f"{path or 'the embedded sample'} is FER2013, whose classes are edge_fer's; "
                          "--class-map and --drop-class are for another dataset's class names")
    data = load_fer(path)
    s = data[split]
    return LabelledSet(x=s.x, y=s.y, source=data.source, split=split)
