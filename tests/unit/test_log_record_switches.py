"""`run.lighter_log_records`: what each LogRecord computes is turned off only where no
handler's format shows it, and then the server's log lines read exactly as before."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from acmekit.cli.main import LOG_FORMAT
from acmekit.server import run

SERVER_FORMAT = LOG_FORMAT
SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


@pytest.fixture
def tree(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    """A logging tree of a root alone; the module's switches put back. (The test puts
    its handler in with `_only`, pytest's own capturing handler being added later.)"""
    saved = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {})
    try:
        yield root
    finally:
        for name, value in saved.items():
            setattr(logging, name, value)


@contextmanager
def _only(root: logging.Logger, handler: logging.Handler) -> Iterator[None]:
    """`handler` the root's only one for a while (pytest's capturing handler set aside)."""
    kept = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = kept


def _handler(fmt: str) -> tuple[logging.Handler, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(fmt))
    return handler, out


def _line(root: logging.Logger, out: io.StringIO) -> str:
    logger = logging.Logger("acmekit.server.authority", logging.INFO)
    logger.parent = root
    out.seek(0)
    out.truncate()
    logger.info("issued serial %s for %s", "1f", "a.example.test")
    return out.getvalue()


def test_the_server_format_reads_the_same_with_every_switch_off(tree: logging.Logger) -> None:
    handler, out = _handler(SERVER_FORMAT)
    with _only(tree, handler):
        before = _line(tree, out)
        off = run.lighter_log_records()
        assert set(off) == {s for s in SWITCHES if hasattr(logging, s)}
        assert logging._srcfile is None and not logging.logProcesses and not logging.logThreads
        after = _line(tree, out)
        # The same line but for the time it was written (its first 24 characters).
        assert (
            after[24:]
            == before[24:]
            == "INFO acmekit.server.authority: issued serial 1f for a.example.test\n"
        )


def test_a_field_a_format_shows_keeps_its_switch(tree: logging.Logger) -> None:
    handler, out = _handler("%(process)d %(lineno)d %(message)s")
    with _only(tree, handler):
        before = _line(tree, out)
        off = run.lighter_log_records()
        assert "logProcesses" not in off and "_srcfile" not in off
        assert "logThreads" in off and "logMultiprocessing" in off
        assert _line(tree, out) == before  # the process id and the line number still shown


@pytest.mark.parametrize("fmt", ["%(threadName)s %(message)s", "{thread} {message}"])
def test_any_spelling_of_a_field_keeps_its_switch(tree: logging.Logger, fmt: str) -> None:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(fmt, style="{" if "{" in fmt else "%"))
    with _only(tree, handler):
        assert "logThreads" not in run.lighter_log_records()
        assert logging.logThreads


def test_a_filter_or_another_formatter_changes_nothing(tree: logging.Logger) -> None:
    handler, _ = _handler(SERVER_FORMAT)
    handler.addFilter(lambda record: True)
    with _only(tree, handler):
        assert run.lighter_log_records() == []
        handler.filters.clear()
        handler.setFormatter(type("Custom", (logging.Formatter,), {})(SERVER_FORMAT))
        assert run.lighter_log_records() == []
        assert logging._srcfile is not None and logging.logProcesses
