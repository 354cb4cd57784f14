"""edgefer predict on oversized images, the Recognizer's record shape, the rpi target against an SSH
server without SFTP, the figures the reports draw, and what model cards and stderr carry."""

import json
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from edge_fer.errors import EdgeFerError

README = Path(__file__).resolve().parents[1] / "README.md"


def _png_bomb(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit grey PNG declaring side×side pixels: a few tens of KB on disk, gigabytes decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def photos(tmp_path):
    import skimage.data
    from PIL import Image

    d = tmp_path / "photos"
    d.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skimage.data.coffee()).save(d / "coffee.jpg")
    _png_bomb(d / "bomb.png")
    return d


def _records(path: Path) -> dict:
    by_source = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    return by_source


# ------------------------------------------------------------------ predict: decompression bombs

def test_a_huge_image_is_one_error_line_and_the_rest_of_the_folder_runs(run, photos, tmp_path):
    out = tmp_path / "out"
    r = run("predict", photos, "--out", out)
    assert r.exit_code == 0 and r.exception is None, (r.exception, r.output)
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "bomb.png" in errors[0], r.stderr
    assert "20000×20000" in errors[0] and "above the limit of 180,000,000" in errors[0] \
        and "--max-pixels 400000000" in errors[0], errors[0]
    recs = _records(out / "predictions.jsonl")
    assert [x["status"] for x in recs["bomb.png"]] == ["error"] and "--max-pixels" in recs["bomb.png"][0]["error"]
    assert [x["status"] for x in recs["astronaut.png"]] == ["ok"]
    assert [x["status"] for x in recs["coffee.jpg"]] == ["no_face"]  # the records file keeps faceless frames
    assert (out / "astronaut.annotated.png").stat().st_size > 0


def test_max_pixels_is_stated_in_help_and_can_be_changed(run, photos, tmp_path):
    from edge_fer.predict.sources import DEFAULT_MAX_PIXELS

    h = run("predict", "--help")
    assert "--max-pixels" in h.output and "decompression" in h.output and f"{DEFAULT_MAX_PIXELS}" in h.output
    # a lower limit skips the astronaut (512×512) too; the coffee (400×600 = 240,000) still runs
    r = run("predict", photos, "--out", tmp_path / "o", "--max-pixels", 250_000)
    assert r.exit_code == 0, r.output
    errors = sorted(l for l in r.stderr.splitlines() if l.startswith("error:"))
    assert len(errors) == 2 and "astronaut.png: 512×512 = 262,144 pixels" in errors[0] and "bomb.png" in errors[1]
    bad = run("predict", photos, "--max-pixels", 0)
    assert bad.exit_code == 2 and "--max-pixels" in bad.output and "must be ≥ 1 pixel, got 0" in bad.output


def test_read_image_refuses_from_the_header(tmp_path):
    from edge_fer.predict.sources import read_image

    bomb = _png_bomb(tmp_path / "b.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(EdgeFerError, match=r"20000×20000 = 400,000,000 pixels, above the limit of 1,000"):
        read_image(bomb, max_pixels=1000)
    small = _png_bomb(tmp_path / "s.png", side=100)
    assert read_image(small, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(EdgeFerError, match="10,000 pixels, above the limit of 9,999"):
        read_image(small, max_pixels=9_999)


# ------------------------------------------------------------------ Recognizer: one record shape

RECORD_KEYS = {"source", "frame", "time", "face", "status", "box", "score", "landmarks", "label", "probability",
               "probabilities", "detector", "model"}


def test_recognizer_returns_faces_only_with_one_shape():
    import skimage.data

    from edge_fer.predict import Recognizer

    rec = Recognizer("cnn_int8")
    faces = rec.predict(skimage.data.astronaut())
    assert len(faces) == 1 and set(faces[0]) == RECORD_KEYS and faces[0]["status"] == "ok"
    assert rec.predict(skimage.data.coffee()) == []
    assert rec.predict(np.zeros((240, 320, 3), np.uint8)) == []  # a blank frame


def test_readme_recognizer_snippet_runs_on_a_frame_with_and_without_a_face(capsys):
    import skimage.data

    text = README.read_text()
    start = text.index('for face in Recognizer("cnn_int8").predict(rgb_frame):')
    snippet = "\n".join(text[start:].splitlines()[:2])
    from edge_fer import Recognizer

    for rgb_frame, lines in ((skimage.data.astronaut(), 1), (np.zeros((240, 320, 3), np.uint8), 0)):
        exec(snippet, {"Recognizer": Recognizer, "rgb_frame": rgb_frame})
        printed = capsys.readouterr().out.splitlines()
        assert len(printed) == lines, printed
