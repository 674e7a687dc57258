"""Type checks of the settings in a TOML config file, shared by every command that reads
one (`server`, `ct`), so that a mistake reads alike everywhere, in one line:
`FILE: setting SECTION.KEY = VALUE must be WHAT`."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any


class SettingTypeError(ValueError):
    """A setting whose value is not of the type it must be; `in_file` names the file."""

    def __init__(self, where: str, value: Any, expected: str) -> None:
        super().__init__(f"setting {where} = {value!r} must be {expected}")


def in_file(path: Path | str, exc: ValueError) -> str:
    return f"{path}: {exc}"


def expected_type(value: Any, default: Any, *, seconds: bool = False) -> str | None:
    """What `value` must be, judged by the setting's default, or None when it is right."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if seconds or isinstance(default, timedelta):
        return None if number else "a number of seconds"
    if isinstance(default, int | float):
        return None if number else "a number"
    if isinstance(default, date):
        return None if isinstance(value, str | date) else "a date (YYYY-MM-DD)"
    if isinstance(default, str | Path) or default is None:
        return None if isinstance(value, str | Path) else "a string"
    if isinstance(default, tuple):
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return None if ok else "a list of strings"
    return None  # tables are checked by their own readers


def check_type(where: str, value: Any, default: Any, *, seconds: bool = False) -> None:
    expected = expected_type(value, default, seconds=seconds)
    if expected is not None:
        raise SettingTypeError(where, value, expected)


def span(seconds: float) -> str:
    """A duration in the largest whole unit that states it exactly, as a setting would be
    meant: `90 days`, `160 hours`, `1 hour`, `90 seconds`."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """A duration as a command-line option gives it: a whole number with a unit, `90s`,
    `30m`, `12h`, `7d` or `2w`, or several summed (`1d12h`); ValueError otherwise."""
    compact = text.strip().lower()
    # ASCII digits: in Unicode mode \d also takes other scripts' digits, which int() reads.
    parts = re.findall(r"(\d{1,9})([smhdw])", compact, re.ASCII)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration such as 90s, 30m, 12h, 7d or 2w")
    try:
        return timedelta(seconds=sum(int(n) * _DURATION_UNITS[u] for n, u in parts))
    except OverflowError:  # past timedelta's 999,999,999 days
        raise ValueError(f"{text!r} is too long a duration") from None
