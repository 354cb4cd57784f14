"""Inputs of ``edgefer predict``: image files, folders, globs, video files and cameras, streamed.

Images are read whole (PIL, EXIF orientation applied); videos and cameras one frame at a time
(OpenCV, the `edge_fer[camera]` extra), so memory stays bounded however long the video is.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.loaders import IMAGE_SUFFIXES  # one list for training folders and predict
from ..errors import ConfigError, DataError

# Images with more pixels than this are refused from their header, before anything is decoded: a
# small file may declare 20,000×20,000 pixels (a decompression bomb) and decode into gigabytes.
# A 108-megapixel phone photo passes; `edgefer predict --max-pixels` raises it.
DEFAULT_MAX_PIXELS = 180_000_000

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"}


@dataclass(frozen=True)
class Source:
    kind: str            # "image", "video", "camera", or "unknown" (named explicitly, suffix unknown)
    path: Path | None
    camera: int | None = None
    name: str = ""       # shown in records: the path as found, or camera:N


def expand_inputs(inputs, camera: int | None = None) -> tuple[list[Source], list[str]]:
    """Sources in a stable order, and one problem line per input that matched nothing.

    Folders are searched recursively for image and video files; globs are expanded here too (for
    quoted patterns and Windows shells)."""
    sources: list[Source] = []
    problems: list[str] = []
    seen = set()

    def add(p: Path, explicit: bool):
        key = p.resolve()
        if key in seen:
            return
        suffix = p.suffix.lower()
        kind = "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None
        if kind is None and not explicit:
            return
        seen.add(key)
        sources.append(Source(kind or "unknown", p, name=str(p)))

    for item in inputs:
        item = str(item)
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file())
            before = len(sources)
            for q in found:
                add(q, explicit=False)
            if len(sources) == before:
                problems.append(f"{p}: no image or video files in this folder "
                                f"({', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
        elif p.is_file():
            add(p, explicit=True)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                problems.append(f"{item}: the pattern matched no files")
            for q in files:
                add(q, explicit=False)
        else:
            problems.append(f"{item}: no such file or folder")
    if camera is not None:
        sources.append(Source("camera", None, camera=camera, name=f"camera:{camera}"))
    return sources, problems


def read_image(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """RGB uint8 (H,W,3); DataError with the reason for empty, missing or undecodable files, and
    for images above ``max_pixels`` (checked from the header, before decoding; None: no limit)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    # Pillow's own guard (a warning above 89 MP, an exception above 179 MP) is replaced by ours, which
    # says the size, the limit and how to raise it.
    guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty file (0 bytes); skipped")
        with Image.open(path) as im:
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise DataError(f"{path}: {w}×{h} = {w * h:,} pixels, above the limit of {max_pixels:,} (a guard "
                                   f"against decompression bombs); skipped; to read it pass --max-pixels {w * h} "
                                   "(max_pixels= in Python)")
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {str(e)[:120]}); skipped") from None
    except MemoryError:
        raise DataError(f"{path}: too large to decode in this machine's memory; skipped; lower --max-pixels to "
                           "refuse such images from their header") from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard


@dataclass
class VideoInfo:
    fps: float
    frames: int | None
    width: int
    height: int


class VideoReader:
    """Frames of a video file or camera as RGB uint8, one at a time; ``every`` keeps 1 frame in N."""

    def __init__(self, source: Source, every: int = 1, max_frames: int | None = None):
        import cv2

        if every < 1:
            raise ConfigError(f"--every must be ≥ 1, got {every}")
        self.source, self.every, self.max_frames = source, every, max_frames
        if source.kind == "camera":
            self.cap = cv2.VideoCapture(source.camera)
            what = f"camera {source.camera}"
            fix = "check --camera, permissions (video group) and that no other program holds it"
        else:
            if source.path.stat().st_size == 0:
                raise DataError(f"{source.path}: empty file (0 bytes); skipped")
            self.cap = cv2.VideoCapture(str(source.path))
            what = str(source.path)
            fix = "not a video OpenCV can decode; skipped"
        if not self.cap.isOpened():
            self.cap.release()
            raise DataError(f"{what}: could not be opened ({fix})")
        fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        n = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.info = VideoInfo(fps=fps if fps > 0 else 30.0, frames=n if n > 0 and source.kind != "camera" else None,
                              width=int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                              height=int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(frame index, time in s, RGB frame) for every kept frame."""
        import cv2

        index, kept = 0, 0
        try:
            while True:
                if index % self.every == 0:
                    ok, frame = self.cap.read()
                    if not ok:
                        break
                    yield index, index / self.info.fps, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    kept += 1
                    if self.max_frames and kept >= self.max_frames:
                        break
                elif not self.cap.grab():  # skipped frames are grabbed, not decoded
                    break
                index += 1
        finally:
            self.cap.release()

    def kept_frames(self) -> int | None:
        if self.info.frames is None:
            return self.max_frames
        n = -(-self.info.frames // self.every)
        return min(n, self.max_frames) if self.max_frames else n
