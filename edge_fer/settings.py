"""User settings: command-line option > environment variable > config file > default.

The config file is TOML, found at ``$EDGEFER_CONFIG``, else ``./edgefer.toml``, else
``~/.config/edgefer/config.toml``::

    data = "~/datasets/fer2013.csv"     # default --data
    runs = "~/edgefer-runs"             # where runs go (like $EDGEFER_RUNS)

    [rpi]
    host = "pi@raspberrypi.local"       # default --host of `edgefer bench --device rpi`
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path

from .errors import ConfigError

ENV = {"data": "EDGEFER_DATA", "runs": "EDGEFER_RUNS", "rpi.host": "EDGEFER_RPI_HOST"}
# Every key the file may hold ("section.key" inside a [section]) and what its value must be.
KEYS = {"data": "a path (string)", "runs": "a folder (string)", "rpi.host": "\"user@pi\" or a list of them"}


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
        table = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; fix EDGEFER_CONFIG or create the file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e}); fix the file or unset EDGEFER_CONFIG") from None
    _check_keys(path, table)
    return table


def _shown(key: str) -> str:
    """A key as the file spells it: ``rpi.host`` → ``[rpi] host``."""
    section, _, name = key.rpartition(".")
    return f"[{section}] {name}" if section else key


def _check_keys(path: Path, table: dict) -> None:
    """An unknown or misspelt key is an error, not a setting silently ignored."""
    sections = {k.split(".")[0] for k in KEYS if "." in k}
    flat = {}
    for key, value in table.items():
        if key in sections and isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    valid = ", ".join(map(_shown, KEYS))
    for key, value in flat.items():
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1, cutoff=0.6)
            hint = f" (did you mean {_shown(close[0])}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {_shown(key)!r}{hint}; valid keys: {valid}; fix or remove it")
        if not (isinstance(value, str) or (key == "rpi.host" and isinstance(value, list)
                                           and all(isinstance(v, str) for v in value))):
            raise ConfigError(f"{path}: {_shown(key)} = {value!r} must be {KEYS[key]}; fix the file")


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
