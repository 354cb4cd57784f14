"""edge_fer: facial-emotion-recognition CNNs from training to measured edge deployment.

Pipeline (one subpackage per stage): ``data`` → ``models`` → ``training`` → ``calibration``
→ ``export`` → ``device_bench`` → ``report``; ``cli`` drives them all (``edgefer --help``).
"""

__version__ = "0.1.0"


def __getattr__(name):  # `from edge_fer import Recognizer` without importing the stack at package import
    if name == "Recognizer":
        from .predict import Recognizer

        return Recognizer
    raise AttributeError(f"module 'edge_fer' has no attribute {name!r}")
