/* The client's options, their defaults (the C client's, src/common/defaults.h) and checks. */
import { BACKOFF_BASE_MS, BACKOFF_CAP_MS, BACKOFF_RESET_MS } from './backoff.js';
import { TetherError } from './errors.js';
import type { TetherStore } from './store.js';
import type { TransportFactory } from './transport.js';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  now(): number;
}

export interface TetherClientOptions {
  /** ws:// or wss:// URL of the tether server. */
  url: string;
  /** 'memory' (the Node default), 'indexeddb' (the browser default) or your own store. */
  store?: 'memory' | 'indexeddb' | TetherStore;
  /** The store's name: one session per name (IndexedDB database "tether:<name>"). Default "default". */
  name?: string;
  /** 'auto' (WebSocket, the HTTP carriage when the path blocks it; default), 'websocket' or 'http'. */
  transport?: 'auto' | 'websocket' | 'http';
  /** Manual acknowledgement: messages are committed only when the application calls ack(seq). */
  manualAck?: boolean;
  /** Largest message accepted, bytes (default 1048576). */
  maxMessage?: number;
  /** Most unacknowledged messages in flight (default 1024). */
  window?: number;
  /** ACK after this many committed messages (default 64, at most half the window). */
  ackEvery?: number;
  /** ACK at most this long after the first unacknowledged commit, ms (default 20). */
  ackDelayMs?: number;
  /** Backoff: first bound, ms (default 250). */
  backoffBaseMs?: number;
  /** Backoff: largest bound, ms (default 30000). */
  backoffCapMs?: number;
  /** Backoff: retries before giving up (default 0: never). */
  backoffMaxAttempts?: number;
  /** A connection up this long resets the backoff, ms (default 10000). */
  backoffResetMs?: number;
  /** Connect (TCP, TLS, upgrade) within this, ms (default 10000). */
  connectTimeoutMs?: number;
  /** WELCOME within this after the upgrade, ms (default 10000). */
  welcomeTimeoutMs?: number;
  /** WebSocket ping interval, ms, where the platform can ping (Node; default 20000; 0: off). */
  pingIntervalMs?: number;
  /** No pong within this: the link is dead, ms (default 10000). */
  pongTimeoutMs?: number;
  /** Outbox cap in messages (default 0: none); send() refuses with TETHER_EOUTBOX_FULL past it. */
  maxPendingMessages?: number;
  /** Outbox cap in bytes (default 0: none). */
  maxPendingBytes?: number;
  /** AUTO: keep the HTTP verdict this long before probing WebSocket again, ms (default 300000). */
  fallbackMemoryMs?: number;
  /** Retry even after permanent refusals (401, 403, a rejected token). Default false. */
  retryPermanent?: boolean;
  /** Headers for the upgrade and the HTTP carriage (Node only; browsers do not allow them). */
  headers?: Record<string, string>;
  /** Injected for tests: randomness in [0, 1) for the backoff. */
  random?: () => number;
  /** Injected for tests: timers and clock. */
  timers?: Timers;
  /** Injected for tests, or to bring your own carriage. */
  transportFactory?: TransportFactory;
}

export interface ResolvedOptions {
  url: string;
  name: string;
  transport: 'auto' | 'websocket' | 'http';
  manualAck: boolean;
  maxMessage: number;
  window: number;
  ackEvery: number;
  ackDelayMs: number;
  backoffBaseMs: number;
  backoffCapMs: number;
  backoffMaxAttempts: number;
  backoffResetMs: number;
  connectTimeoutMs: number;
  welcomeTimeoutMs: number;
  pingIntervalMs: number;
  pongTimeoutMs: number;
  maxPendingMessages: number;
  maxPendingBytes: number;
  fallbackMemoryMs: number;
  retryPermanent: boolean;
  headers: Record<string, string>;
}

export const DEFAULTS = {
  maxMessage: 1048576,
  window: 1024,
  ackEvery: 64,
  ackDelayMs: 20,
  backoffBaseMs: BACKOFF_BASE_MS,
  backoffCapMs: BACKOFF_CAP_MS,
  backoffMaxAttempts: 0,
  backoffResetMs: BACKOFF_RESET_MS,
  connectTimeoutMs: 10000,
  welcomeTimeoutMs: 10000,
  pingIntervalMs: 20000,
  pongTimeoutMs: 10000,
  maxPendingMessages: 0,
  maxPendingBytes: 0,
  fallbackMemoryMs: 300000,
};

function num(o: TetherClientOptions, key: keyof typeof DEFAULTS, min: number, max: number): number {
  const v = o[key];
  if (v === undefined) {
    return DEFAULTS[key];
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new TetherError('TETHER_ECONFIG', `${key} ${String(v)} is not an integer in ${min}..${max}`);
  }
  return v;
}

export function resolveOptions(o: TetherClientOptions): ResolvedOptions {
  if (!o || typeof o.url !== 'string' || !/^wss?:\/\/[^/]/i.test(o.url)) {
    throw new TetherError('TETHER_ECONFIG', `url ${String(o?.url)} is not a ws:// or wss:// URL`);
  }
  const transport = o.transport ?? 'auto';
  if (!['auto', 'websocket', 'http'].includes(transport)) {
    throw new TetherError('TETHER_ECONFIG', `transport ${String(transport)} is not auto, websocket or http`);
  }
  const name = o.name ?? 'default';
  if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
    throw new TetherError('TETHER_ECONFIG', 'name must be a string of 1 to 200 characters');
  }
  const U32 = 0xffffffff;
  const window = num(o, 'window', 1, U32);
  let ackEvery = num(o, 'ackEvery', 1, U32);
  if (o.ackEvery === undefined) {
    ackEvery = Math.max(1, Math.min(ackEvery, Math.floor(window / 2)));
  }
  return {
    url: o.url,
    name,
    transport,
    manualAck: !!o.manualAck,
    maxMessage: num(o, 'maxMessage', 1, U32),
    window,
    ackEvery,
    ackDelayMs: num(o, 'ackDelayMs', 0, 3600000),
    backoffBaseMs: num(o, 'backoffBaseMs', 0, U32),
    backoffCapMs: num(o, 'backoffCapMs', 0, U32),
    backoffMaxAttempts: num(o, 'backoffMaxAttempts', 0, U32),
    backoffResetMs: num(o, 'backoffResetMs', 0, U32),
    connectTimeoutMs: num(o, 'connectTimeoutMs', 1, 3600000),
    welcomeTimeoutMs: num(o, 'welcomeTimeoutMs', 1, 3600000),
    pingIntervalMs: num(o, 'pingIntervalMs', 0, 3600000),
    pongTimeoutMs: num(o, 'pongTimeoutMs', 1, 3600000),
    maxPendingMessages: num(o, 'maxPendingMessages', 0, Number.MAX_SAFE_INTEGER),
    maxPendingBytes: num(o, 'maxPendingBytes', 0, Number.MAX_SAFE_INTEGER),
    fallbackMemoryMs: num(o, 'fallbackMemoryMs', 1, U32),
    retryPermanent: !!o.retryPermanent,
    headers: { ...(o.headers ?? {}) },
  };
}

export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  now: () => Date.now(),
};
