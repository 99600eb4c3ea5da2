"""The Python SDK for wazoo plugins.

A wazoo plugin is a WebAssembly component of the ``plugin`` world of ``wit/plugin.wit``
(package ``wazoo:plugin@0.1.0``), built from Python with componentize-py
(``scripts/build-py-plugin.sh SRC_DIR OUT.wasm``). Subclass :class:`Plugin`, override the
handlers you need, and export the class as the component's world::

    import logging
    from wazoo_guest import EventType, Plugin, WatchEvent, export, zk

    log = logging.getLogger("touches")

    class Touches(Plugin):
        def __init__(self, config: dict[str, str]) -> None:
            super().__init__(config)
            self.counter = config.get("counter", "/touches")
            self.seen = 0                       # kept between calls of this lane

        def on_watch(self, event: WatchEvent) -> None:
            if event.event_type == EventType.RESYNC:
                return
            self.seen += 1
            try:
                zk.set(self.counter, str(self.seen))
            except zk.NoNode:
                zk.create(self.counter, str(self.seen), makepath=True)
            log.info("%s: %d changes", event.path, self.seen)

    WitWorld = export(Touches)

The runtime contract is the Rust SDK's: one instance (and one plugin object) per lane, every
:mod:`~wazoo_guest.zk` call blocks the handler until ZooKeeper answers, ``*_async`` results arrive
on the completion lane, an uncaught exception traps and the instance is rebuilt.
"""

from . import log as _hostlog
from . import zk
from .errors import (
    BadVersion,
    BadVersionError,
    ConnectionLoss,
    InvalidPath,
    NoAuth,
    NoAuthError,
    NoChildrenForEphemerals,
    NoChildrenForEphemeralsError,
    NodeExists,
    NodeExistsError,
    NoNode,
    NoNodeError,
    NotAllowed,
    NotEmpty,
    NotEmptyError,
    NotReadOnly,
    NotReadOnlyCallError,
    OtherError,
    SessionExpired,
    SessionExpiredError,
    TooLarge,
    ZkError,
)
from .log import HostLogHandler
from .plugin import Plugin, current, export
from .types import EventType, LogLevel, SessionEvent, SessionState, Stat, WatchEvent, WatchKind
from .zk import AsyncResult, Transaction

_hostlog.install()

__all__ = [
    "AsyncResult",
    "BadVersion",
    "BadVersionError",
    "ConnectionLoss",
    "EventType",
    "HostLogHandler",
    "InvalidPath",
    "LogLevel",
    "NoAuth",
    "NoAuthError",
    "NoChildrenForEphemerals",
    "NoChildrenForEphemeralsError",
    "NoNode",
    "NoNodeError",
    "NodeExists",
    "NodeExistsError",
    "NotAllowed",
    "NotEmpty",
    "NotEmptyError",
    "NotReadOnly",
    "NotReadOnlyCallError",
    "OtherError",
    "Plugin",
    "SessionEvent",
    "SessionExpired",
    "SessionExpiredError",
    "SessionState",
    "Stat",
    "TooLarge",
    "Transaction",
    "WatchEvent",
    "WatchKind",
    "ZkError",
    "current",
    "export",
    "zk",
]
