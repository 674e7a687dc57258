"""`loglines.lighter_runtime_fields`, run when the server settles: logging's thread and
process switches are turned off when nothing configured shows or reads those fields
(the CLI's format does not), the server's lines unchanged; kept on when something may;
and on again for a handler added later that shows them, from the CA's next record."""

from __future__ import annotations

import gc
import io
import logging
import logging.handlers
import os
import queue
import threading
from collections.abc import Iterator

import pytest

from acmekit import loglines
from acmekit.cli.main import LOG_FORMAT
from acmekit.loglines import LineFormatter, LineHandler
from acmekit.server import run

SWITCHES = ("logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
SHOWN = "%(process)d %(processName)s %(thread)d %(threadName)s %(message)s"


@pytest.fixture
def tree(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, logging.Logger]]:
    """A root and the authority's logger below it, as the only loggers; the root's
    handlers are put in by the test (`_server_handler`): pytest adds its own for the
    call."""
    saved = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    logger = logging.Logger("acmekit.server.authority", logging.INFO)
    logger.parent = root
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {logger.name: logger})
    monkeypatch.setattr(loglines, "_switched_off", [])
    try:
        yield root, logger
    finally:
        for name, value in saved.items():
            setattr(logging, name, value)


def _switches() -> dict[str, bool]:
    return {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}


def _server_handler(monkeypatch: pytest.MonkeyPatch, root: logging.Logger) -> io.StringIO:
    """The root's handlers: the CLI's handler and format (`cli.main.configure_logging`)
    and alembic's NullHandler, which every CA has."""
    out = io.StringIO()
    handler = LineHandler(out)
    handler.setFormatter(LineFormatter(LOG_FORMAT))
    monkeypatch.setattr(root, "handlers", [handler, logging.NullHandler()])
    return out


def test_the_server_settles_with_them_off_and_its_lines_unchanged(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    out = _server_handler(monkeypatch, root)
    on = _switches()
    assert all(on.values())
    threshold = gc.get_threshold()
    try:
        run.settle_process()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    assert _switches() == dict.fromkeys(on, False)
    logger.info("issued %s", "0a")
    line = out.getvalue()
    assert line.endswith(" INFO acmekit.server.authority: issued 0a\n")
    seen: list[logging.LogRecord] = []
    monkeypatch.setattr(root.handlers[0], "emit", seen.append)
    logger.info("issued %s", "0a")
    (lean,) = seen
    assert (lean.thread, lean.threadName, lean.process, lean.processName) == (None,) * 4
    # The same line as logging's own formatter makes of a record with every field.
    for name in on:
        setattr(logging, name, True)
    full = logging.LogRecord(logger.name, logging.INFO, "", 0, "issued %s", ("0a",), None)
    assert full.process == os.getpid()
    full.created, full.msecs = lean.created, lean.msecs
    assert root.handlers[0].format(lean) == logging.Formatter(LOG_FORMAT).format(full)


def _keeps_them(tree_root: logging.Logger, handler: logging.Handler) -> None:
    tree_root.addHandler(handler)
    on = _switches()
    assert loglines.lighter_runtime_fields() == []
    assert _switches() == on


@pytest.mark.parametrize(
    "fmt",
    ["%(process)d %(message)s", "%(threadName)s: %(message)s", "{processName} {message}"],
)
def test_a_format_that_shows_them_keeps_them(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    root, _ = tree
    _server_handler(monkeypatch, root)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter(fmt, style="{" if "{" in fmt else "%"))
    _keeps_them(root, handler)


def test_a_filter_or_a_handler_that_hands_records_on_keeps_them(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    _server_handler(monkeypatch, root)
    _keeps_them(root, logging.handlers.QueueHandler(queue.SimpleQueue()))
    root.handlers.pop()
    logger.addFilter(lambda r: True)
    on = _switches()
    assert loglines.lighter_runtime_fields() == []
    assert _switches() == on


def test_a_handler_added_later_that_shows_them_gets_them(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    _server_handler(monkeypatch, root)
    loglines.lighter_log_records()
    assert loglines.lighter_runtime_fields()
    logger.info("before")
    later = io.StringIO()
    handler = logging.StreamHandler(later)
    handler.setFormatter(logging.Formatter(SHOWN))
    root.addHandler(handler)
    logger.info("after")
    me = threading.current_thread()
    assert later.getvalue() == f"{os.getpid()} MainProcess {me.ident} {me.name} after\n"
    assert all(_switches().values())
