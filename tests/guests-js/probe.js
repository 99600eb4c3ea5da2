// The JavaScript test guest (tests/tests/js.rs): one component whose config `mode` picks what
// it does on each watch event, so the suite compiles one JS component for all its cases.
//
// * `errors`: makes calls that fail and writes `report` (JSON: case -> the error's class name,
//   `kind` and whether it is a ZkError), then starts a `getAsync` of a missing node whose
//   callback, on the completion lane, writes `async-report` the same way.
// * `spin`: logs "spinning", then loops forever.
// * `bomb`: logs "allocating", then allocates and touches memory until something gives.
// * `throw`: logs "throwing", then throws an Error it does not catch.
// Config keys used by `errors`: `report`, `async-report`, `base` (a writable node with a child),
// `forbidden` (a node outside the write allow-list), `big` (bytes over the payload cap).

import { zk, log, ZkError } from "wazoo";

function outcome(f) {
  try {
    f();
    return { class: null };
  } catch (e) {
    return { class: e.constructor.name, kind: e.kind ?? null, zk: e instanceof ZkError };
  }
}

export default {
  init(config) {
    this.config = config;
    this.mode = config.mode;
    if (!["errors", "spin", "bomb", "throw"].includes(this.mode)) {
      throw new Error(`unknown mode ${JSON.stringify(this.mode)}`);
    }
  },

  onWatch(event) {
    if (event.eventType !== "node-created") return;
    const c = this.config;
    switch (this.mode) {
      case "errors": {
        const base = c.base;
        const report = {
          noNode: outcome(() => zk.get(`${base}/missing`)),
          nodeExists: outcome(() => zk.create(`${base}/child`, "again")),
          badVersion: outcome(() => zk.set(`${base}/child`, "x", 999)),
          notEmpty: outcome(() => zk.delete(base)),
          notAllowed: outcome(() => zk.set(c.forbidden, "overwritten")),
          invalidPath: outcome(() => zk.get(`${base}//double`)),
          tooLarge: outcome(() => zk.set(`${base}/child`, new Uint8Array(Number(c.big)))),
          ok: outcome(() => zk.get(`${base}/child`)),
        };
        zk.create(c.report, JSON.stringify(report));
        zk.getAsync(`${base}/missing`, this.gotMissing, { asked: `${base}/missing` });
        break;
      }
      case "spin":
        log.info("spinning");
        for (;;) {}
      case "bomb": {
        log.info("allocating");
        const hog = [];
        for (;;) hog.push(new Uint8Array(1 << 20).fill(7));
      }
      case "throw":
        log.info("throwing");
        throw new Error("boom from JavaScript");
    }
  },

  gotMissing(error, value, context, kind) {
    const report = {
      class: error === null ? null : error.constructor.name,
      zk: error instanceof ZkError,
      message: error === null ? null : error.message,
      value: value === undefined ? null : "a value",
      context,
      kind,
    };
    zk.create(this.config["async-report"], JSON.stringify(report));
  },
};
