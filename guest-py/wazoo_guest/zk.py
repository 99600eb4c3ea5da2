"""ZooKeeper, through the host's session, limited to the plugin's allow-lists.

Paths are absolute and relative to the host's chroot. Every call here blocks the calling
handler until the server answers (the host awaits it without blocking a thread) and raises a
:class:`~wazoo_guest.errors.ZkError` subclass when it fails: :class:`NotAllowed` outside the
plugin's allow-lists, :class:`TooLarge` over its payload cap, :class:`InvalidPath` for a path
ZooKeeper would refuse, :class:`NoNode`, :class:`BadVersion` and so on from the server.

The ``*_async`` calls return at once; their outcome arrives later on the **completion lane**,
which runs in an instance of its own (one per lane), so the thing to call back has to be found
again there by name: pass a method of the plugin (``self.on_read``), a function defined at the
top level of a module, or raw ``bytes`` for :meth:`Plugin.on_completion`. Lambdas and nested
functions are refused with :class:`TypeError`. The callback receives an :class:`AsyncResult`.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar, Union

from componentize_py_types import Err
from wit_world.imports import types as _t
from wit_world.imports import zookeeper as _zk

from .errors import (  # also reachable as zk.NoNode and so on, which reads well at a call site
    BadVersion,
    ConnectionLoss,
    InvalidPath,
    NoAuth,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotAllowed,
    NotEmpty,
    NotReadOnly,
    OtherError,
    SessionExpired,
    TooLarge,
    ZkError,
    from_wit,
)
from .types import SessionState, Stat, WatchKind

T = TypeVar("T")

#: Data for a node: bytes, or text (stored as UTF-8).
Data = Union[bytes, str]

#: What an ``*_async`` call reports to: a plugin method or top-level function taking an
#: :class:`AsyncResult`, or raw context bytes for :meth:`Plugin.on_completion`.
Callback = Union[Callable[["AsyncResult[Any]"], None], bytes]

__all__ = [
    "AsyncResult",
    "BadVersion",
    "ConnectionLoss",
    "InvalidPath",
    "NoAuth",
    "NoChildrenForEphemerals",
    "NoNode",
    "NodeExists",
    "NotAllowed",
    "NotEmpty",
    "NotReadOnly",
    "OtherError",
    "SessionExpired",
    "TooLarge",
    "ZkError",
    "Callback",
    "Data",
    "Transaction",
    "add_watch",
    "children",
    "create",
    "create_async",
    "delete",
    "delete_async",
    "ensure_path",
    "exists",
    "exists_async",
    "get",
    "get_async",
    "get_children",
    "children_async",
    "session_state",
    "set",
    "set_async",
    "sync",
    "transaction",
]


def get(path: str) -> tuple[bytes, Stat]:
    """A node's data and metadata."""
    return _call(_zk.get, path)


def exists(path: str) -> Optional[Stat]:
    """A node's metadata, or ``None`` when it does not exist."""
    return _call(_zk.exists, path)


def children(path: str) -> list[str]:
    """The names (not paths) of a node's children, in no particular order."""
    return _call(_zk.children, path)


#: Kazoo's name for :func:`children`.
get_children = children


def create(
    path: str,
    value: Data = b"",
    *,
    ephemeral: bool = False,
    sequence: bool = False,
    container: bool = False,
    ttl_ms: Optional[int] = None,
    makepath: bool = False,
) -> str:
    """Creates a node and returns its actual path (with the suffix of a sequential node).

    The flags are Kazoo's: ``ephemeral`` (deleted with the session), ``sequence`` (a 10-digit
    counter appended), ``container`` or ``ttl_ms`` (a persistent node deleted after this many
    milliseconds unmodified and childless); ``makepath`` first creates the missing ancestors.
    """
    mode = _mode(ephemeral, sequence, container, ttl_ms)
    if makepath:
        parent = path.rsplit("/", 1)[0]
        if parent:
            ensure_path(parent)
    return _call(_zk.create, path, _bytes(value), mode)


def set(path: str, value: Data, version: Optional[int] = None) -> Stat:
    """Replaces a node's data if its version is ``version`` (any when ``None``)."""
    return _call(_zk.set, path, _bytes(value), version)


