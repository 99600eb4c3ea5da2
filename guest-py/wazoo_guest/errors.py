"""ZooKeeper failures as Python exceptions: one class per case of the WIT `zk-error`.

Every call in :mod:`wazoo_guest.zk` raises a subclass of :class:`ZkError`. The names follow
the WIT contract; Kazoo's names (``NoNodeError``, ``NodeExistsError``, ...) are aliases, so
code ported from Kazoo keeps its ``except`` clauses.
"""

from __future__ import annotations

from typing import Any

from wit_world.imports import types as _t


class ZkError(Exception):
    """A ZooKeeper call failed. ``message`` is the host's explanation, when it gave one."""

    #: The WIT case's name, e.g. ``"no-node"``.
    code: str = "other"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)
        self.message: str = message


class NoNode(ZkError):
    """The node does not exist."""

    code = "no-node"


class NodeExists(ZkError):
    """The node already exists."""

    code = "node-exists"


class BadVersion(ZkError):
    """The node's version is not the one given."""

    code = "bad-version"


class NotEmpty(ZkError):
    """The node has children."""

    code = "not-empty"


class NoAuth(ZkError):
    """The node's ACL forbids the call."""

    code = "no-auth"


class NoChildrenForEphemerals(ZkError):
    """Ephemeral nodes cannot have children."""

    code = "no-children-for-ephemerals"


class ConnectionLoss(ZkError):
    """The connection was lost while the call was in flight: it may or may not have applied."""

    code = "connection-loss"


class SessionExpired(ZkError):
    """The session expired."""

    code = "session-expired"


class NotReadOnly(ZkError):
    """A write to a read-only server."""

    code = "not-read-only"


class NotAllowed(ZkError):
    """Outside the plugin's allow-lists (the host's ``denied``); the message says why."""

    code = "denied"


class InvalidPath(ZkError):
    """Not a valid ZooKeeper path; the message says why."""

    code = "invalid-path"


class TooLarge(ZkError):
    """Over the plugin's payload cap; the message says by how much."""

    code = "too-large"


class OtherError(ZkError):
    """Any other failure; the message is its description."""

    code = "other"


# Kazoo's names for the same failures.
NoNodeError = NoNode
NodeExistsError = NodeExists
BadVersionError = BadVersion
NotEmptyError = NotEmpty
NoAuthError = NoAuth
NoChildrenForEphemeralsError = NoChildrenForEphemerals
SessionExpiredError = SessionExpired
NotReadOnlyCallError = NotReadOnly

_BY_CASE: dict[type, type[ZkError]] = {
    _t.ZkError_NoNode: NoNode,
    _t.ZkError_NodeExists: NodeExists,
    _t.ZkError_BadVersion: BadVersion,
    _t.ZkError_NotEmpty: NotEmpty,
    _t.ZkError_NoAuth: NoAuth,
    _t.ZkError_NoChildrenForEphemerals: NoChildrenForEphemerals,
    _t.ZkError_ConnectionLoss: ConnectionLoss,
    _t.ZkError_SessionExpired: SessionExpired,
    _t.ZkError_NotReadOnly: NotReadOnly,
    _t.ZkError_Denied: NotAllowed,
    _t.ZkError_InvalidPath: InvalidPath,
    _t.ZkError_TooLarge: TooLarge,
    _t.ZkError_Other: OtherError,
}


def from_wit(error: Any) -> ZkError:
    """The exception for a WIT ``zk-error`` value (a generated ``ZkError_*`` case)."""
    cls = _BY_CASE.get(type(error), OtherError)
    message = getattr(error, "value", "")
    return cls(message if isinstance(message, str) else repr(error))
