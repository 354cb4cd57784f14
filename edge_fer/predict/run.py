"""``edgefer predict``: every input through a Recognizer, to annotated files and JSON Lines / CSV.

    summary = predict_inputs(["photos/", "clip.mp4"], Recognizer("cnn_int8"), out="runs/predict")

Records are written as they are made (one line per face per frame) into a temporary file that
becomes ``--json`` when the run ends, also on Ctrl-C, so finished work is never lost and a
reader never sees a half-written file. An unreadable input is one line on stderr and an
``error`` record; the other inputs still run.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, EdgeFerError
from .recognizer import Recognizer
from .sources import DEFAULT_MAX_PIXELS, Source, VideoReader, expand_inputs, read_image

log = logging.getLogger("edge_fer")

VIDEO_DETECT_SIZE = 320

_COLOURS = {"angry": (220, 40, 40), "disgust": (120, 170, 30), "fear": (150, 60, 200), "happy": (250, 200, 0),
            "sad": (40, 90, 220), "surprise": (250, 120, 0), "neutral": (200, 200, 200)}


def annotate(rgb: np.ndarray, records: list[dict]) -> np.ndarray:
    """A copy of the frame with each face's box, label and probability drawn (Pillow)."""
    from PIL import Image, ImageDraw, ImageFont

    im = Image.fromarray(np.ascontiguousarray(rgb))
    draw = ImageDraw.Draw(im)
    thick = max(1, round(max(rgb.shape[:2]) / 400))
    for r in records:
        if r.get("status") != "ok":
            continue
        x, y, w, h = (int(round(v)) for v in r["box"])
        colour = _COLOURS.get(r["label"], (0, 255, 0))
        draw.rectangle((x, y, x + w, y + h), outline=colour, width=thick)
        for px, py in (r.get("landmarks") or {}).values():
            rad = thick + 1
            draw.ellipse((px - rad, py - rad, px + rad, py + rad), fill=colour)
        text = f"{r['label']} {r['probability']:.2f}"
        font = ImageFont.load_default(size=max(11, min(34, round(w / 7))))
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        tw, th = x1 - x0, y1 - y0
        ty = y - th - 8 if y - th - 8 >= 0 else y + h + 2
        draw.rectangle((x, ty, x + tw + 4, ty + th + 6), fill=colour)
        draw.text((x + 2 - x0, ty + 3 - y0), text, fill=(0, 0, 0), font=font)
    return np.asarray(im)


def load_boxes(path: Path) -> dict:
    """Boxes given by the user: {(source, frame): [(x, y, w, h), ...]}, keyed by path and by file name.

    CSV with a header ``source,x,y,w,h`` (optional ``frame``), or JSON Lines / JSON records with
    ``source``, optional ``frame`` and ``box`` [x, y, w, h] (the records `edgefer predict` writes)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such boxes file")
    out: dict = {}

    def add(src, frame, box, where):
        try:
            b = tuple(float(v) for v in box)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: box {box!r} is not four numbers x, y, w, h") from None
        if len(b) != 4 or b[2] <= 0 or b[3] <= 0:
            raise ConfigError(f"{where}: box {box!r} must be x, y, w, h with w, h > 0")
        for key in {str(src), Path(str(src)).name}:
            out.setdefault((key, int(frame or 0)), []).append(b)

    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        missing = {"source", "x", "y", "w", "h"} - set(rows[0] if rows else {})
        if missing:
            raise ConfigError(f"{path}: CSV needs the columns source,x,y,w,h (optional frame); missing {sorted(missing)}")
        for i, r in enumerate(rows, start=2):
            add(r["source"], r.get("frame") or 0, (r["x"], r["y"], r["w"], r["h"]), f"{path}:{i}")
        return out
    try:
        items = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON / JSON Lines ({e}); or give a CSV with source,x,y,w,h") from None
    for i, r in enumerate(items, start=1):
        if r.get("box") is None:
            continue  # no_face / error records of a previous run
        if "source" not in r:
            raise ConfigError(f"{path}: record {i} has no 'source'")
        add(r["source"], r.get("frame"), r["box"], f"{path}: record {i}")
    return out


class RecordWriter:
    """JSON Lines (or CSV when the name ends in .csv), written to a temporary file, renamed on close."""

    def __init__(self, path: Path, classes: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.f = os.fdopen(fd, "w", newline="")
        self.csv = self.path.suffix.lower() == ".csv"
        self.count = 0
        if self.csv:
            self.fields = ["source", "frame", "time", "face", "status", "x", "y", "w", "h", "score", "label",
                           "probability", *[f"p_{c}" for c in classes], "detector", "model", "error"]
            self.w = csv.DictWriter(self.f, fieldnames=self.fields, extrasaction="ignore")
            self.w.writeheader()

    def write(self, record: dict) -> None:
        if self.csv:
            row = {k: v for k, v in record.items() if k in self.fields}
            if record.get("box"):
                row.update(zip("xywh", record["box"]))
            row.update({f"p_{c}": p for c, p in (record.get("probabilities") or {}).items()})
            self.w.writerow(row)
        else:
            self.f.write(json.dumps(record) + "\n")
        self.count += 1

    def close(self) -> None:
        self.f.close()
        os.chmod(self.tmp, 0o644)
        os.replace(self.tmp, self.path)


def _annotated_path(out: Path, source: Source, roots: list[Path], video: bool) -> Path:
    p = source.path
    rel = None
    for root in roots:
        try:
            rel = p.resolve().relative_to(root.resolve())
            break
        except ValueError:
            continue
    rel = rel or Path(p.name)
    if video:
        return out / rel.with_name(rel.stem + ".annotated.mp4")
    return out / rel.with_name(rel.stem + ".annotated" + (rel.suffix if rel.suffix.lower() in (".jpg", ".jpeg", ".png")
                                                          else ".png"))


class _VideoOut:
    """An annotated video written to a temporary file (mp4v, else MJPG .avi), renamed when closed."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]):
        import cv2

        path.parent.mkdir(parents=True, exist_ok=True)
        for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
            self.path = path.with_suffix(suffix)
            self.tmp = self.path.with_name(f".{self.path.stem}.tmp{suffix}")
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*fourcc), fps, size)
            if self.writer.isOpened():
                return
        raise DataError(f"{path}: OpenCV cannot write video here (neither mp4v nor MJPG)")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def close(self) -> Path:
        self.writer.release()
        os.replace(self.tmp, self.path)
        return self.path

    def discard(self) -> None:
        self.writer.release()
        self.tmp.unlink(missing_ok=True)