def delete(path: str, version: Optional[int] = None, *, recursive: bool = False) -> None:
    """Deletes a node if its version is ``version`` (any when ``None``).

    ``recursive`` deletes its descendants first (one call per node, not atomic: Kazoo's
    behaviour); a node already gone counts as deleted.
    """
    if recursive:
        try:
            for child in children(path):
                delete(f"{path.rstrip('/')}/{child}", recursive=True)
        except NoNode:
            return
        try:
            _call(_zk.delete, path, version)
        except NoNode:
            pass
        return
    _call(_zk.delete, path, version)


def ensure_path(path: str) -> None:
    """Creates ``path`` and its missing ancestors as empty persistent nodes."""
    _call(_zk.ensure_path, path)


def sync(path: str) -> None:
    """Waits until the server this session talks to has caught up with the leader."""
    _call(_zk.sync, path)


def add_watch(path: str, kind: WatchKind = WatchKind.DATA) -> None:
    """Arms a watch of the plugin's own; its events reach :meth:`Plugin.on_watch`.

    One-shot kinds (``DATA``, ``EXISTS``, ``CHILDREN``) fire once; ``PERSISTENT`` and
    ``PERSISTENT_RECURSIVE`` until the session ends.
    """
    _call(_zk.add_watch, path, kind)


def session_state() -> SessionState:
    """The host session's state now."""
    return _zk.session_state()


class Transaction:
    """Writes applied atomically by :meth:`commit`: all of them, or none.

    Build one with :func:`transaction`; each method adds an op and returns the transaction, so
    calls chain: ``zk.transaction().check("/a", 3).set_data("/b", b"x").commit()``.
    """

    def __init__(self) -> None:
        self._ops: list[Any] = []

    def create(
        self,
        path: str,
        value: Data = b"",
        *,
        ephemeral: bool = False,
        sequence: bool = False,
        container: bool = False,
        ttl_ms: Optional[int] = None,
    ) -> "Transaction":
        """Creates a node (the flags as :func:`create`'s)."""
        mode = _mode(ephemeral, sequence, container, ttl_ms)
        self._ops.append(_t.Op_Create((path, _bytes(value), mode)))
        return self

    def delete(self, path: str, version: Optional[int] = None) -> "Transaction":
        """Deletes a node, if its version is ``version`` (any when ``None``)."""
        self._ops.append(_t.Op_Delete((path, version)))
        return self

    def set_data(self, path: str, value: Data, version: Optional[int] = None) -> "Transaction":
        """Replaces a node's data, if its version is ``version`` (any when ``None``)."""
        self._ops.append(_t.Op_SetData((path, _bytes(value), version)))
        return self

    def check(self, path: str, version: int) -> "Transaction":
        """Fails the transaction unless the node has this version."""
        self._ops.append(_t.Op_Check((path, version)))
        return self

    def commit(self) -> list[Union[str, Stat, None]]:
        """Applies the ops; one result each: the created path, the new stat, or ``None``."""
        results = _call(_zk.transaction, self._ops)
        out: list[Union[str, Stat, None]] = []
        for r in results:
            out.append(getattr(r, "value", None))
        return out


def transaction() -> Transaction:
    """A new, empty :class:`Transaction`."""
    return Transaction()


# ---- asynchronous calls ----


@dataclass
class AsyncResult(Generic[T]):
    """The outcome of an ``*_async`` call, as its callback receives it.

    ``op`` names the call (``"get"``, ``"exists"``, ``"children"``, ``"create"``, ``"set"``,
    ``"delete"``), ``context`` holds the bytes given with it. :meth:`get` returns the value or
    raises the call's :class:`ZkError`; ``exception`` is that error, or ``None``.
    """

    op: str
    value: Optional[T]
    exception: Optional[ZkError]
    context: bytes = b""

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.exception is None

    def get(self) -> T:
        """The call's value (``get``: ``(data, stat)``; ``exists``: a stat or ``None``; ...)."""
        if self.exception is not None:
            raise self.exception
        return self.value  # type: ignore[return-value]


def get_async(path: str, callback: Callback, context: bytes = b"") -> None:
    """Reads a node; the callback gets ``(data, stat)``."""
    _call(_zk.get_async, path, _encode(callback, context))


def exists_async(path: str, callback: Callback, context: bytes = b"") -> None:
    """A node's stat or ``None``, to the callback."""
    _call(_zk.exists_async, path, _encode(callback, context))


def children_async(path: str, callback: Callback, context: bytes = b"") -> None:
    """A node's children's names, to the callback."""
    _call(_zk.children_async, path, _encode(callback, context))


