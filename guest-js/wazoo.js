// The JavaScript SDK for wazoo plugins (an ES module; its types are in wazoo.d.ts).
//
// A plugin is one ES module whose default export is the plugin: an object (or a class, made
// once per instance) with any of the handlers `init(config)`, `onSession(event)`,
// `onWatch(event)` and `onCompletion(error, value, context, kind)`. It imports what it needs
// from "wazoo":
//
//     import { zk, log, NoNode } from "wazoo";
//
//     export default {
//       init(config) { this.target = config.target ?? "/copy"; this.seen = 0; },
//       onWatch(event) {
//         this.seen += 1;
//         try { zk.set(this.target, String(this.seen)); }
//         catch (e) { if (e instanceof NoNode) zk.create(this.target, String(this.seen)); else throw e; }
//       },
//     };
//
// scripts/build-js-plugin.sh SRC.js OUT.wasm builds it into a component of the `plugin` world
// of wit/plugin.wit with componentize-js. The host makes one instance per lane (session,
// watch, completion); each evaluates the module, so the plugin object lives as long as its
// instance and its state (`this.seen`) carries from one handler call to the next on that lane.
// The lanes do not share memory: what they must share goes through ZooKeeper.

import {
  get as hostGet,
  exists as hostExists,
  children as hostChildren,
  create as hostCreate,
  set as hostSet,
  delete as hostDelete,
  ensurePath as hostEnsurePath,
  transaction as hostTransaction,
  sync as hostSync,
  addWatch as hostAddWatch,
  sessionState as hostSessionState,
  getAsync as hostGetAsync,
  existsAsync as hostExistsAsync,
  childrenAsync as hostChildrenAsync,
  createAsync as hostCreateAsync,
  setAsync as hostSetAsync,
  deleteAsync as hostDeleteAsync,
} from "wazoo:plugin/zookeeper@0.1.0";
import { log as hostLog } from "wazoo:plugin/log@0.1.0";
import { nextWatch, nextCompletion } from "wazoo:plugin/lane@0.1.0";

// ---- errors: one class per zk-error case ----

/** A failed ZooKeeper call; `kind` is the WIT case name, `detail` the host's explanation. */
export class ZkError extends Error {
  constructor(message, kind, detail = null) {
    super(message);
    this.name = new.target.name;
    this.kind = kind;
    this.detail = detail;
  }
}
/** The node does not exist (`no-node`). */
export class NoNode extends ZkError {}
/** The node already exists (`node-exists`). */
export class NodeExists extends ZkError {}
/** The node's version is not the one given (`bad-version`). */
export class BadVersion extends ZkError {}
/** The node has children (`not-empty`). */
export class NotEmpty extends ZkError {}
/** The node's ACL forbids the call (`no-auth`). */
export class NoAuth extends ZkError {}
/** Ephemeral nodes cannot have children (`no-children-for-ephemerals`). */
export class NoChildrenForEphemerals extends ZkError {}
/** The connection was lost while the call was in flight: it may have been applied. */
export class ConnectionLoss extends ZkError {}
/** The session expired (`session-expired`). */
export class SessionExpired extends ZkError {}
/** A write to a read-only server (`not-read-only`). */
export class NotReadOnly extends ZkError {}
/** Outside the plugin's allow-lists (`denied`). */
export class NotAllowed extends ZkError {}
/** Not a valid ZooKeeper path (`invalid-path`). */
export class InvalidPath extends ZkError {}
/** Over the plugin's payload cap (`too-large`). */
export class TooLarge extends ZkError {}
/** Any other failure (`other`). */
export class OtherError extends ZkError {}

const ERRORS = {
  "no-node": NoNode,
  "node-exists": NodeExists,
  "bad-version": BadVersion,
  "not-empty": NotEmpty,
  "no-auth": NoAuth,
  "no-children-for-ephemerals": NoChildrenForEphemerals,
  "connection-loss": ConnectionLoss,
  "session-expired": SessionExpired,
  "not-read-only": NotReadOnly,
  denied: NotAllowed,
  "invalid-path": InvalidPath,
  "too-large": TooLarge,
  other: OtherError,
};

/** The ZkError for a zk-error value (`{tag, val?}`) of the call `what` (e.g. "get /a"). */
function zkError(payload, what) {
  const Class = ERRORS[payload.tag] ?? OtherError;
  const detail = payload.val ?? null;
  const message = `${what}: ${payload.tag}${detail === null ? "" : `: ${detail}`}`;
  return new Class(message, payload.tag, detail);
}

/** Runs an import; a zk-error it returns (thrown by the bindings) becomes its ZkError. */
function call(what, f) {
  try {
    return f();
  } catch (e) {
    const payload = e == null ? undefined : e.payload;
    if (payload && typeof payload.tag === "string" && payload.tag in ERRORS) {
      throw zkError(payload, what);
    }
    throw e;
  }
}

