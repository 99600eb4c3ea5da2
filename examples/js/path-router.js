// path-router: copies the writes under some paths to others, as its config routes them.
//
// Config: `routes`, comma-separated `SOURCE=TARGET` pairs of absolute paths, e.g.
// "/incoming/orders=/copies/orders, /incoming/users=/copies/users"; optional `count`, a node
// where the router writes how many copies it has made. Bind it to a persistent recursive watch on
// each SOURCE; it needs read access to the sources and write access to the targets.
//
// A node created or changed at SOURCE/rel is copied to TARGET/rel (its missing parents made),
// a deleted one is deleted there; the longest SOURCE that contains a path routes it, whole
// segments only ("/in" routes "/in/a", never "/inbox"). Events on a SOURCE itself are not
// copied. The count lives on the plugin object, which lasts as long as its instance: it grows
// from one event to the next (an instance rebuilt after a crash starts again from zero).

import { zk, log, NoNode } from "wazoo";

export default {
  init(config) {
    this.routes = parseRoutes(config.routes ?? "");
    if (this.routes.length === 0) {
      throw new Error('config "routes" names no SOURCE=TARGET pair');
    }
    this.countPath = config.count ?? null;
    this.copies = 0;
  },

  onWatch(event) {
    const route = this.routeOf(event.path);
    if (route === null) return;
    const to = route.target + event.path.slice(route.source.length);
    switch (event.eventType) {
      case "node-created":
      case "node-data-changed":
        this.copy(event.path, to);
        break;
      case "node-deleted":
        this.remove(to);
        break;
      default:
        return;
    }
  },

  /** The route of the longest source that `path` lies below, or null. */
  routeOf(path) {
    let best = null;
    for (const r of this.routes) {
      if (path.startsWith(`${r.source}/`) && (best === null || r.source.length > best.source.length)) {
        best = r;
      }
    }
    return best;
  },

  copy(from, to) {
    let data;
    try {
      ({ data } = zk.get(from));
    } catch (e) {
      if (e instanceof NoNode) return; // deleted meanwhile: its deletion follows
      throw e;
    }
    try {
      zk.set(to, data);
    } catch (e) {
      if (!(e instanceof NoNode)) throw e;
      zk.create(to, data, { makepath: true });
    }
    this.counted();
    log.debug(`copied ${from} to ${to} (${data.length} bytes)`);
  },

  remove(to) {
    try {
      zk.delete(to);
    } catch (e) {
      if (!(e instanceof NoNode)) throw e;
    }
  },

  /** One more copy made: kept on the plugin, written to `count` when configured. */
  counted() {
    this.copies += 1;
    if (this.countPath === null) return;
    try {
      zk.set(this.countPath, String(this.copies));
    } catch (e) {
      if (!(e instanceof NoNode)) throw e;
      zk.create(this.countPath, String(this.copies), { makepath: true });
    }
  },
};

function parseRoutes(text) {
  const routes = [];
  for (const pair of text.split(",")) {
    if (pair.trim() === "") continue;
    const [source, target, ...rest] = pair.split("=").map((s) => s.trim().replace(/\/+$/, ""));
    if (rest.length > 0 || !source || !target || !source.startsWith("/") || !target.startsWith("/")) {
      throw new Error(`route ${JSON.stringify(pair.trim())} is not SOURCE=TARGET with absolute paths`);
    }
    if (target === source || target.startsWith(`${source}/`) || source.startsWith(`${target}/`)) {
      throw new Error(`route ${source}=${target}: neither path may contain the other`);
    }
    routes.push({ source, target });
  }
  return routes;
}
