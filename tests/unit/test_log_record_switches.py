"""`run.lighter_log_records`: the CA's loggers skip the lookup of the caller's frame for
a record no handler on its way can show it in, decided as each record is made; a
handler, format or filter added after start-up gets every field right from its first
record, and the server's own lines read exactly as before."""

from __future__ import annotations

import inspect
import io
import logging
import logging.config
import os
import threading
from collections.abc import Iterator

import pytest

from acmekit.cli.main import LOG_FORMAT
from acmekit.loglines import LineFormatter, LineHandler
from acmekit.server import run

SWITCHES = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
EVERY_FIELD = (
    "%(process)d %(processName)s %(thread)d %(threadName)s "
    "%(pathname)s %(filename)s %(module)s:%(lineno)d %(funcName)s %(message)s"
)


@pytest.fixture
def tree(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, logging.Logger]]:
    """A logging tree of a root and the authority's logger, as `acmekit server` has it
    when it settles: its handler the CLI's format on a plain StreamHandler. The root's
    handlers are put in by the test (`_handlers`): pytest adds its own for the call."""
    saved = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    logger = logging.Logger("acmekit.server.authority", logging.INFO)
    logger.parent = root
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {logger.name: logger})
    try:
        yield root, logger
    finally:
        for name, value in saved.items():
            setattr(logging, name, value)


def _handlers(
    monkeypatch: pytest.MonkeyPatch, root: logging.Logger, *handlers: logging.Handler
) -> None:
    monkeypatch.setattr(root, "handlers", list(handlers))


def _handler(fmt: str, kind: type[logging.StreamHandler] = logging.StreamHandler) -> io.StringIO:  # type: ignore[type-arg]
    out = io.StringIO()
    handler = kind(out)
    handler.setFormatter(
        logging.Formatter(fmt) if kind is logging.StreamHandler else LineFormatter(fmt)
    )
    out.handler = handler  # type: ignore[attr-defined]
    return out


def _every_field(line: int, function: str) -> str:
    return (
        f"{os.getpid()} MainProcess {threading.get_ident()} {threading.current_thread().name} "
        f"{__file__} {os.path.basename(__file__)} {__name__.rsplit('.', 1)[-1]}:{line} "
        f"{function} issued\n"
    )


def _log(logger: logging.Logger) -> int:
    """Logs "issued" at INFO; the line it does so on."""
    logger.info("issued")
    return inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]


