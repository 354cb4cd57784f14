"""FER2013 loading, checking and the tf.data input pipeline."""

from .dataset import FERData, Split, load_fer, load_raw, resolve_data_path, sample_path

__all__ = ["FERData", "Split", "load_fer", "load_raw", "resolve_data_path", "sample_path"]
