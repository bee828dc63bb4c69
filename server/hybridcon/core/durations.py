"""Durations as people type them: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from hybridcon.errors import Invalid

# Units in falling order, each at most once; ASCII digits only, at most 9 of them.
_FORM = re.compile(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?", re.ASCII)
_SECONDS = re.compile(r"\d{1,9}", re.ASCII)
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """A positive duration from ``text`` (at most ten years).

    Raises:
        Invalid: not a duration of that form, zero, or too long.
    """
    compact = text.strip().lower()
    if _SECONDS.fullmatch(compact):
        seconds = int(compact)
    else:
        match = _FORM.fullmatch(compact)
        if not compact or match is None:
            raise Invalid(f"{text!r} is not a duration; use e.g. 90s, 15m, 2h, 1d or 1h30m")
        days, hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise Invalid("a duration must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise Invalid(f"{text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def describe_duration(duration: timedelta) -> str:
    """A duration in words a person reads: ``2 days``, ``1 hour 30 minutes``, ``45 seconds``.

    Whole seconds only (a fraction is dropped); units with a zero count are left out;
    zero or less is ``0 seconds``.
    """
    remaining = int(duration.total_seconds())
    if remaining <= 0:
        return "0 seconds"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts)
