"""The exceptions edge_fer raises for problems a user can fix.

The CLI turns every :class:`EdgeFerError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""


class EdgeFerError(Exception):
    """Base class: a message that says what was wrong, the value received and the fix."""


class DataError(EdgeFerError):
    """A dataset file, folder or row cannot be used."""


class ConfigError(EdgeFerError):
    """An option, model name or setting is not valid."""


class RunError(EdgeFerError):
    """A run directory is missing, incomplete or inconsistent."""


class ClusterError(EdgeFerError):
    """The workers of a multi-worker training cannot reach each other or disagree."""
