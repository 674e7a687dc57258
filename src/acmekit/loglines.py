"""The handler and formatter of every command's log lines (`cli.main.configure_logging`):
byte for byte what `logging.basicConfig(format=...)` writes, for less work a line.

The CA logs at INFO about twice a certificate. Of what a line cost in the standard
classes, the time stamp (`time.localtime` and `time.strftime`) is the same for every line
in one second, and `Formatter.format` and `StreamHandler.emit` go through several
methods that, for a line without an exception or a stack, do nothing but call on. And
each record looks up its caller's frame, which none of the CA's handlers shows:
`lighter_log_records` (run once the server has started) lets the CA's loggers skip it.
"""

from __future__ import annotations

import logging
import logging.handlers
import time
from collections.abc import Callable
from typing import Any


class LineFormatter(logging.Formatter):
    """`logging.Formatter`, with the second's part of `asctime` made once a second (the
    milliseconds still per record), and one method call for a line with no exception
    or stack. Any other use (a `datefmt`, `{`/`$` styles, defaults, a record with
    `exc_info`, `exc_text` or `stack_info`) takes `logging.Formatter`'s own path."""

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt, *args, **kwargs)
        style = self._style
        # Only `%` style without defaults is `fmt % record.__dict__` (PercentStyle).
        self._plain = type(style) is logging.PercentStyle and not getattr(style, "_defaults", None)
        self._uses_time = self.usesTime()
        # (second, converter, its text): one tuple, replaced whole, so that two threads
        # formatting at once each read a consistent pair.
        self._second: tuple[int, Any, str] = (-1, None, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        converter = self.converter
        second, seen, text = self._second
        # `localtime`/`gmtime` take a float's whole seconds (rounded toward the past, and
        # `created` is never before 1970): every record of one second has the same struct
        # and so the same text. A converter set on the formatter is part of the key.
        whole = int(record.created)
        if whole != second or converter != seen:
            text = time.strftime(self.default_time_format, converter(record.created))
            self._second = (whole, converter, text)
        if self.default_msec_format:
            return self.default_msec_format % (text, record.msecs)
        return text

    def format(self, record: logging.LogRecord) -> str:
        if not self._plain or record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        # What Formatter.format does for such a record, without its calls in between.
        record.message = record.getMessage()
        if self._uses_time:
            record.asctime = self.formatTime(record, self.datefmt)
        try:
            return self._style._fmt % record.__dict__
        except KeyError as e:  # PercentStyle.format's error
            raise ValueError(f"Formatting field not found in record: {e}") from None


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """`logging.StreamHandler` whose `emit` writes and flushes without the extra calls
    of `flush()` (which takes the lock `handle()` already holds). Still one write and
    one flush per line: a line logged is in the stream's file before the next record,
    so a crash loses none already written."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            stream = self.stream
            stream.write(msg + self.terminator)
            if stream and hasattr(stream, "flush"):
                stream.flush()
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            self.handleError(record)


# What a LogRecord knows only from its caller's frame: finding that frame and its source
# file was most of what a record of the CA's cost beyond its line (the logging HOWTO's
# "Optimization" turns it off with `logging._srcfile`).
_SOURCE_FIELDS = ("pathname", "filename", "module", "lineno", "funcName")
_NO_SOURCE = ("(unknown file)", 0, "(unknown function)", None)  # logging's, not looked up


def lighter_log_records() -> list[str]:
    """The CA's own loggers ("acmekit" and those below it) skip the lookup of the
    caller's frame for a record that no handler it reaches can show or read it in;
    their names. Decided for each record when it is made, from the handlers then on its
    way (`_caller_when_shown`): a handler or a format added at any time, by an embedding
    program or a later logging configuration, gets the right fields from its first
    record. Nothing process-wide changes: `logging._srcfile` and the thread and process
    switches stay as they are (they are read before any handler is known, so a record
    made with them off could not be given its fields back), and records of every other
    logger, and of a logger made later, are made as before. A logger whose class has a
    `findCaller` of its own (an embedding program's logger class) keeps it."""
    found = []
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            not isinstance(logger, logging.Logger)
            or type(logger).findCaller is not logging.Logger.findCaller
            or "findCaller" in vars(logger)
        ):
            continue
        if name == "acmekit" or name.startswith("acmekit."):
            logger.findCaller = _caller_when_shown(logger)  # type: ignore[method-assign]
            found.append(name)
    return found


def _caller_when_shown(logger: logging.Logger) -> Callable[..., tuple[Any, ...]]:
    """`logger.findCaller`, looking up the caller only when a record made now may have
    its source fields read: when a stack is asked for, or by the logger's filters, or by
    a LogRecord factory other than logging's own, or by a handler on the record's way up
    the tree (as `callHandlers` goes) that has a filter, is not one that only writes its
    formatter's output, has a formatter not a plain one, or whose format names one of
    them. Any spelling counts (`%(lineno)d`, `{lineno}`): the format is searched for the
    names. About 5,300 instructions a record for the CA's usual tree, against about
    18,600 for the lookup."""
    find = logging.Logger.findCaller
    formatting, plain, shows = _FORMATTING_HANDLERS, _PLAIN_FORMATTERS, _SHOWS_SOURCE

    def find_caller(stack_info: bool = False, stacklevel: int = 1) -> tuple[Any, ...]:
        node: logging.Logger | None = logger
        # A record factory set by the program (`logging.setLogRecordFactory`) is handed
        # the source whatever the handlers show, and may keep or read it.
        may_show = (
            stack_info
            or bool(logger.filters)
            or logging.getLogRecordFactory() is not logging.LogRecord
        )
        while node is not None and not may_show:
            for handler in node.handlers:
                formatter = handler.formatter
                if handler.filters or type(handler) not in formatting:
                    may_show = True
                elif formatter is None:  # the message alone ("%(message)s")
                    continue
                elif type(formatter) not in plain:
                    may_show = True
                else:
                    fmt = formatter._style._fmt or ""
                    shown = shows.get(fmt)
                    if shown is None:
                        shown = shows[fmt] = any(name in fmt for name in _SOURCE_FIELDS)
                    may_show = shown
                if may_show:
                    break
            node = node.parent if node.propagate else None
        if may_show:
            # One level more for this function's frame, which logging does not take
            # for its own (it skips only its module's frames).
            return find(logger, stack_info, stacklevel + 1)
        return _NO_SOURCE

    return find_caller


# Handlers that write only what their formatter makes of a record (NullHandler nothing:
# alembic puts one on its logger when imported, which is in every CA). Any other may
# read the record's fields itself or hand the whole record on (a QueueHandler to its
# listener's handlers, a SocketHandler to a log server), to formats not seen here.
_FORMATTING_HANDLERS = frozenset(
    (
        logging.StreamHandler,
        logging.FileHandler,
        logging.handlers.WatchedFileHandler,
        logging.handlers.RotatingFileHandler,
        logging.handlers.TimedRotatingFileHandler,
        logging.NullHandler,
        LineHandler,
    )
)
# Formatters that read only the fields their format names (and the time).
_PLAIN_FORMATTERS = frozenset((logging.Formatter, LineFormatter))
_SHOWS_SOURCE: dict[str, bool] = {}  # format -> whether it names a source field


__all__ = ["LineFormatter", "LineHandler", "lighter_log_records"]
