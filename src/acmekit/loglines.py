"""The handler and formatter of every command's log lines (`cli.main.configure_logging`):
byte for byte what `logging.basicConfig(format=...)` writes, for less work a line.

The CA logs at INFO about twice a certificate. Of what a line cost in the standard
classes, the time stamp (`time.localtime` and `time.strftime`) is the same for every line
in one second, and `Formatter.format` and `StreamHandler.emit` go through several
methods that, for a line without an exception or a stack, do nothing but call on.
"""

from __future__ import annotations

import logging
import time
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


__all__ = ["LineFormatter", "LineHandler"]