def create_async(
    path: str,
    value: Data,
    callback: Callback,
    context: bytes = b"",
    *,
    ephemeral: bool = False,
    sequence: bool = False,
    container: bool = False,
    ttl_ms: Optional[int] = None,
) -> None:
    """Creates a node (the flags as :func:`create`'s); the callback gets its actual path."""
    mode = _mode(ephemeral, sequence, container, ttl_ms)
    _call(_zk.create_async, path, _bytes(value), mode, _encode(callback, context))


def set_async(
    path: str,
    value: Data,
    callback: Callback,
    context: bytes = b"",
    version: Optional[int] = None,
) -> None:
    """Replaces a node's data; the callback gets the new stat."""
    _call(_zk.set_async, path, _bytes(value), version, _encode(callback, context))


def delete_async(
    path: str, callback: Callback, context: bytes = b"", version: Optional[int] = None
) -> None:
    """Deletes a node; the callback gets ``None``."""
    _call(_zk.delete_async, path, version, _encode(callback, context))


# ---- internals ----

# Context bytes that name a callback: this prefix, the target, a NUL, then the user's bytes.
# The target is ".name" for a method of the plugin, "module:qualname" for a function.
_MAGIC = b"\x00wazoo-py\x00"

_COMPLETION_OPS: dict[type, str] = {
    _t.Completion_Get: "get",
    _t.Completion_Exists: "exists",
    _t.Completion_Children: "children",
    _t.Completion_Create: "create",
    _t.Completion_Set: "set",
    _t.Completion_Delete: "delete",
}


def _call(f: Callable[..., T], *args: Any) -> T:
    try:
        return f(*args)
    except Err as e:
        raise from_wit(e.value) from None


def _bytes(value: Data) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"node data must be bytes or str, not {type(value).__name__}")


def _mode(ephemeral: bool, sequence: bool, container: bool, ttl_ms: Optional[int]) -> Any:
    if container or ttl_ms is not None:
        if ephemeral or sequence or (container and ttl_ms is not None):
            raise ValueError("container and ttl_ms exclude every other flag")
        return _t.CreateMode_Container() if container else _t.CreateMode_PersistentWithTtl(ttl_ms)
    if ephemeral:
        return _t.CreateMode_EphemeralSequential() if sequence else _t.CreateMode_Ephemeral()
    return _t.CreateMode_PersistentSequential() if sequence else _t.CreateMode_Persistent()


def _encode(callback: Callback, context: bytes) -> bytes:
    """The context bytes that bring ``callback`` back on the completion lane."""
    if isinstance(callback, (bytes, bytearray)):
        if context:
            raise TypeError("give context bytes or a callback with context, not both")
        return bytes(callback)
    from .plugin import current

    if inspect.ismethod(callback) and callback.__self__ is current():
        target = "." + callback.__func__.__name__
    elif inspect.isfunction(callback) and "<" not in callback.__qualname__:
        target = f"{callback.__module__}:{callback.__qualname__}"
        if _resolve(target, None) is not callback:
            raise TypeError(f"{target} cannot be found again by its name")
    else:
        raise TypeError(
            f"{callback!r} cannot be called back: the completion lane is another instance, "
            "so pass a method of the plugin, a top-level function, or context bytes"
        )
    return _MAGIC + target.encode() + b"\x00" + bytes(context)


def _resolve(target: str, plugin: Any) -> Any:
    if target.startswith("."):
        return getattr(plugin, target[1:])
    module, _, qualname = target.partition(":")
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _result(context: bytes, completion: Any) -> AsyncResult[Any]:
    op = _COMPLETION_OPS.get(type(completion), "unknown")
    outcome = completion.value
    if isinstance(outcome, Err):
        return AsyncResult(op, None, from_wit(outcome.value), context)
    return AsyncResult(op, getattr(outcome, "value", outcome), None, context)


def _dispatch(plugin: Any, context: bytes, completion: Any) -> None:
    """Runs the completion's callback: the one named in ``context``, or ``on_completion``."""
    if context.startswith(_MAGIC):
        rest = context[len(_MAGIC):]
        target, _, user = rest.partition(b"\x00")
        callback = _resolve(target.decode(), plugin)
        callback(_result(user, completion))
    else:
        plugin.on_completion(context, _result(context, completion))
