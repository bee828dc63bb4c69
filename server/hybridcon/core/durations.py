"""Durations as people type them: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from hybridcon.errors import Invalid

_PART = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """A positive duration from ``text``.

    Raises:
        Invalid: not a duration of that form, or zero.
    """
    compact = text.strip().lower()
    if compact.isdigit():
        seconds = int(compact)
    else:
        pos = 0
        seconds = 0
        for match in _PART.finditer(compact):
            if match.start() != pos:
                break
            seconds += int(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos != len(compact) or not compact:
            raise Invalid(f"{text!r} is not a duration; use e.g. 90s, 15m, 2h, 1d or 1h30m")
    if seconds <= 0:
        raise Invalid("a duration must be longer than zero")
    return timedelta(seconds=seconds)
