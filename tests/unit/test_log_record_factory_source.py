"""`run.lighter_log_records` against what an embedding program may set process-wide: a
LogRecord factory (`logging.setLogRecordFactory`) is handed the caller's source by the
logger, and may keep or read it (a field of its own, a filter on it) whatever the
handlers' formats say. The CA's records must reach it as logging makes them."""

from __future__ import annotations

import inspect
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from acmekit.cli.main import LOG_FORMAT
from acmekit.loglines import LineFormatter, LineHandler
from acmekit.server import run


@pytest.fixture
def logger(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Logger]:
    root = logging.getLogger()
    monkeypatch.setattr(root, "filters", [])
    made = logging.Logger("acmekit.server.authority", logging.INFO)
    made.parent = root
    monkeypatch.setattr(logging.Logger.manager, "loggerDict", {made.name: made})
    old = logging.getLogRecordFactory()
    try:
        yield made
    finally:
        logging.setLogRecordFactory(old)


def test_a_record_factory_set_by_the_program_gets_the_callers_source(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the CA's handler alone (pytest's, put in for the call, set aside)
    handler = LineHandler(io.StringIO())
    handler.setFormatter(LineFormatter(LOG_FORMAT))
    monkeypatch.setattr(logging.getLogger(), "handlers", [handler])
    seen: list[tuple[str, int, str | None]] = []
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        seen.append((record.filename, record.lineno, record.funcName))
        return record

    logging.setLogRecordFactory(factory)
    assert run.lighter_log_records() == [logger.name]
    logger.info("issued")
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    assert seen == [(__file__.rsplit("/", 1)[-1], line, inspect.currentframe().f_code.co_name)]  # type: ignore[union-attr]