def test_a_handler_added_after_start_up_gets_every_field(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    server = _handler(LOG_FORMAT)
    _handlers(monkeypatch, root, server.handler)  # type: ignore[attr-defined]
    run.lighter_log_records()
    _log(logger)
    later = _handler(EVERY_FIELD)
    root.addHandler(later.handler)  # type: ignore[attr-defined]
    line = _log(logger)
    assert later.getvalue() == _every_field(line, "_log")
    assert server.getvalue().endswith("INFO acmekit.server.authority: issued\n")
    assert server.getvalue().count("\n") == 2


def test_a_handler_added_below_or_a_format_changed_later_is_seen(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    server = _handler(LOG_FORMAT)
    _handlers(monkeypatch, root, server.handler)  # type: ignore[attr-defined]
    run.lighter_log_records()
    embedder = _handler("%(message)s")
    logger.addHandler(embedder.handler)  # type: ignore[attr-defined]
    _log(logger)
    assert embedder.getvalue() == "issued\n"
    embedder.handler.setFormatter(logging.Formatter(EVERY_FIELD))  # type: ignore[attr-defined]
    line = _log(logger)
    assert embedder.getvalue() == "issued\n" + _every_field(line, "_log")


def test_a_filter_added_later_reads_the_source(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    server = _handler(LOG_FORMAT)
    _handlers(monkeypatch, root, server.handler)  # type: ignore[attr-defined]
    run.lighter_log_records()
    seen: list[tuple[str, int]] = []
    server.handler.addFilter(lambda r: bool(seen.append((r.pathname, r.lineno))) or True)  # type: ignore[attr-defined]
    line = _log(logger)
    assert seen == [(__file__, line)]


def test_the_server_line_is_the_same_and_its_lookup_skipped(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The saving: with the server's handler (and alembic's NullHandler, which every CA
    has), a record of the CA's logger is made without its caller's frame; nothing
    process-wide is changed for it."""
    root, logger = tree
    server = _handler(LOG_FORMAT, LineHandler)
    _handlers(monkeypatch, root, server.handler, logging.NullHandler())  # type: ignore[attr-defined]
    plain = logging.Logger("acmekit.server.authority", logging.INFO)
    plain.parent = root
    switches = {name: getattr(logging, name) for name in SWITCHES if hasattr(logging, name)}
    assert run.lighter_log_records() == ["acmekit.server.authority"]
    assert {name: getattr(logging, name) for name in switches} == switches
    seen: list[logging.LogRecord] = []
    monkeypatch.setattr(server.handler, "emit", seen.append)  # type: ignore[attr-defined]
    _log(logger)
    _log(plain)
    fast, slow = seen
    assert (fast.pathname, fast.lineno, fast.funcName) == (
        "(unknown file)",
        0,
        "(unknown function)",
    )
    assert (slow.pathname, slow.funcName) == (__file__, "_log")
    formatter = server.handler.formatter  # type: ignore[attr-defined]
    fast.created, fast.msecs = slow.created, slow.msecs
    assert formatter.format(fast) == formatter.format(slow)


def test_a_stack_asked_for_and_a_stack_level_are_as_logging_gives_them(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    server = _handler(LOG_FORMAT)
    _handlers(monkeypatch, root, server.handler)  # type: ignore[attr-defined]
    run.lighter_log_records()
    logger.info("where", stack_info=True)
    assert "where\nStack (most recent call last):" in server.getvalue()
    assert "in test_a_stack_asked_for_and_a_stack_level" in server.getvalue()

    def helper() -> None:
        logger.info("up", stacklevel=2)

    server.handler.setFormatter(logging.Formatter("%(funcName)s:%(lineno)d %(message)s"))  # type: ignore[attr-defined]
    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    helper()
    here = "test_a_stack_asked_for_and_a_stack_level_are_as_logging_gives_them"
    assert server.getvalue().endswith(f"\n{here}:{line} up\n")


@pytest.mark.parametrize("fmt", ["%(threadName)s %(lineno)d %(message)s", "{module} {message}"])
def test_any_spelling_of_a_field_is_seen(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    root, logger = tree
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(fmt, style="{" if "{" in fmt else "%"))
    _handlers(monkeypatch, root, handler)
    run.lighter_log_records()
    line = _log(logger)
    shown = str(line) if "lineno" in fmt else __name__.rsplit(".", 1)[-1]
    assert shown in out.getvalue()


def test_another_formatter_or_handler_gets_the_source(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, logger = tree
    seen: list[logging.LogRecord] = []

    class Sends(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    _handlers(monkeypatch, root, Sends())
    run.lighter_log_records()
    line = _log(logger)
    formatted = logging.StreamHandler(io.StringIO())
    formatted.setFormatter(type("Custom", (logging.Formatter,), {})(LOG_FORMAT))
    monkeypatch.setattr(formatted, "emit", seen.append)
    _handlers(monkeypatch, root, formatted)
    line2 = _log(logger)
    assert [(r.pathname, r.lineno) for r in seen] == [(__file__, line), (__file__, line2)]


def test_a_later_logging_configuration_is_seen(
    tree: tuple[logging.Logger, logging.Logger], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An embedding program's `dictConfig` after start-up: the loggers stay the same
    objects, and its handler's format is read for the next record."""
    root, logger = tree
    server = _handler(LOG_FORMAT)
    _handlers(monkeypatch, root, server.handler)  # type: ignore[attr-defined]
    monkeypatch.setattr(root, "level", root.level)
    run.lighter_log_records()
    out = io.StringIO()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"every": {"format": EVERY_FIELD}},
            "handlers": {
                "out": {"class": "logging.StreamHandler", "formatter": "every", "stream": out}
            },
            "root": {"level": "INFO", "handlers": ["out"]},
        }
    )
    line = _log(logger)
    assert out.getvalue() == _every_field(line, "_log")


def test_a_logger_class_with_its_own_lookup_keeps_it(
    tree: tuple[logging.Logger, logging.Logger],
) -> None:
    _, logger = tree

    class Own(logging.Logger):
        def findCaller(self, stack_info: bool = False, stacklevel: int = 1) -> tuple:  # type: ignore[override]
            return ("own", 1, "own", None)

    own = Own("acmekit.embedded")
    logging.Logger.manager.loggerDict[own.name] = own
    assert run.lighter_log_records() == [logger.name]
    assert "findCaller" not in vars(own)
