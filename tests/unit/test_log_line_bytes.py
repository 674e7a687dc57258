"""Every command's log lines (`cli.main.configure_logging`: `loglines.LineHandler` and
`LineFormatter`) are byte for byte what `logging.basicConfig(format=LOG_FORMAT)` wrote,
the time stamp made once a second included, and each line is flushed as it is written."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Iterator

import pytest

from acmekit.cli.main import LOG_FORMAT, configure_logging
from acmekit.loglines import LineFormatter, LineHandler

# 2023-11-14 22:13:20 UTC, then across the next second's boundary and back again (a
# thread's record may be formatted after a later one's), then an hour on.
TIMES = [
    1_700_000_000.0,
    1_700_000_000.5004,
    1_700_000_000.999,
    1_700_000_000.9999,
    1_700_000_001.0,
    1_700_000_001.0625,
    1_700_000_000.25,
    1_700_003_600.75,
]
PINNED = [
    "2023-11-14 22:13:20,000",
    "2023-11-14 22:13:20,500",
    "2023-11-14 22:13:20,999",
    "2023-11-14 22:13:20,999",
    "2023-11-14 22:13:21,000",
    "2023-11-14 22:13:21,062",
    "2023-11-14 22:13:20,250",
    "2023-11-14 23:13:20,750",
]


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _bare_root(monkeypatch: pytest.MonkeyPatch) -> logging.Logger:
    """The root logger with no handler, as `acmekit server` finds it when it configures
    logging (pytest's capturing handlers, put in for the test's call, set aside)."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    return root


def _logger(root: logging.Logger) -> logging.Logger:
    logger = logging.Logger("acmekit.server.authority", logging.INFO)
    logger.parent = root
    return logger


def test_the_server_set_up_writes_what_basic_config_wrote(
    utc: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _bare_root(monkeypatch)
    new = io.StringIO()
    configure_logging(logging.INFO, new)
    assert root.level == logging.INFO
    [handler] = root.handlers
    assert type(handler) is LineHandler and type(handler.formatter) is LineFormatter
    old = io.StringIO()
    before = logging.StreamHandler(old)  # what `basicConfig(format=LOG_FORMAT)` made
    before.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(before)
    logger = _logger(root)
    with monkeypatch.context() as clock:
        for when in TIMES:
            clock.setattr(time, "time", lambda when=when: when)
            logger.info("issued serial %s for %s", "1f", "a.example.test")
            logger.warning("plain %d%%", 100)
    assert new.getvalue() == old.getvalue()
    lines = new.getvalue().splitlines()
    assert lines[0::2] == [
        f"{stamp} INFO acmekit.server.authority: issued serial 1f for a.example.test"
        for stamp in PINNED
    ]
    assert lines[1::2] == [
        f"{stamp} WARNING acmekit.server.authority: plain 100%" for stamp in PINNED
    ]


def test_records_with_an_exception_or_a_stack_read_the_same(utc: None) -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        exc_info = sys.exc_info()
    stack = "Stack (most recent call last):\n  x"
    for exc, sinfo in ((exc_info, None), (None, stack), (exc_info, stack)):
        made = [
            logging.LogRecord("acmekit", 40, __file__, 1, "m %s", ("x",), exc, sinfo=sinfo)
            for _ in range(2)
        ]
        a, b = made
        b.created, b.msecs = a.created, a.msecs
        assert LineFormatter(LOG_FORMAT).format(a) == logging.Formatter(LOG_FORMAT).format(b)
        assert "\n" in LineFormatter(LOG_FORMAT).format(a)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"datefmt": "%H:%M:%S"},
        {"fmt": "{asctime} {levelname} {message}", "style": "{"},
        {"fmt": "%(asctime)s %(extra)s %(message)s", "defaults": {"extra": "-"}},
        {"fmt": "%(message)s"},
        {},
    ],
)
def test_other_uses_of_the_formatter_read_the_same(kwargs: dict, utc: None) -> None:
    for converter in (time.localtime, time.gmtime):
        new, old = LineFormatter(**kwargs), logging.Formatter(**kwargs)
        new.converter = old.converter = converter  # type: ignore[method-assign]
        for when in TIMES:
            record = logging.makeLogRecord({"msg": "m %s", "args": ("x",), "levelno": 20})
            record.created, record.msecs = when, (when - int(when)) * 1000 // 1
            assert new.format(record) == old.format(record)


def test_a_converter_changed_midway_is_followed(utc: None) -> None:
    formatter = LineFormatter(LOG_FORMAT)
    record = logging.makeLogRecord({"msg": "m", "created": TIMES[0], "msecs": 0.0})
    first = formatter.formatTime(record)
    formatter.converter = lambda secs: time.gmtime((secs or 0) + 3600)  # type: ignore[method-assign,assignment]
    assert formatter.formatTime(record) == "2023-11-14 23:13:20,000" != first


class _Recording(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(f"write {text!r}")
        return super().write(text)

    def flush(self) -> None:
        self.calls.append("flush")


def test_each_line_is_one_write_and_flushed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    root = _bare_root(monkeypatch)
    stream = _Recording()
    configure_logging(logging.INFO, stream)
    logger = _logger(root)
    logger.info("one")
    assert len(stream.calls) == 2 and stream.calls[1] == "flush"
    assert stream.calls[0].endswith("INFO acmekit.server.authority: one\\n'")
    logger.info("two")
    assert stream.calls[2:] == [stream.calls[2], "flush"] and "two" in stream.calls[2]


def test_a_failing_stream_is_reported_as_logging_does(monkeypatch: pytest.MonkeyPatch) -> None:
    root = _bare_root(monkeypatch)

    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    seen: list[logging.LogRecord] = []
    configure_logging(logging.INFO, Broken())
    monkeypatch.setattr(root.handlers[0], "handleError", seen.append)
    _logger(root).info("lost")
    assert [r.getMessage() for r in seen] == ["lost"]