// ---- data, modes, versions ----

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Node data as bytes: a string is UTF-8 encoded; nothing is empty data. */
function bytes(data) {
  if (data === undefined || data === null) return new Uint8Array(0);
  if (typeof data === "string") return encoder.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError(`node data must be a string or bytes, not ${typeof data}`);
}

/** UTF-8 text of node data. */
export function text(data) {
  return decoder.decode(data);
}

/** The WIT create-mode of `create`'s options. */
function createMode(opts) {
  const { ephemeral = false, sequential = false, container = false, ttl } = opts ?? {};
  if (container) {
    if (ephemeral || sequential || ttl !== undefined) {
      throw new TypeError("a container node is neither ephemeral, sequential nor given a ttl");
    }
    return { tag: "container" };
  }
  if (ttl !== undefined) {
    if (ephemeral || sequential) {
      throw new TypeError("a node with a ttl is persistent and not sequential");
    }
    return { tag: "persistent-with-ttl", val: BigInt(ttl) };
  }
  return { tag: `${ephemeral ? "ephemeral" : "persistent"}${sequential ? "-sequential" : ""}` };
}

/** A version argument: a number, or undefined/null for any version. */
function version(v) {
  if (v === undefined || v === null) return undefined;
  if (!Number.isInteger(v)) throw new TypeError(`a version is an integer, not ${v}`);
  return v;
}

function parentOf(path) {
  const i = path.lastIndexOf("/");
  return i > 0 ? path.slice(0, i) : null;
}

// ---- the plugin ----

let plugin = null;
let ready = false;

/** Makes the world's exports for the module's default export (used by the build's entry). */
export function bindPlugin(definition) {
  return {
    init(pairs) {
      try {
        plugin = typeof definition === "function" ? new definition() : definition;
        if (plugin === null || typeof plugin !== "object") {
          throw new TypeError("the plugin module's default export must be an object or a class");
        }
        if (typeof plugin.init === "function") plugin.init(Object.fromEntries(pairs));
        ready = true;
        return { tag: "ok", val: undefined };
      } catch (e) {
        ready = false;
        return { tag: "err", val: e instanceof Error ? String(e) : describe(e) };
      }
    },
    onSession(event) {
      if (handler("onSession")) plugin.onSession(event);
    },
    onWatch(event) {
      if (!handler("onWatch")) return;
      plugin.onWatch(event);
      for (let next = nextWatch(); next !== undefined; next = nextWatch()) {
        plugin.onWatch(next);
      }
    },
    onCompletion(contextBytes, completion) {
      if (!ready) {
        handler("onCompletion");
        return;
      }
      complete(contextBytes, completion);
      for (let next = nextCompletion(); next !== undefined; next = nextCompletion()) {
        complete(next[0], next[1]);
      }
    },
  };
}

/** Whether the plugin can take an event for `name`; logs why not when it was never made. */
function handler(name) {
  if (!ready) {
    hostLog("error", `${name} called before a successful init; event dropped`);
    return false;
  }
  return typeof plugin[name] === "function";
}

// ---- asynchronous calls: the completion names its callback ----

/** The name of the plugin's method `fn`, or null (own properties, then its prototypes). */
function methodName(fn) {
  for (let o = plugin; o !== null && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const name of Object.getOwnPropertyNames(o)) {
      const d = Object.getOwnPropertyDescriptor(o, name);
      if (d && d.value === fn) return name;
    }
  }
  return null;
}

/** The context bytes of an asynchronous call: which method completes it, and with what. */
function envelope(op, path, callback, context) {
  let name = null;
  if (typeof callback === "string") {
    name = callback;
  } else if (typeof callback === "function") {
    name = plugin === null ? null : methodName(callback);
    if (name === null) {
      throw new TypeError(
        "an asynchronous call's callback must be a method of the plugin (or its name): " +
          "completions run in the completion lane's instance, where only the plugin's methods exist",
      );
    }
  } else if (callback !== undefined && callback !== null) {
    throw new TypeError(`a callback is a plugin method or its name, not ${typeof callback}`);
  }
  if (name !== null && (plugin === null || typeof plugin[name] !== "function")) {
    throw new TypeError(`the plugin has no method ${JSON.stringify(name)} to complete ${op}`);
  }
  return encoder.encode(JSON.stringify({ wazoo: 1, op, path, cb: name, ctx: context }));
}

/** Delivers one completion to its callback (or to `onCompletion`). */
function complete(contextBytes, completion) {
  let env = null;
  try {
    const parsed = JSON.parse(decoder.decode(contextBytes));
    if (parsed !== null && typeof parsed === "object" && parsed.wazoo === 1) env = parsed;
  } catch (_) {
    // Not the SDK's: delivered as raw bytes to onCompletion.
  }
  const kind = completion.tag;
  const result = completion.val;
  const context = env ? env.ctx : contextBytes;
  let error = null;
  let value;
  if (result.tag === "ok") {
    value = completionValue(kind, result.val);
  } else {
    error = zkError(result.val, `${env ? env.op : `${kind}Async`}${env ? ` ${env.path}` : ""}`);
  }
  const name = env && env.cb !== null ? env.cb : "onCompletion";
  const fn = plugin[name];
  if (typeof fn !== "function") {
    hostLog("warn", `a ${kind} completed with no ${name} method to take it; dropped`);
    return;
  }
  fn.call(plugin, error, value, context, kind);
}

