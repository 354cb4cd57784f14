"""Emotion recognition on photos, video and cameras: detect faces, align, classify with an int8 model.

    from edge_fer import Recognizer
    Recognizer("cnn_int8").predict(rgb)          # one record per face, [] for none: box, label, probabilities

``edgefer predict`` runs :func:`predict_inputs` over files, folders, globs, videos and cameras.
"""

from .detectors import DETECTORS, Face, open_detector
from .recognizer import Recognizer, crop_face
from .run import annotate, load_boxes, predict_inputs

__all__ = ["DETECTORS", "Face", "Recognizer", "annotate", "crop_face", "load_boxes", "open_detector", "predict_inputs"]
