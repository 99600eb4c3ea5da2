// Types of the wazoo JavaScript SDK (wazoo.js). A plugin module imports from "wazoo" and
// default-exports a Plugin; scripts/build-js-plugin.sh builds it into a component.
//
// WIT's s64 and u64 values (zxids, times, session ids, sequence stamps) are bigints.

/** A znode's metadata. */
export interface Stat {
  czxid: bigint;
  mzxid: bigint;
  /** Creation time, milliseconds since the Unix epoch. */
  ctime: bigint;
  /** Last modification time, milliseconds since the Unix epoch. */
  mtime: bigint;
  version: number;
  cversion: number;
  aversion: number;
  /** The owner's session id if the node is ephemeral, 0n otherwise. */
  ephemeralOwner: bigint;
  dataLength: number;
  numChildren: number;
  pzxid: bigint;
}

export type SessionState = "connected" | "connected-read-only" | "suspended" | "lost" | "closed";

export type EventType =
  | "none"
  | "node-created"
  | "node-deleted"
  | "node-data-changed"
  | "node-children-changed"
  | "data-watch-removed"
  | "child-watch-removed"
  | "persistent-watch-removed"
  /** The connection came back and a persistent watch was re-armed: re-read. */
  | "resync";

export type WatchKind = "data" | "exists" | "children" | "persistent" | "persistent-recursive";

/** A watch event; `seq` is the host's per-client sequence stamp. */
export interface WatchEvent {
  eventType: EventType;
  path: string;
  seq: bigint;
}

/** A session state change. */
export interface SessionEvent {
  state: SessionState;
  sessionId: bigint;
  seq: bigint;
}

/** Node data: a string is written as UTF-8; nothing is empty data. */
export type Data = string | Uint8Array | ArrayBuffer | ArrayBufferView | null | undefined;

/** How `create` makes a node (persistent by default). */
export interface CreateOptions {
  ephemeral?: boolean;
  sequential?: boolean;
  /** Deleted by the server some time after its last child is deleted. */
  container?: boolean;
  /** Persistent, deleted when unmodified and childless for this many milliseconds. */
  ttl?: number | bigint;
  /** Create the missing ancestors first (empty, persistent). */
  makepath?: boolean;
}

/** What an asynchronous call completed: its kind is the call's name without `Async`. */
export type CompletionKind = "get" | "exists" | "children" | "create" | "set" | "delete";

/**
 * A callback of an asynchronous call: a method of the plugin (or its name), called on the
 * completion lane's instance with `this` the plugin there, `error` null on success.
 */
export type Callback<T> =
  | ((error: ZkError | null, value: T | undefined, context: any, kind: CompletionKind) => void)
  | string;

export type OpResult =
  | { type: "create"; path: string }
  | { type: "delete" }
  | { type: "set-data"; stat: Stat }
  | { type: "check" };

/** A transaction: add ops, then `commit()`; all apply or none (then it throws). */
export interface Transaction {
  create(path: string, data?: Data, opts?: CreateOptions): Transaction;
  delete(path: string, version?: number): Transaction;
  setData(path: string, data: Data, version?: number): Transaction;
  check(path: string, version: number): Transaction;
  commit(): OpResult[];
}

/**
 * ZooKeeper through the host's session, limited to the plugin's allow-lists. Every call blocks
 * the handler until the server answers and throws a ZkError subclass on failure. The `*Async`
 * calls return at once; their outcome reaches `callback` (or `onCompletion`) later, on the
 * completion lane, with `context` (any JSON value).
 */
export declare const zk: {
  get(path: string): { data: Uint8Array; stat: Stat };
  /** `get`, the data decoded as UTF-8. */
  getText(path: string): { text: string; stat: Stat };
  /** The node's stat, or null when it does not exist. */
  exists(path: string): Stat | null;
  /** The names of the node's children, in no particular order. */
  children(path: string): string[];
  /** Creates a node; returns its actual path (with the sequence suffix, if sequential). */
  create(path: string, data?: Data, opts?: CreateOptions): string;
  /** Replaces the data, if the node's version is `version` (any when omitted). */
  set(path: string, data: Data, version?: number): Stat;
  delete(path: string, version?: number): void;
  /** Creates the path and its missing ancestors; succeeds when it exists. */
  ensurePath(path: string): void;
  transaction(): Transaction;
  sync(path: string): void;
  /** Arms a watch whose events reach `onWatch`; one-shot kinds fire once. */
  addWatch(path: string, kind?: WatchKind): void;
  sessionState(): SessionState;

  getAsync(path: string, callback?: Callback<{ data: Uint8Array; stat: Stat }>, context?: any): void;
  existsAsync(path: string, callback?: Callback<Stat | null>, context?: any): void;
  childrenAsync(path: string, callback?: Callback<string[]>, context?: any): void;
  createAsync(
    path: string,
    data?: Data,
    opts?: CreateOptions,
    callback?: Callback<string>,
    context?: any,
  ): void;
  setAsync(path: string, data: Data, version?: number, callback?: Callback<Stat>, context?: any): void;
  deleteAsync(path: string, version?: number, callback?: Callback<void>, context?: any): void;
};

/** The host's log, under the plugin's name; arguments are joined as console.log joins them. */
export declare const log: {
  trace(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  info(...args: unknown[]): void;
  /** `info`. */
  log(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  error(...args: unknown[]): void;
};

/** UTF-8 text of node data. */
export declare function text(data: Uint8Array): string;

/** A failed ZooKeeper call: `kind` is the zk-error case (e.g. "no-node"), `detail` the host's explanation. */
export declare class ZkError extends Error {
  readonly kind: string;
  readonly detail: string | null;
}
export declare class NoNode extends ZkError {}
export declare class NodeExists extends ZkError {}
export declare class BadVersion extends ZkError {}
export declare class NotEmpty extends ZkError {}
export declare class NoAuth extends ZkError {}
export declare class NoChildrenForEphemerals extends ZkError {}
/** The connection was lost with the call in flight: it may or may not have been applied. */
export declare class ConnectionLoss extends ZkError {}
export declare class SessionExpired extends ZkError {}
export declare class NotReadOnly extends ZkError {}
/** Outside the plugin's allow-lists (`denied`). */
export declare class NotAllowed extends ZkError {}
export declare class InvalidPath extends ZkError {}
/** Over the plugin's payload cap. */
export declare class TooLarge extends ZkError {}
/** Any other failure (`other`). */
export declare class OtherError extends ZkError {}

/**
 * A plugin: the default export of its module, an object or a class (made once per instance).
 * Every handler is optional. The host makes one instance per lane (session, watch, completion);
 * the plugin lives as long as its instance, so state kept on `this` carries between calls.
 * A handler that throws loses its event and the instance (it is rebuilt, the crash counted).
 */
export interface Plugin {
  /** The plugin's configuration (the last value of a repeated key). Throwing fails the instance. */
  init?(config: Record<string, string>): void;
  onSession?(event: SessionEvent): void;
  onWatch?(event: WatchEvent): void;
  /** Completions of asynchronous calls made without a callback. */
  onCompletion?(error: ZkError | null, value: unknown, context: any, kind: CompletionKind): void;
  [method: string]: unknown;
}

/** Used by the build's generated entry module; not for plugins. */
export declare function bindPlugin(definition: Plugin | (new () => Plugin)): {
  init(config: [string, string][]): { tag: "ok"; val: undefined } | { tag: "err"; val: string };
  onSession(event: SessionEvent): void;
  onWatch(event: WatchEvent): void;
  onCompletion(context: Uint8Array, completion: unknown): void;
};
