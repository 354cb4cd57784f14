"""edge_fer: facial-emotion-recognition CNNs from training to measured edge deployment.

Pipeline (one subpackage per stage): ``data``, ``models`` → ``training`` → ``quantization``,
``calibration`` → ``export`` → ``device_bench`` → ``report``, with ``zoo`` and ``predict`` beside
them; every stage runs models through ``runtime``, and ``cli`` drives them all (``edgefer --help``).
Which module owns what: docs/architecture.md.
"""

__version__ = "0.1.0"


def __getattr__(name):  # `from edge_fer import Recognizer` without importing the stack at package import
    if name == "Recognizer":
        from .predict import Recognizer

        return Recognizer
    raise AttributeError(f"module 'edge_fer' has no attribute {name!r}")
