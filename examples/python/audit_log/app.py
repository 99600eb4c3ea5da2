"""audit_log: logs every change under the subtree it is bound to, with the node's stat.

Bind it to a persistent recursive watch (``{ recursive = "/config" }``). ZooKeeper 3.8's
notifications carry no zxid, so for each event it reads the node's stat and logs, at info:

* ``#3 node-created /a/b mzxid=0x1f version=0 seq=7`` (likewise ``node-data-changed``;
  ``node-children-changed`` adds ``cversion`` and ``pzxid``);
* ``#4 node-deleted /a/b seq=8`` (a deleted node has no stat left);
* ``#5 node-data-changed /a/b gone before it could be read seq=9``;
* ``#6 resync /a seq=10: changes made while disconnected were not reported``.

``#N`` counts the events this instance has seen: state kept on ``self`` lives as long as the
instance. No configuration; failed reads are logged at warning.
"""

import logging

from wazoo_guest import EventType, Plugin, SessionEvent, WatchEvent, export, zk

log = logging.getLogger("audit")


def _kind(event_type: EventType) -> str:
    return event_type.name.lower().replace("_", "-")


class AuditLog(Plugin):
    def __init__(self, config: dict[str, str]) -> None:
        super().__init__(config)
        self.seen = 0

    def on_session(self, event: SessionEvent) -> None:
        log.info("session %s (session id %#x, seq %d)", _kind(event.state), event.session_id, event.seq)

    def on_watch(self, event: WatchEvent) -> None:
        self.seen += 1
        kind, path, seq = _kind(event.event_type), event.path, event.seq
        if event.event_type == EventType.NODE_DELETED:
            log.info("#%d %s %s seq=%d", self.seen, kind, path, seq)
            return
        if event.event_type == EventType.RESYNC:
            log.info("#%d %s %s seq=%d: changes made while disconnected were not reported",
                     self.seen, kind, path, seq)
            return
        try:
            stat = zk.exists(path)
        except zk.ZkError as e:
            log.warning("#%d %s %s seq=%d: cannot read its stat: %s", self.seen, kind, path, seq, e)
            return
        if stat is None:
            log.info("#%d %s %s gone before it could be read seq=%d", self.seen, kind, path, seq)
        elif event.event_type == EventType.NODE_CHILDREN_CHANGED:
            log.info("#%d %s %s mzxid=%#x version=%d cversion=%d pzxid=%#x seq=%d", self.seen,
                     kind, path, stat.mzxid, stat.version, stat.cversion, stat.pzxid, seq)
        else:
            log.info("#%d %s %s mzxid=%#x version=%d seq=%d", self.seen, kind, path,
                     stat.mzxid, stat.version, seq)


WitWorld = export(AuditLog)
