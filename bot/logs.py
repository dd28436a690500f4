"""Log configuration: structlog events to stderr, as text or JSON, with secrets redacted.

Called once by the CLI, never at import time. Standard-library loggers (httpx, aiohttp,
botocore) go through the same processors, so their lines get the same shape and the same
redaction.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from bot.redaction import redact_event

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
# Libraries that narrate every request at INFO; their detail is only wanted when debugging.
CHATTY_LOGGERS = (
    "httpx",
    "httpcore",
    "botocore",
    "aiobotocore",
    "aioboto3",
    "urllib3",
    "asyncio",
    "aiohttp.access",
)


def configure_logging(*, fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log event to ``stream`` (stderr by default) in ``fmt``, from ``level`` up."""
    out = stream or sys.stderr
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    pre_chain: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: Any
    if fmt == "json":
        final: list[Any] = [structlog.processors.dict_tracebacks, redact_event]
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        final = [structlog.processors.format_exc_info, redact_event]
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )

    structlog.configure(
        processors=[*pre_chain, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *pre_chain],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING)
