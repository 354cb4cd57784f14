"""predict's image work in NumPy (edge_fer.predict.imaging) against the OpenCV calls it replaces: the same
pixels (grey, area resize, letterbox, rotation: exact; sub-pixel crops: within one grey level where OpenCV
rounds a tie its own way) and the same faces, labels and probabilities from the Recognizer."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
skimage_data = pytest.importorskip("skimage.data")

from edge_fer.predict import imaging  # noqa: E402
from edge_fer.predict.detectors import Face  # noqa: E402
from edge_fer.predict.recognizer import Recognizer, crop_face, eye_angle  # noqa: E402


def cv2_crop_face(grey, face, size=48, margin=1.2, align=True):
    """crop_face as it was written on OpenCV (the reference)."""
    x, y, w, h = face.box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * margin
    angle = eye_angle(face.landmarks) if align else None
    big = math.ceil(side * (math.sqrt(2) if angle else 1.0)) + 2
    patch = cv2.getRectSubPix(grey, (big, big), (cx, cy))
    k = max(size, round(size * big / side))
    patch = cv2.resize(patch, (k, k), interpolation=cv2.INTER_AREA if k < big else cv2.INTER_LINEAR)
    if angle:
        m = cv2.getRotationMatrix2D((k / 2.0, k / 2.0), angle, 1.0)
        patch = cv2.warpAffine(patch, m, (k, k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.getRectSubPix(patch, (size, size), (k / 2.0, k / 2.0))


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    return {"astronaut": skimage_data.astronaut(), "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)}


def diff(a, b):
    return np.abs(np.asarray(a, int) - np.asarray(b, int))


def test_grey_equals_opencv(frames):
    for rgb in frames.values():
        assert diff(imaging.rgb_to_grey(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)).max() == 0


@pytest.mark.parametrize("size", [(320, 240), (123, 77), (48, 48), (700, 540), (1000, 750)])
def test_resize_equals_opencv(frames, size):
    rgb = frames["noise"]
    interp = cv2.INTER_AREA if size[0] < rgb.shape[1] else cv2.INTER_LINEAR
    ref = cv2.resize(rgb, size, interpolation=interp)
    got = imaging.resize(rgb, *size)
    assert got.shape == ref.shape and got.dtype == np.uint8
    # area shrinking: a rare tie rounded the other way; OpenCV enlarges in 11-bit fixed point
    d = diff(got, ref)
    assert d.max() <= 1 and (d > 0).mean() < (0.001 if interp == cv2.INTER_AREA else 0.2), ((d > 0).mean())


@pytest.mark.parametrize("shape", [(480, 640, 3), (640, 480, 3), (128, 90, 3)])
def test_letterbox_equals_opencv(shape):
    rgb = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    h, w = shape[:2]
    side = max(h, w)
    px, py = (side - w) // 2, (side - h) // 2
    square = cv2.copyMakeBorder(rgb, py, side - h - py, px, side - w - px, cv2.BORDER_CONSTANT, value=0)
    ref = cv2.resize(square, (128, 128), interpolation=cv2.INTER_AREA)
    got, got_side, got_px, got_py = imaging.letterbox(rgb, 128)
    assert (got_side, got_px, got_py) == (side, px, py)
    assert diff(got, ref).max() == 0


@pytest.mark.parametrize("angle", [0.3, 3.7, -12.0, 25.0])
def test_rotation_equals_opencv(frames, angle):
    grey = cv2.cvtColor(frames["astronaut"], cv2.COLOR_RGB2GRAY)
    for patch in (grey[100:168, 200:268], grey[0:71, 0:71]):
        patch = np.ascontiguousarray(patch)
        h, w = patch.shape
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, 1.0)
        ref = cv2.warpAffine(patch, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert diff(imaging.rotate(patch, angle), ref).max() == 0


@pytest.mark.parametrize("centre,width", [((100.3, 50.7), 70), ((5.5, 3.2), 90), ((500.0, 500.0), 48),
                                          ((250.37, 180.91), 333)])
def test_subpixel_crop_within_a_grey_level_of_opencv(frames, centre, width):
    grey = cv2.cvtColor(frames["astronaut"], cv2.COLOR_RGB2GRAY)
    d = diff(imaging.rect_subpix(grey, width, width, *centre), cv2.getRectSubPix(grey, (width, width), centre))
    assert d.max() <= 1 and d.mean() < 0.2


FACES = [Face((170.0, 40.0, 110.0, 130.0), 1.0),
         Face((170.0, 40.0, 110.0, 130.0), 1.0, {"left_eye": (200.0, 90.0), "right_eye": (250.0, 84.0)}),
         Face((-20.0, 400.0, 60.0, 70.0), 1.0, {"left_eye": (0.0, 420.0), "right_eye": (20.0, 430.0)}),
         Face((100.0, 100.0, 20.0, 18.0), 1.0)]  # small: the crop is enlarged


@pytest.mark.parametrize("face", FACES, ids=["box", "eyes", "border", "small"])
def test_face_crop_within_a_grey_level_of_opencv(frames, face):
    grey = cv2.cvtColor(frames["astronaut"], cv2.COLOR_RGB2GRAY)
    d = diff(crop_face(grey, face), cv2_crop_face(grey, face))
    # an enlarged crop (a face under 40 px) goes through OpenCV's 11-bit bilinear resize: two levels
    assert d.max() <= (2 if face.box[2] < 40 else 1) and d.mean() < 0.25, (d.max(), d.mean())


def test_recognizer_gives_the_labels_and_probabilities_of_the_opencv_crops(frames):
    rec = Recognizer("ferlite_int8", detector="blazeface")
    astronaut = frames["astronaut"]
    [r] = rec.predict(astronaut)
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    faces = rec.detector.detect(astronaut) + FACES
    ours = rec.classify(np.stack([crop_face(grey, f, rec.size, rec.margin) for f in faces]))
    ref = rec.classify(np.stack([cv2_crop_face(grey, f, rec.size, rec.margin) for f in faces]))
    assert r["label"] == "happy"
    assert (ours.argmax(1) == ref.argmax(1)).all()
    assert np.abs(ours - ref).max() <= 0.02, np.abs(ours - ref).max()
