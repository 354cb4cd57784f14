"""Class names and input geometry: the one place they are defined.

Every model, data loader, report and exported artefact reads them from here, and the
order is the Kaggle FER2013 label order (0=angry … 6=neutral).
"""

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 48

# FER2013's Usage column and the split each value feeds under the official protocol.
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
OFFICIAL_SPLITS: dict[str, str] = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
