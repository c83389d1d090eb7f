/*
 * The state every TetherClient holds (options, store, timers, carriage choice,
 * cursors, the connection) and the small helpers around it (the promise chain,
 * reports, timers). TetherClient (client.ts) is the protocol on top; the split
 * keeps each file to one concern and within the project's size rule.
 */
import { Backoff } from './backoff.js';
import { encodeFrame, type Frame } from './codec.js';
import { Emitter } from './emitter.js';
import { TetherError, type ErrorName } from './errors.js';
import { Fallback } from './fallback.js';
import { realTimers, resolveOptions, type ResolvedOptions, type TetherClientOptions, type Timers } from './options.js';
import { MemoryStore, type SessionRecord, type StoredMessage, type TetherStore } from './store.js';
import type { Transport, TransportFactory } from './transport.js';
import { isNode } from './platform.js';
import type { BackpressureEvent, ClientEvents, ClientState } from './events.js';
import { makeIndexedDbStore } from './util.js';

export type Phase = 'idle' | 'connecting' | 'welcoming' | 'open' | 'waiting' | 'stopped' | 'closed';

export abstract class ClientBase extends Emitter<ClientEvents> {
  readonly options: ResolvedOptions;
  protected readonly store: TetherStore;
  protected readonly timers: Timers;
  protected readonly backoff: Backoff;
  protected readonly fb: Fallback;
  protected factory: TransportFactory | null;
  protected chain: Promise<void> = Promise.resolve();

  protected rec: SessionRecord | null = null;
  protected outbox: StoredMessage[] = [];
  protected outboxBytes = 0;
  protected sendQueue: { data: Uint8Array; resolve: (s: bigint) => void; reject: (e: Error) => void }[] = [];
  protected flushing = false;
  protected queuedBytes = 0; /* bytes in sendQueue */

  protected phase: Phase = 'idle';
  protected tp: Transport | null = null;
  protected closing: { error: ErrorName; code: number; detail: string; stop: boolean } | null = null;
  protected timer: unknown = null; /* connect/welcome timeout or backoff delay */
  protected ackTimer: unknown = null;
  protected liveSince = 0;
  protected connAcked = false;
  protected welcomed = false;

  protected everSent = 0n; /* highest seq possibly transmitted, on any connection or process */
  protected connSent = 0n; /* highest seq transmitted (or known received) on this connection */
  protected peerMax = 0;
  protected peerWindow = 1;
  protected windowFull = false;
  protected outboxFull = false;
  protected delivered = 0n; /* highest seq delivered to the application */
  protected lastAckSent = 0n;
  protected waiters: { resolve: () => void; timer: unknown }[] = [];
  protected unwatch: () => void = () => undefined; /* removes the online/offline listeners */

  constructor(opts: TetherClientOptions) {
    super();
    this.options = resolveOptions(opts);
    this.timers = opts.timers ?? realTimers;
    const o = this.options;
    this.backoff = new Backoff(o.backoffBaseMs, o.backoffCapMs, o.backoffMaxAttempts, opts.random ?? Math.random);
    this.fb = new Fallback(o.transport, o.fallbackMemoryMs);
    this.factory = opts.transportFactory ?? null;
    const s = opts.store ?? (typeof indexedDB !== 'undefined' && !isNode() ? 'indexeddb' : 'memory');
    if (s === 'memory') {
      this.store = new MemoryStore();
    } else if (s === 'indexeddb') {
      this.store = makeIndexedDbStore(o.name);
    } else if (s && typeof s === 'object' && typeof s.load === 'function') {
      this.store = s;
    } else {
      throw new TetherError('TETHER_ECONFIG', `store ${String(s)} is not 'memory', 'indexeddb' or a TetherStore`);
    }
  }

  protected run<T>(op: () => Promise<T>): Promise<T> {
    const p = this.chain.then(op);
    this.chain = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }

  protected write(f: Frame): void {
    if (this.tp) {
      this.tp.send(encodeFrame(f));
    }
  }

  /* ---- helpers ---- */

  protected allAcked(): boolean {
    return this.sendQueue.length === 0 && (!this.rec || this.rec.peerAcked === this.rec.outLast);
  }

  protected report(state: ClientState, error: ErrorName, http: number, code: number, retryInMs: number, detail: string, kind?: 'websocket' | 'http'): void {
    this.emitSafe('state', {
      state,
      error,
      httpStatus: http,
      code,
      retryInMs,
      transport: kind ?? (this.fb.http ? 'http' : 'websocket'),
      detail,
    });
  }

  protected emitBp(kind: BackpressureEvent['kind']): void {
    this.emitSafe('backpressure', { kind, pendingMessages: this.outbox.length, pendingBytes: this.outboxBytes });
  }

  protected clearTimer(): void {
    if (this.timer !== null) {
      this.timers.clearTimeout(this.timer);
      this.timer = null;
    }
  }

  protected clearAckTimer(): void {
    if (this.ackTimer !== null) {
      this.timers.clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
  }
}
