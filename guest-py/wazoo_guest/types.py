"""The WIT contract's records and enums, as the generated bindings define them."""

from wit_world.imports.types import (
    EventType,
    LogLevel,
    SessionEvent,
    SessionState,
    Stat,
    WatchEvent,
    WatchKind,
)

__all__ = [
    "EventType",
    "LogLevel",
    "SessionEvent",
    "SessionState",
    "Stat",
    "WatchEvent",
    "WatchKind",
]
