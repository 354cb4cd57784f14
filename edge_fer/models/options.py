"""What each builder option (``-o KEY=VALUE``) accepts, checked before anything is built.

    from edge_fer.models.options import check_options
    check_options("mobilenetv3_small", {"minimalistic": "no"})
    # ConfigError: mobilenetv3_small: minimalistic must be true or false, got 'no'; e.g. -o minimalistic=true …

Options mean the same under every architecture that takes them, so one table describes them all;
an option missing from it is checked against the type of its default. The builders still check
what depends on the architecture (smallest input side, channels, ImageNet weights).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError

HARD_SWISH_MODES = ("split", "fused")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _ints(n: int | None, low: int) -> Callable[[object], bool]:
    """A list of integers ≥ ``low`` (exactly ``n`` of them when ``n`` is given; at least one otherwise)."""
    def ok(v) -> bool:
        return (isinstance(v, (list, tuple)) and (len(v) == n if n is not None else len(v) >= 1)
                and all(_is_int(x) and x >= low for x in v))
    return ok


@dataclass(frozen=True)
class Rule:
    valid: str                      # what is valid, in words ("a number > 0")
    ok: Callable[[object], bool]    # type and range together
    example: str                    # a valid value as typed after -o KEY=


RULES: dict[str, Rule] = {
    "input_shape": Rule("(height, width, channels): three integers ≥ 1", _ints(3, 1), "[64,64,1]"),
    "classes": Rule("an integer ≥ 2", lambda v: _is_int(v) and v >= 2, "7"),
    "width": Rule("a number > 0 (channel multiplier)", lambda v: _is_number(v) and v > 0, "0.5"),
    "dropout": Rule("in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1, "0.3"),
    "bn_momentum": Rule("in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1, "0.9"),
    "dense_units": Rule("an integer ≥ 1", lambda v: _is_int(v) and v >= 1, "256"),
    "filters": Rule("a list of integers ≥ 1, one per block", _ints(None, 1), "[32,64,128,256]"),
    "blocks": Rule("three counts ≥ 0 (one per stage)", _ints(3, 0), "[1,2,2]"),
    "stem": Rule("two integers ≥ 1 (the stem's two convolutions)", _ints(2, 1), "[32,64]"),
    "stem_strides": Rule("[1,2] or [2,1] (48 → 24)", lambda v: _ints(2, 1)(v) and sorted(v) == [1, 2], "[1,2]"),
    "stem_stride": Rule("1 or 2", lambda v: _is_int(v) and v in (1, 2), "1"),
    "hard_swish": Rule(" or ".join(HARD_SWISH_MODES), lambda v: v in HARD_SWISH_MODES, HARD_SWISH_MODES[0]),
    "minimalistic": Rule("true or false", lambda v: isinstance(v, bool), "true"),
    "batch_norm": Rule("true or false", lambda v: isinstance(v, bool), "true"),
    "weights": Rule("null (none), \"imagenet\" or a Keras weights file's path",
                    lambda v: v is None or (isinstance(v, str) and bool(v.strip())), "null"),
}


def rule_for(key: str, default) -> Rule:
    """The option's rule; for one not in :data:`RULES`, the type of its default."""
    if key in RULES:
        return RULES[key]
    if isinstance(default, bool):
        return Rule("true or false", lambda v: isinstance(v, bool), "true")
    if _is_int(default):
        return Rule("an integer", _is_int, str(default))
    if isinstance(default, float):
        return Rule("a number", _is_number, repr(default))
    if isinstance(default, str):
        return Rule("a string", lambda v: isinstance(v, str), default)
    if isinstance(default, tuple):
        return Rule(f"a list of {len(default)} integers", _ints(len(default), -2**31), str(list(default)).replace(" ", ""))
    return Rule("any value", lambda v: True, "null")


def check_options(model: str, options: dict, defaults: dict) -> None:
    """Raise :class:`ConfigError` for the first unknown or invalid option of ``model`` (whose
    builder's options and defaults are ``defaults``); the message names the key, the value received,
    what is valid and a valid example."""
    unknown = [k for k in options if k not in defaults]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(defaults), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"model {model!r} takes no option(s) {', '.join(unknown)}{hint}; valid: "
                          f"{', '.join(defaults)} (`edgefer models {model}` shows their defaults)")
    for key, value in options.items():
        rule = rule_for(key, defaults[key])
        if not rule.ok(value):
            raise ConfigError(f"{model}: {key} must be {rule.valid}, got {value!r}; e.g. -o {key}={rule.example} "
                              f"(`edgefer models {model}` lists the options)")