function completionValue(kind, val) {
  switch (kind) {
    case "get":
      return { data: val[0], stat: val[1] };
    case "exists":
      return val ?? null;
    case "delete":
      return undefined;
    default:
      return val;
  }
}

// ---- ZooKeeper ----

/** A transaction: add ops, then `commit()`; all apply or none. */
class Transaction {
  #ops = [];

  create(path, data, opts) {
    this.#ops.push({ tag: "create", val: [path, bytes(data), createMode(opts)] });
    return this;
  }

  delete(path, v) {
    this.#ops.push({ tag: "delete", val: [path, version(v)] });
    return this;
  }

  setData(path, data, v) {
    this.#ops.push({ tag: "set-data", val: [path, bytes(data), version(v)] });
    return this;
  }

  check(path, v) {
    this.#ops.push({ tag: "check", val: [path, v] });
    return this;
  }

  commit() {
    const results = call("transaction", () => hostTransaction(this.#ops));
    return results.map((r) => {
      switch (r.tag) {
        case "create":
          return { type: "create", path: r.val };
        case "set-data":
          return { type: "set-data", stat: r.val };
        default:
          return { type: r.tag };
      }
    });
  }
}

/** ZooKeeper through the host's session, limited to the plugin's allow-lists. */
export const zk = {
  get(path) {
    const [data, stat] = call(`get ${path}`, () => hostGet(path));
    return { data, stat };
  },
  getText(path) {
    const { data, stat } = zk.get(path);
    return { text: decoder.decode(data), stat };
  },
  exists(path) {
    return call(`exists ${path}`, () => hostExists(path)) ?? null;
  },
  children(path) {
    return call(`children ${path}`, () => hostChildren(path));
  },
  create(path, data, opts) {
    const mode = createMode(opts);
    if (opts && opts.makepath) {
      const parent = parentOf(path);
      if (parent !== null) zk.ensurePath(parent);
    }
    return call(`create ${path}`, () => hostCreate(path, bytes(data), mode));
  },
  set(path, data, v) {
    return call(`set ${path}`, () => hostSet(path, bytes(data), version(v)));
  },
  delete(path, v) {
    call(`delete ${path}`, () => hostDelete(path, version(v)));
  },
  ensurePath(path) {
    call(`ensurePath ${path}`, () => hostEnsurePath(path));
  },
  transaction() {
    return new Transaction();
  },
  sync(path) {
    call(`sync ${path}`, () => hostSync(path));
  },
  addWatch(path, kind = "data") {
    call(`addWatch ${path}`, () => hostAddWatch(path, kind));
  },
  sessionState() {
    return hostSessionState();
  },
  getAsync(path, callback, context) {
    const ctx = envelope("get", path, callback, context);
    call(`get ${path}`, () => hostGetAsync(path, ctx));
  },
  existsAsync(path, callback, context) {
    const ctx = envelope("exists", path, callback, context);
    call(`exists ${path}`, () => hostExistsAsync(path, ctx));
  },
  childrenAsync(path, callback, context) {
    const ctx = envelope("children", path, callback, context);
    call(`children ${path}`, () => hostChildrenAsync(path, ctx));
  },
  createAsync(path, data, opts, callback, context) {
    const mode = createMode(opts);
    const ctx = envelope("create", path, callback, context);
    call(`create ${path}`, () => hostCreateAsync(path, bytes(data), mode, ctx));
  },
  setAsync(path, data, v, callback, context) {
    const ctx = envelope("set", path, callback, context);
    call(`set ${path}`, () => hostSetAsync(path, bytes(data), version(v), ctx));
  },
  deleteAsync(path, v, callback, context) {
    const ctx = envelope("delete", path, callback, context);
    call(`delete ${path}`, () => hostDeleteAsync(path, version(v), ctx));
  },
};

// ---- the host's log ----

/** One log argument as text, as console.log shows it. */
function describe(v) {
  if (typeof v === "string") return v;
  if (v instanceof Error) return v.stack ? `${v}\n${v.stack}`.trimEnd() : String(v);
  if (typeof v === "bigint") return `${v}n`;
  if (v !== null && typeof v === "object") {
    try {
      return JSON.stringify(v, (_, x) => (typeof x === "bigint" ? `${x}n` : x));
    } catch (_) {
      return String(v);
    }
  }
  return String(v);
}

function emit(level, args) {
  hostLog(level, args.map(describe).join(" "));
}

/** The host's log, under the plugin's name; arguments are joined as console.log joins them. */
export const log = {
  trace: (...args) => emit("trace", args),
  debug: (...args) => emit("debug", args),
  info: (...args) => emit("info", args),
  log: (...args) => emit("info", args),
  warn: (...args) => emit("warn", args),
  error: (...args) => emit("error", args),
};
