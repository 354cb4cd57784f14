"""User settings: command-line option > environment variable > config file > default.

The config file is TOML, found at ``$EDGEFER_CONFIG``, else ``./edgefer.toml``, else
``~/.config/edgefer/config.toml``::

    data = "~/datasets/fer2013.csv"     # default --data
    runs = "~/edgefer-runs"             # where runs go (like $EDGEFER_RUNS)

    [rpi]
    host = "pi@raspberrypi.local"       # default --host of `edgefer bench --device rpi`
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .errors import ConfigError

ENV = {"data": "EDGEFER_DATA", "runs": "EDGEFER_RUNS", "rpi.host": "EDGEFER_RPI_HOST"}


def config_path() -> Path | None:
    if os.environ.get("EDGEFER_CONFIG"):
        return Path(os.environ["EDGEFER_CONFIG"]).expanduser()
    for p in (Path("edgefer.toml"), Path.home() / ".config" / "edgefer" / "config.toml"):
        if p.is_file():
            return p
    return None


def _read(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; fix EDGEFER_CONFIG or create the file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e}); fix the file or unset EDGEFER_CONFIG") from None


def setting(key: str, option_value=None, section: str | None = None) -> tuple[object, str]:
    """The value of ``key`` and where it came from ("option", the env var, the config path, "default")."""
    if option_value is not None:
        return option_value, "option"
    env = ENV.get(key if section is None else f"{section}.{key}")
    if env and os.environ.get(env):
        return os.environ[env], env
    path = config_path()
    table = _read(path)
    if section:
        table = table.get(section, {})
    if key in table:
        return table[key], str(path)
    return None, "default"
