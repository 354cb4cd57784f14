"""Read FER2013 from the formats users have: Kaggle csv, Kaggle image folders, npz.

Each reader returns a :class:`RawFER`: every row's pixels, label and Usage, in file order.
Splitting (official or random) happens later, in :mod:`edge_fer.data.dataset`.

    from edge_fer.data.loaders import read_any
    raw = read_any("fer2013.csv")          # or a folder, or an .npz
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..labels import CLASSES, IMAGE_SIZE, USAGES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm"})
CSV_COLUMNS = ("emotion", "pixels", "Usage")
NPZ_FIELDS = ("pixels", "labels", "usage")


@dataclass
class RawFER:
    """All rows of a FER2013 source: ``pixels`` uint8 (N, 48, 48), ``labels`` int64 (N,), ``usage`` str (N,)."""

    pixels: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    source: str
    names: np.ndarray | None = None  # per-row file name or csv row, for reports
    skipped: list[str] = field(default_factory=list)  # one line per row skipped with --skip-bad

    def __post_init__(self) -> None:
        if len(self.pixels) == 0:
            raise DataError(f"{self.source}: no images found; point --data at a FER2013 csv, npz or image folder")


def read_any(path: str | Path, *, skip_bad: bool = False) -> RawFER:
    """Read ``path`` by its kind: a ``.csv``, an ``.npz`` or a folder of images."""
    p = Path(path).expanduser()
    if not p.exists():
        where = "" if p.is_absolute() else f" (a relative path, read from {Path.cwd()})"  # runs before absolute paths
        raise DataError(f"{p}: no such file or folder{where}; pass --data PATH to a FER2013 csv, npz or image folder")
    if p.is_dir():
        return read_folder(p, skip_bad=skip_bad)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return read_csv(p, skip_bad=skip_bad)
    if suffix == ".npz":
        return read_npz(p)
    raise DataError(f"{p}: unknown data format {suffix!r}; expected a Kaggle fer2013.csv, an .npz or an image folder")


def read_csv(path: Path, *, skip_bad: bool = False) -> RawFER:
    """Kaggle ``fer2013.csv``: columns ``emotion,pixels,Usage``; pixels are 2304 space-separated 0–255 values."""
    n_pixels = IMAGE_SIZE * IMAGE_SIZE
    pixels, labels, usage, names, skipped = [], [], [], [], []
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path and its permissions") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty; expected a header 'emotion,pixels,Usage'") from None
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: not a readable csv ({e}); expected Kaggle's fer2013.csv") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)} (header is {','.join(header)!r}); "
                "expected Kaggle's fer2013.csv with columns emotion,pixels,Usage"
            )
        i_emotion, i_pixels, i_usage = (header.index(c) for c in CSV_COLUMNS)
        try:
            for line_no, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    x, y, u = _parse_csv_row(row, i_emotion, i_pixels, i_usage, n_pixels)
                except ValueError as e:
                    msg = f"{path}:{line_no}: {e}"
                    if not skip_bad:
                        raise DataError(f"{msg}; fix or remove the row, or pass --skip-bad to skip bad rows") from None
                    skipped.append(msg)
                    continue
                pixels.append(x)
                labels.append(y)
                usage.append(u)
                names.append(f"row{line_no - 2}")
        except (UnicodeDecodeError, csv.Error) as e:
            raise DataError(f"{path}: not a readable csv ({e}); expected Kaggle's fer2013.csv") from None
    if skipped:
        log.warning("%s: skipped %d bad row(s); first: %s", path, len(skipped), skipped[0])
    if not pixels:
        raise DataError(f"{path}: no usable rows; expected Kaggle's fer2013.csv with rows emotion,pixels,Usage")
    return RawFER(
        pixels=np.stack(pixels).reshape(-1, IMAGE_SIZE, IMAGE_SIZE),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usage),
        source=str(path),
        names=np.asarray(names),
        skipped=skipped,
    )


def _parse_csv_row(row: list[str], i_emotion: int, i_pixels: int, i_usage: int, n_pixels: int):
    if len(row) <= max(i_emotion, i_pixels, i_usage):
        raise ValueError(f"{len(row)} field(s), expected at least {max(i_emotion, i_pixels, i_usage) + 1}")
    emotion = row[i_emotion].strip()
    if not emotion.isdigit() or int(emotion) >= len(CLASSES):
        raise ValueError(f"unknown emotion {emotion!r}; expected 0–{len(CLASSES) - 1} ({', '.join(CLASSES)})")
    usage = row[i_usage].strip()
    if usage not in USAGES:
        raise ValueError(f"unknown Usage {usage!r}; expected one of {', '.join(USAGES)}")
    values = row[i_pixels].split()
    if len(values) != n_pixels:
        raise ValueError(f"{len(values)} pixel values, expected {n_pixels} ({IMAGE_SIZE}x{IMAGE_SIZE})")
    try:
        x = np.array(values, dtype=np.int32)
    except ValueError:
        bad = next(v for v in values if not v.lstrip("-").isdigit())
        raise ValueError(f"non-numeric pixel value {bad!r}; pixels must be integers 0–255") from None
    if x.min() < 0 or x.max() > 255:
        raise ValueError(f"pixel value {int(x.min() if x.min() < 0 else x.max())} out of range 0–255")
    return x.astype(np.uint8), int(emotion), usage


def read_npz(path: Path) -> RawFER:
    """An npz with ``pixels`` (N,48,48) uint8, ``labels`` (N,) and ``usage`` (N,), like ../shared/data/fer2013.npz."""
    try:
        with np.load(path, allow_pickle=False) as d:
            missing = [k for k in NPZ_FIELDS if k not in d.files]
            if missing:
                raise DataError(
                    f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(d.files)}); "
                    "expected pixels (N,48,48) uint8, labels (N,) and usage (N,)"
                )
            pixels, labels, usage = d["pixels"], d["labels"], d["usage"].astype(str)
            names = d["kaggle_path"].astype(str) if "kaggle_path" in d.files else None
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, OSError …
        raise DataError(f"{path}: not a readable npz ({e}); expected an npz with pixels, labels and usage") from None
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 3 or pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or pixels.dtype != np.uint8:
        raise DataError(f"{path}: pixels are {pixels.dtype} {pixels.shape}; expected uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE})")
    if not (len(labels) == len(usage) == len(pixels)):
        raise DataError(f"{path}: {len(pixels)} images but {len(labels)} labels and {len(usage)} usage values")
    bad_labels = set(np.unique(labels).tolist()) - set(range(len(CLASSES)))
    if bad_labels:
        raise DataError(f"{path}: unknown label(s) {sorted(bad_labels)}; expected 0–{len(CLASSES) - 1}")
    bad_usage = set(np.unique(usage).tolist()) - set(USAGES)
    if bad_usage:
        raise DataError(f"{path}: unknown usage value(s) {sorted(bad_usage)}; expected {', '.join(USAGES)}")
    return RawFER(pixels=pixels, labels=labels.astype(np.int64), usage=usage, source=str(path), names=names)


# Kaggle "images in folders": train/<class>/*.jpg and test/<class>/*.jpg; test file names start
# with PublicTest_ or PrivateTest_ in the FER2013 export. Other folder names are accepted as aliases.
_FOLDER_USAGE = {
    "train": "Training", "training": "Training",
    "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest", "publictest": "PublicTest",
    "test": "PrivateTest", "privatetest": "PrivateTest",
}


def read_face_image(path: Path) -> np.ndarray:
    """One image file as a 48×48 uint8 grey face (converted to grey, resized bilinearly when not 48×48).
    An unreadable file raises PIL's ``UnidentifiedImageError``, ``OSError`` or ``ValueError``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if im.size != (IMAGE_SIZE, IMAGE_SIZE):
            im = im.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def read_folder(root: Path, *, skip_bad: bool = False) -> RawFER:
    """``root/{train,test}/<class>/<image>``; class folders named as in :data:`CLASSES`."""
    from PIL import UnidentifiedImageError

    split_dirs = sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() in _FOLDER_USAGE)
    if not split_dirs:
        raise DataError(
            f"{root}: no train/ or test/ folder; expected the Kaggle layout "
            f"train/<class>/*.jpg and test/<class>/*.jpg with classes {', '.join(CLASSES)}"
        )
    pixels, labels, usage, names, skipped = [], [], [], [], []
    for split_dir in split_dirs:
        default_usage = _FOLDER_USAGE[split_dir.name.lower()]
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            if class_dir.name.lower() not in CLASSES:
                raise DataError(
                    f"{class_dir}: unknown class folder {class_dir.name!r}; expected one of {', '.join(CLASSES)}"
                )
            label = CLASSES.index(class_dir.name.lower())
            for f in sorted(class_dir.iterdir()):
                if not f.is_file() or f.name.startswith("."):
                    continue
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    msg = f"{f}: not an image file (suffix {f.suffix or 'none'!r})"
                    if not skip_bad:
                        raise DataError(f"{msg}; remove it, or pass --skip-bad to skip such files")
                    skipped.append(msg)
                    continue
                try:
                    x = read_face_image(f)
                except (UnidentifiedImageError, OSError, ValueError) as e:
                    msg = f"{f}: unreadable image ({type(e).__name__})"
                    if not skip_bad:
                        raise DataError(f"{msg}; replace or remove it, or pass --skip-bad to skip such files") from None
                    skipped.append(msg)
                    continue
                u = default_usage
                if f.name.startswith("PublicTest_"):
                    u = "PublicTest"
                elif f.name.startswith("PrivateTest_"):
                    u = "PrivateTest"
                pixels.append(x)
                labels.append(label)
                usage.append(u)
                names.append(str(f.relative_to(root)))
    if skipped:
        log.warning("%s: skipped %d bad file(s); first: %s", root, len(skipped), skipped[0])
    if not pixels:
        raise DataError(
            f"{root}: the folders hold no images; expected train/<class>/*.jpg and test/<class>/*.jpg"
        )
    return RawFER(
        pixels=np.stack(pixels),
        labels=np.asarray(labels, dtype=np.int64),
        usage=np.asarray(usage),
        source=str(root),
        names=np.asarray(names),
        skipped=skipped,
    )
