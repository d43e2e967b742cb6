"""structlog setup: readable on a terminal, JSON lines in production (`--log-format json`)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import structlog

from wirestream.streams.options import option


@dataclass(frozen=True, kw_only=True)
class LogSettings:
    """Options of every command."""

    log_format: str = option(
        "auto",
        choices=("auto", "console", "json"),
        help="log format on stderr: console (readable), json (one object per line), "
        "auto = console on a terminal, json otherwise",
    )
    log_level: str = option(
        "info", choices=("debug", "info", "warning", "error"), help="lowest log level shown"
    )


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    """A logger on sys.stderr as it is when the logger is made (loggers are not cached),
    not when logging was configured: a replaced stderr (a test's capture that has since
    been closed, a daemon's redirect) is followed instead of written to after it closed."""
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """fmt: "console", "json", or "auto" (console when stderr is a terminal, else JSON)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
