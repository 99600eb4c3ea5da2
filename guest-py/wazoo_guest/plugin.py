"""The :class:`Plugin` base class and :func:`export`, which makes a subclass the component.

componentize-py creates a fresh ``WitWorld`` object for every call the host makes, so nothing
kept on that object survives from ``init`` to ``on_watch``. :func:`export` therefore keeps the
plugin in a module-level slot: ``init`` creates it once per wasm instance, and every handler
call of that instance reaches the same object, with whatever state it keeps on ``self``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Callable, Optional, TypeVar

import wit_world
from componentize_py_types import Err
from wit_world.imports import lane as _lane

from . import zk as _zkmod
from .types import SessionEvent, WatchEvent
from .zk import AsyncResult

__all__ = ["Plugin", "current", "export"]

P = TypeVar("P", bound="Plugin")

_log = logging.getLogger("wazoo_guest")


class Plugin:
    """A plugin: subclass it, override the handlers it needs, and :func:`export` the class.

    The host creates one wasm instance per lane (session, watch, completion) and calls
    ``init`` in each before any handler, so each lane has its own plugin object, created once
    and kept for the instance's life: state on ``self`` survives between the calls of one
    lane. Keep state that lanes share in ZooKeeper. A trap (an uncaught exception, an
    exhausted compute budget) rebuilds the instance from the component, and with it the
    plugin, from its configuration.
    """

    def __init__(self, config: dict[str, str]) -> None:
        """Creates the plugin from its configuration (the host's ``key = value`` pairs).

        Raising here fails the instance: the host reports the exception's message and calls
        none of its handlers.
        """
        #: The plugin's configuration.
        self.config: dict[str, str] = config

    def on_session(self, event: SessionEvent) -> None:
        """A session state change (the session lane)."""

    def on_watch(self, event: WatchEvent) -> None:
        """A watch event (the watch lane): from a binding or from :func:`zk.add_watch`."""

    def on_completion(self, context: bytes, result: AsyncResult[Any]) -> None:
        """An ``*_async`` call given raw ``context`` bytes completed (the completion lane)."""


_plugin: Optional[Plugin] = None


def current() -> Optional[Plugin]:
    """This instance's plugin, once ``init`` has created it."""
    return _plugin


def export(cls: type[P]) -> type:
    """The component's ``WitWorld`` class for plugin class ``cls``.

    Assign it at the top level of the plugin's module: ``WitWorld = export(MyPlugin)``. Its
    ``init`` creates ``cls(config)`` and keeps it; ``on_watch`` and ``on_completion`` go on with
    the events queued behind theirs (``wazoo:plugin/lane``), one handler call each, so a burst
    costs the host one call into the guest. An exception a handler does not catch is printed
    on stderr (which the host logs) and traps: the host counts a crash and rebuilds the
    instance for the next event.
    """

    class WitWorld(wit_world.WitWorld):
        def init(self, config: list[tuple[str, str]]) -> None:
            global _plugin
            try:
                _plugin = cls(dict(config))
            except Exception as e:
                _log.exception("%s(config) failed", cls.__name__)
                raise Err(f"{type(e).__name__}: {e}") from None

        def on_session(self, event: SessionEvent) -> None:
            _run("on-session", lambda p: p.on_session(event))

        def on_watch(self, event: WatchEvent) -> None:
            def handle(p: Plugin) -> None:
                ev: Optional[WatchEvent] = event
                while ev is not None:
                    p.on_watch(ev)
                    ev = _lane.next_watch()

            _run("on-watch", handle)

        def on_completion(self, context: bytes, result: Any) -> None:
            def handle(p: Plugin) -> None:
                item: Optional[tuple[bytes, Any]] = (context, result)
                while item is not None:
                    _zkmod._dispatch(p, item[0], item[1])
                    item = _lane.next_completion()

            _run("on-completion", handle)

    WitWorld.__qualname__ = f"WitWorld[{cls.__qualname__}]"
    return WitWorld


def _run(export_name: str, f: Callable[[Plugin], None]) -> None:
    plugin = _plugin
    if plugin is None:
        _log.error("%s called before a successful init; event dropped", export_name)
        return
    try:
        f(plugin)
    except BaseException as e:
        # One write, so the host logs the whole traceback at once; then trap.
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        sys.stderr.write(f"guest exception in {export_name}: {text}")
        sys.stderr.flush()
        raise
