"""A handler that hands the whole record on (a QueueHandler to its listener's handlers,
a SocketHandler to a log server) has its fields read by formats the logging tree does
not show: turning off what a LogRecord computes must not blank them."""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import queue
from collections.abc import Iterator

import pytest

from acmekit.server import run

SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    saved = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {AUTHORITY.name: AUTHORITY})
    AUTHORITY.__dict__.pop("findCaller", None)
    AUTHORITY.parent = root
    kept = root.handlers[:]
    try:
        yield root
    finally:
        root.handlers[:] = kept
        for name, value in saved.items():
            setattr(logging, name, value)


AUTHORITY = logging.Logger("acmekit.server.authority", logging.INFO)


def _emit_from_here(root: logging.Logger) -> None:
    AUTHORITY.info("issued")


def test_a_queue_listeners_format_keeps_the_process_and_the_function(
    root: logging.Logger,
) -> None:
    records: queue.Queue[logging.LogRecord] = queue.Queue()
    out = io.StringIO()
    shown = logging.StreamHandler(out)
    shown.setFormatter(logging.Formatter("%(process)d %(funcName)s %(message)s"))
    listener = logging.handlers.QueueListener(records, shown)
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    run.lighter_log_records()
    listener.start()
    try:
        _emit_from_here(root)
    finally:
        listener.stop()
    assert out.getvalue() == f"{os.getpid()} _emit_from_here issued\n"


def test_a_handler_of_its_own_kind_gets_every_field(root: logging.Logger) -> None:
    seen: list[logging.LogRecord] = []

    class Sends(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root.handlers[:] = [Sends()]
    assert run.lighter_log_records() == [AUTHORITY.name]
    _emit_from_here(root)
    [record] = seen
    assert (record.process, record.funcName) == (os.getpid(), "_emit_from_here")
    assert record.pathname == __file__ and record.thread is not None
