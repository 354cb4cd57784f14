"""The exceptions edge_fer raises for problems a user can fix.

The CLI turns every :class:`EdgeFerError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""


class EdgeFerError(Exception):
    """Base class: a message that says what was wrong, the value received and the fix."""


class DataError(EdgeFerError):
    """A dataset file, folder or row, or an image or video to predict on, cannot be used."""


class ConfigError(EdgeFerError):
    """An option, model name or setting is not valid."""


class RunError(EdgeFerError):
    """A run directory is missing, incomplete or inconsistent."""


class ClusterError(EdgeFerError):
    """The workers of a multi-worker training cannot reach each other or disagree."""


class MissingExtraError(EdgeFerError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class ModelError(EdgeFerError):
    """A model file is missing, unreadable, or not one the command can use."""


class RuntimeUnavailable(EdgeFerError):
    """Nothing here can run the model: a runtime package, driver, delegate or accelerator is missing.

    A bench records it with status ``unavailable`` (``status``), not as a failed run.
    """

    status = "unavailable"


class RuntimeMissing(RuntimeUnavailable):
    """No Python runtime for the model's format is installed (ai-edge-litert / tflite-runtime, onnxruntime)."""


class RemoteError(EdgeFerError):
    """A device run failed or could not start; ``status`` is ``unavailable`` (nothing there can run it:
    no runtime, no Python, no way to copy) or ``failed`` (it started and broke)."""

    def __init__(self, message: str, status: str = "failed"):
        super().__init__(message)
        self.status = status


class DeviceUnreachable(RemoteError):
    """An SSH device cannot be reached or refuses the connection (address, port, host key, login)."""

    def __init__(self, message: str):
        super().__init__(message, status="unavailable")


class ExportRefused(EdgeFerError):
    """An artefact disagreed with its source more than allowed; nothing was written."""
