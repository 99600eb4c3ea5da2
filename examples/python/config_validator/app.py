"""config_validator: checks the JSON written under a path and writes a verdict beside it.

Bind it to a persistent recursive watch on its root (``{ recursive = "/config" }``) and let it
read and write there. When a node below the root is created or changed, it parses the node's
data as JSON and writes ``NODE.verdict``: ``ok``, or ``invalid JSON: `` and the parser's
message (``/config/app`` -> ``/config/app.verdict``). A node with no data is not a document
and gets no verdict; deleting a node deletes its verdict. Verdict nodes themselves are left
alone (their own writes come back as events too).

Configuration: ``root`` (default ``/config``), the subtree it validates.
"""

import json
import logging

from wazoo_guest import EventType, Plugin, WatchEvent, export, zk

log = logging.getLogger("validator")

SUFFIX = ".verdict"


class ConfigValidator(Plugin):
    def __init__(self, config: dict[str, str]) -> None:
        super().__init__(config)
        self.root = config.get("root", "/config").rstrip("/") or "/"
        if not self.root.startswith("/"):
            raise ValueError(f"root must be an absolute path, not {self.root!r}")

    def on_watch(self, event: WatchEvent) -> None:
        path = event.path
        if path == self.root or path.endswith(SUFFIX):
            return
        if event.event_type == EventType.NODE_DELETED:
            try:
                zk.delete(path + SUFFIX)
            except zk.NoNode:
                pass
            return
        if event.event_type not in (EventType.NODE_CREATED, EventType.NODE_DATA_CHANGED):
            return
        try:
            data, _ = zk.get(path)
        except zk.NoNode:
            return  # gone already; its deletion event follows
        if not data:
            return
        verdict = self.judge(data)
        self.write(path + SUFFIX, verdict)
        log.info("%s: %s", path, verdict)

    @staticmethod
    def judge(data: bytes) -> str:
        try:
            json.loads(data)
        except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError both
            return f"invalid JSON: {e}"
        return "ok"

    @staticmethod
    def write(path: str, verdict: str) -> None:
        try:
            zk.set(path, verdict)
        except zk.NoNode:
            try:
                zk.create(path, verdict)
            except zk.NodeExists:
                zk.set(path, verdict)


WitWorld = export(ConfigValidator)
