"""probe: one Python test guest whose behaviour its configuration picks (``mode``), so the
tests compile one component (minutes in a debug build) instead of one per behaviour.

Every mode acts on watch events and writes what it saw to ``sink`` (a node):

* ``state``: counts events on ``self`` and writes ``count=N inits=M`` (M: how many plugin
  objects this instance created; 1 while the instance lives).
* ``errors``: provokes each failure it can and writes ``call:ExceptionClass`` lines; starts
  async calls whose callbacks (a plugin method, a top-level function, raw bytes) write
  ``SINK.async-*`` from the completion lane.
* ``forbidden``: reads and writes ``forbidden`` (outside its allow-lists), writes the classes.
* ``spin``: logs ``spinning`` and loops forever.
* ``bomb``: logs ``bombing`` and allocates until memory runs out.
* ``raise``: logs ``raising`` and raises ``RuntimeError("boom from python")``.
"""

import logging

import wazoo_guest

from wazoo_guest import AsyncResult, Plugin, WatchEvent, export, zk

log = logging.getLogger("probe")

inits = 0


def _name(call) -> str:
    try:
        call()
    except zk.ZkError as e:
        return type(e).__name__
    return "no error"


def on_async_function(result: AsyncResult) -> None:
    """A top-level callback: run on the completion lane, found again by its name."""
    sink = result.context.decode()
    zk.create(sink + ".async-function", f"{result.op}:{type(result.exception).__name__}")


class Probe(Plugin):
    def __init__(self, config: dict[str, str]) -> None:
        global inits
        super().__init__(config)
        inits += 1
        self.mode = config["mode"]
        self.sink = config.get("sink", "/sink")
        self.count = 0

    def on_watch(self, event: WatchEvent) -> None:
        getattr(self, "mode_" + self.mode)(event)

    def mode_state(self, event: WatchEvent) -> None:
        self.count += 1
        zk.set(self.sink, f"count={self.count} inits={inits}")

    def mode_errors(self, event: WatchEvent) -> None:
        base = self.config["base"]
        zk.ensure_path(base + "/full/child")
        try:
            zk.create(base + "/exists")
        except zk.NodeExists:
            pass
        results = [
            "get-missing:" + _name(lambda: zk.get(base + "/missing")),
            "create-existing:" + _name(lambda: zk.create(base + "/exists")),
            "set-bad-version:" + _name(lambda: zk.set(base + "/exists", b"x", version=99)),
            "delete-not-empty:" + _name(lambda: zk.delete(base + "/full")),
            "invalid-path:" + _name(lambda: zk.get("no-slash")),
            "too-large:" + _name(lambda: zk.set(base + "/exists", b"x" * (2 << 20))),
            "denied:" + _name(lambda: zk.get("/elsewhere")),
            "kazoo-alias:" + str(wazoo_guest.NoNodeError is zk.NoNode and issubclass(zk.NoNode, zk.ZkError)),
        ]
        zk.set(self.sink, "\n".join(results))
        zk.get_async(base + "/missing", self.on_async_method, context=self.sink.encode())
        zk.get_async(base + "/exists", on_async_function, context=self.sink.encode())
        zk.exists_async(base + "/missing", b"raw:" + self.sink.encode())
        try:
            zk.get_async(base + "/exists", lambda r: None)
        except TypeError:
            zk.create(self.sink + ".lambda-refused", b"TypeError")

    def on_async_method(self, result: AsyncResult) -> None:
        sink = result.context.decode()
        zk.create(sink + ".async-method", f"{result.op}:{type(result.exception).__name__}")

    def on_completion(self, context: bytes, result: AsyncResult) -> None:
        sink = context.removeprefix(b"raw:").decode()
        zk.create(sink + ".async-raw", f"{result.op}:{result.get()}")

    def mode_forbidden(self, event: WatchEvent) -> None:
        target = self.config["forbidden"]
        read = _name(lambda: zk.get(target))
        try:
            zk.set(target, b"overwritten")
            wrote = "no error"
        except zk.NotAllowed as e:
            wrote = f"NotAllowed ({e.message})"
        zk.set(self.sink, f"read:{read}\nwrite:{wrote}")

    def mode_spin(self, event: WatchEvent) -> None:
        log.info("spinning on %s", event.path)
        n = 0
        while True:
            n += 1

    def mode_bomb(self, event: WatchEvent) -> None:
        log.info("bombing on %s", event.path)
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))

    def mode_raise(self, event: WatchEvent) -> None:
        log.info("raising on %s", event.path)
        raise RuntimeError("boom from python")


WitWorld = export(Probe)