def _progress(total, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=not enabled, leave=False,
                dynamic_ncols=True)


def predict_inputs(inputs, recognizer: Recognizer, *, out: Path | None = None, records: Path | None = None,
                   annotate_outputs: bool = True, every: int = 1, camera: int | None = None, boxes: dict | None = None,
                   max_frames: int | None = None, progress: bool | None = None, on_error=None,
                   detect_size: int | None = None, video_detect_size: int | None = VIDEO_DETECT_SIZE,
                   max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Run every input; returns a summary (counts, fps, output files). ``on_error(line)`` gets each
    input that could not be read (default: log it), an image above ``max_pixels`` included.

    The detector sees images at their size (``detect_size`` caps it) and video / camera frames
    downscaled to ``video_detect_size`` (320: YuNet 4× faster, faces from ~40 px in VGA kept)."""
    sources, problems = expand_inputs(inputs, camera)
    if not sources:
        raise DataError("nothing to predict on: " + ("; ".join(problems) if problems else "give images, folders, "
                           "globs, videos or --camera N"))
    on_error = on_error or (lambda line: log.error("%s", line))
    for line in problems:
        on_error(line)
    if every < 1:
        raise ConfigError(f"--every must be ≥ 1, got {every}")
    out = Path(out) if out else None
    records_path = Path(records) if records else (out / "predictions.jsonl" if out else None)
    job = _Prediction(recognizer, out=out if annotate_outputs else None, boxes=boxes,
                      roots=[Path(str(i)) for i in inputs if Path(str(i)).is_dir()],
                      writer=RecordWriter(records_path, recognizer.classes) if records_path else None,
                      progress=sys.stderr.isatty() if progress is None else progress)
    job.summary.update(inputs=len(sources), errors=len(problems), records=str(records_path) if records_path else None)
    try:
        for source in sources:
            try:
                job.source(source, every=every, max_frames=max_frames, max_pixels=max_pixels,
                           image_size=detect_size, video_size=detect_size or video_detect_size)
            except (EdgeFerError, OSError, ValueError) as e:
                job.error(source, e)
                on_error(job.last_error)
    except KeyboardInterrupt:
        job.summary["interrupted"] = True
    finally:
        if job.writer:
            job.writer.close()
    return job.finish()


class _Prediction:
    """One ``predict_inputs`` call: the recognizer, where records and annotated files go, and the counts."""

    def __init__(self, recognizer: Recognizer, *, out: Path | None, boxes: dict | None, roots: list[Path], writer,
                 progress: bool):
        self.recognizer, self.out, self.boxes, self.roots, self.writer = recognizer, out, boxes, roots, writer
        self.progress = progress
        self.summary = {"inputs": 0, "frames": 0, "faces": 0, "no_face": 0, "errors": 0, "outputs": [],
                        "records": None, "interrupted": False}
        self.t_start = time.perf_counter()
        self.t_before = dict(recognizer.timings)  # the recognizer may have run before: count this call only
        self.last_error = ""

    def source(self, source: Source, *, every: int, max_frames: int | None, max_pixels: int | None,
               image_size: int | None, video_size: int | None) -> None:
        """One image, video or camera: its frames classified, recorded and (with ``out``) annotated."""
        kind, rgb = source.kind, None
        if kind == "unknown":  # named explicitly with an unknown suffix: an image, else a video
            try:
                rgb, kind = read_image(source.path, max_pixels), "image"
            except EdgeFerError:
                kind = "video"
        if kind == "image":
            self.image(source, read_image(source.path, max_pixels) if rgb is None else rgb, image_size)
        else:
            self.video(source, every=every, max_frames=max_frames, size=video_size)

    def image(self, source: Source, rgb, size: int | None) -> None:
        recs = self.frame(rgb, source, 0, None, size)
        if self.out:
            from PIL import Image

            dest = _annotated_path(self.out, source, self.roots, video=False)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.stem}.tmp{dest.suffix}")
            Image.fromarray(annotate(rgb, recs)).save(tmp)
            os.replace(tmp, dest)
            self.summary["outputs"].append(str(dest))

    def video(self, source: Source, *, every: int, max_frames: int | None, size: int | None) -> None:
        reader = VideoReader(source, every=every, max_frames=max_frames)
        video_out = None
        if self.out:
            name = source.path if source.path else Path(f"camera{source.camera}")
            dest = _annotated_path(self.out, Source(source.kind, name, name=source.name), self.roots, video=True)
            video_out = _VideoOut(dest, reader.info.fps / every, (reader.info.width, reader.info.height))
        bar = _progress(reader.kept_frames(), Path(source.name).name, self.progress)
        decoded = 0
        try:
            for index, t, rgb in reader:
                decoded += 1
                recs = self.frame(rgb, source, index, round(t, 3), size)
                if video_out:
                    frame = annotate(rgb, recs)
                    if frame.shape[1] != reader.info.width or frame.shape[0] != reader.info.height:
                        import cv2

                        frame = cv2.resize(frame, (reader.info.width, reader.info.height))
                    video_out.write(frame)
                bar.update(1)
        finally:
            bar.close()
            if video_out and decoded:
                self.summary["outputs"].append(str(video_out.close()))
            elif video_out:
                video_out.discard()
        if not decoded:
            raise DataError(f"{source.name}: no frame could be decoded; skipped")

    def frame(self, rgb, source: Source, index: int, t, size) -> list[dict]:
        """Faces of one frame (the given boxes, else the detector's), each recorded and counted."""
        rec = self.recognizer
        given = None
        if self.boxes is not None:
            given = self.boxes.get((source.name, index)) or self.boxes.get(
                (source.path.name if source.path else source.name, index)) or []
        recs = rec.predict(rgb, boxes=given, source=source.name, frame=index, time_s=t, detect_size=size)
        self.summary["frames"] += 1
        # the records file keeps a line for a frame without a face, so every frame read is accounted for
        self.emit(recs or [{"source": source.name, "frame": index, "time": t, "face": None, "status": "no_face",
                            "detector": "boxes" if given is not None else rec.detector.name,
                            "model": rec.model_name}])
        return recs

    def emit(self, recs: list[dict]) -> None:
        for r in recs:
            if self.writer:
                self.writer.write(r)
            if r["status"] == "ok":
                self.summary["faces"] += 1
            elif r["status"] == "no_face":
                self.summary["no_face"] += 1

    def error(self, source: Source, e: Exception) -> None:
        """An input that could not be read: counted, recorded, and its line kept in ``last_error``."""
        message = str(e) if isinstance(e, EdgeFerError) else f"{source.name}: {type(e).__name__}: {e}"
        self.summary["errors"] += 1
        self.last_error = message
        if self.writer:
            self.writer.write({"source": source.name, "frame": None, "time": None, "face": None, "status": "error",
                               "error": message, "model": self.recognizer.model_name})

    def finish(self) -> dict:
        seconds = time.perf_counter() - self.t_start
        t = {k: v - self.t_before[k] for k, v in self.recognizer.timings.items()}
        self.summary.update(seconds=seconds, fps=self.summary["frames"] / seconds if seconds > 0 else None,
                            detect_ms_per_frame=t["detect_ms"] / t["frames"] if t["frames"] else None,
                            classify_ms_per_frame=t["classify_ms"] / t["frames"] if t["frames"] else None,
                            records_written=self.writer.count if self.writer else 0)
        return self.summary
