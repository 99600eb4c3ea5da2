"""The host's log as a :mod:`logging` handler.

:class:`HostLogHandler` sends each record to the host's log (``wazoo:plugin/log``), where it
appears under the plugin's name at the matching level. :func:`install` puts one on the root
logger (the SDK does so when it loads), so ``logging.getLogger(__name__).info(...)`` and
``logging.warning(...)`` reach the host; a logger's name other than the root's is written before
the message. The root logger's level is ``DEBUG``: the host's own filter decides what shows.
"""

from __future__ import annotations

import logging

from wit_world.imports import log as _log

from .types import LogLevel

__all__ = ["HostLogHandler", "install"]


class HostLogHandler(logging.Handler):
    """A handler that writes records to the host's log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.name != "root":
                message = f"{record.name}: {message}"
            _log.log(_level(record.levelno), message)
        except Exception:  # noqa: BLE001 - logging must never raise into the plugin
            self.handleError(record)


def install(level: int = logging.DEBUG) -> HostLogHandler:
    """Puts a :class:`HostLogHandler` on the root logger (once) and sets its level."""
    root = logging.getLogger()
    root.setLevel(level)
    for h in root.handlers:
        if isinstance(h, HostLogHandler):
            return h
    handler = HostLogHandler()
    root.addHandler(handler)
    return handler


def _level(levelno: int) -> LogLevel:
    if levelno >= logging.ERROR:
        return LogLevel.ERROR
    if levelno >= logging.WARNING:
        return LogLevel.WARN
    if levelno >= logging.INFO:
        return LogLevel.INFO
    if levelno >= logging.DEBUG:
        return LogLevel.DEBUG
    return LogLevel.TRACE
