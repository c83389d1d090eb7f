/*
 * TetherClient: one session with a tether server (proto/PROTOCOL.md): the
 * outbox in a store, HELLO/WELCOME and resume, DATA runs within the window,
 * delayed cumulative ACKs, reconnection with backoff, and the choice of
 * carriage. Everything that touches the store or handles a frame runs on one
 * promise chain, one step at a time, so the order of the protocol is the order
 * of the code.
 */
import { ClientBase, type Phase } from './clientbase.js';
import { decodeFrame, FrameError, type Frame, type Welcome } from './codec.js';
import { FRAME_ACK, FRAME_BYE, FRAME_DATA, FRAME_REJECT, FRAME_WELCOME, MAX_RUN } from './codec.js';
import { TetherError, type ErrorName } from './errors.js';
import { FB_PERMANENT, FB_SWITCHED } from './fallback.js';
import type { TetherClientOptions } from './options.js';
import type { SessionRecord } from './store.js';
import type { CloseInfo, Transport, TransportEvents, TransportFactory } from './transport.js';
import { Probe } from './probe.js';
import { VerdictMemory, verdictKey } from './verdict.js';
import { ensureCrypto, randomBytes } from './platform.js';
import { errText, hex, mismatchOf, permanent, watchOnline } from './util.js';
export { registerIndexedDbStore } from './util.js';
export type { BackpressureEvent, ClientEvents, ClientState, MismatchEvent, StateEvent } from './events.js';

const PROTOCOL_VERSION = 1;
const RUN_BYTES_MAX = 256 * 1024; /* a run's payload bytes, unless one message is larger */
const enc = new TextEncoder();

export class TetherClient extends ClientBase {
  private readonly probe: Probe;
  private readonly verdict: VerdictMemory;

  constructor(opts: TetherClientOptions) {
    super(opts);
    const o = this.options;
    this.verdict = new VerdictMemory(this.store, this.fb, verdictKey(o.url));
    this.probe = new Probe({
      fb: this.fb,
      timers: this.timers,
      connectTimeoutMs: o.connectTimeoutMs,
      welcomeTimeoutMs: o.welcomeTimeoutMs,
      maxMessage: o.maxMessage,
      live: () => this.phase === 'open' && !this.closing && this.fb.http,
      hello: () => ({ frame: this.helloFrame(), cursor: (this.rec as SessionRecord).recvCursor, sessionId: (this.rec as SessionRecord).id }),
      connect: (ev) => {
        let tp: Transport | null = null;
        const session = this.eventsFor(() => tp);
        tp = (this.factory as TransportFactory)('websocket', o.url, ev);
        return { tp, session };
      },
      adopt: (tp, w, cursor) => this.adoptProbe(tp, w, cursor),
      failed: (why, orphan) => this.probeFailed(why, orphan),
    });
  }

  /* ---- public API ---- */

  /** Opens the store (making a session on the first start) and starts connecting. */
  async start(): Promise<void> {
    if (this.phase !== 'idle') {
      throw new TetherError('TETHER_EINVAL', 'start() was already called');
    }
    this.phase = 'stopped';
    await ensureCrypto();
    if (!this.factory) {
      this.factory = await (await import('./transports.js')).defaultTransportFactory(this.options);
    }
    let loaded;
    try {
      loaded = await this.store.load();
      if (!loaded) {
        const rec: SessionRecord = {
          id: randomBytes(16),
          token: randomBytes(32),
          established: false,
          outLast: 0n,
          peerAcked: 0n,
          recvCursor: 0n,
        };
        await this.store.create(rec);
        loaded = { session: rec, outbox: [] };
      }
    } catch (e) {
      this.phase = 'idle';
      throw e instanceof TetherError ? e : new TetherError('TETHER_ESTORE', `cannot open the store: ${errText(e)}`);
    }
    this.rec = { ...loaded.session };
    this.outbox = loaded.outbox;
    this.outboxBytes = this.outbox.reduce((n, m) => n + m.data.length, 0);
    this.everSent = this.rec.outLast; /* a restart cannot rule out that any of them went out */
    this.delivered = this.rec.recvCursor;
    await this.verdict.load(this.timers.now());
    this.listenOnline();
    this.attempt();
  }

  /** The session id (hex), once started. */
  get sessionId(): string {
    return this.rec ? hex(this.rec.id) : '';
  }

  /** Highest seq assigned, highest acknowledged, highest received and committed. */
  get cursors(): { outLast: bigint; peerAcked: bigint; recvCursor: bigint } {
    const r = this.rec;
    return { outLast: r?.outLast ?? 0n, peerAcked: r?.peerAcked ?? 0n, recvCursor: r?.recvCursor ?? 0n };
  }

  /** Unacknowledged messages and their bytes. */
  get pending(): { messages: number; bytes: number } {
    return { messages: this.outbox.length, bytes: this.outboxBytes };
  }

  /** The current state. */
  get state(): Phase {
    return this.phase;
  }

  /**
   * Stores a message (bytes, or a string sent as UTF-8) in the outbox and resolves with its
   * seq once it is stored; it is then sent as soon as the connection and window allow.
   * Rejects with TETHER_ETOOBIG, TETHER_EOUTBOX_FULL, TETHER_ESTORE or TETHER_ECLOSED.
   */
  send(message: Uint8Array | ArrayBuffer | string): Promise<bigint> {
    let data: Uint8Array;
    if (typeof message === 'string') {
      data = enc.encode(message);
    } else if (message instanceof Uint8Array) {
      data = message.slice();
    } else if (message instanceof ArrayBuffer) {
      data = new Uint8Array(message.slice(0));
    } else {
      return Promise.reject(new TetherError('TETHER_EINVAL', 'send() takes a Uint8Array, an ArrayBuffer or a string'));
    }
    if (!this.rec || this.phase === 'closed') {
      return Promise.reject(new TetherError('TETHER_ECLOSED', 'the client is not started or is closed'));
    }
    if (data.length > this.options.maxMessage || (this.peerMax && data.length > this.peerMax)) {
      const lim = this.peerMax ? Math.min(this.peerMax, this.options.maxMessage) : this.options.maxMessage;
      return Promise.reject(new TetherError('TETHER_ETOOBIG', `a message of ${data.length} bytes (at most ${lim})`));
    }
    const o = this.options;
    if (
      (o.maxPendingMessages && this.outbox.length + this.sendQueue.length + 1 > o.maxPendingMessages) ||
      (o.maxPendingBytes && this.outboxBytes + this.queuedBytes + data.length > o.maxPendingBytes)
    ) {
      if (!this.outboxFull) {
        this.outboxFull = true;
        this.emitBp('outbox_full');
      }
      return Promise.reject(new TetherError('TETHER_EOUTBOX_FULL', 'the outbox cap was reached; nothing was stored'));
    }
    return new Promise((resolve, reject) => {
      this.sendQueue.push({ data, resolve, reject });
      this.queuedBytes += data.length;
      if (!this.flushing) {
        this.flushing = true;
        this.run(() => this.flushSends());
      }
    });
  }

  /** Manual-ack mode: commits every delivered message up to seq and acknowledges it. */
  ack(seq: bigint): Promise<void> {
    if (!this.options.manualAck) {
      return Promise.reject(new TetherError('TETHER_EINVAL', 'ack() is for manualAck mode'));
    }
    if (typeof seq !== 'bigint' || seq < 1n || seq > this.delivered) {
      return Promise.reject(new TetherError('TETHER_EINVAL', `seq ${String(seq)} was not delivered (delivered up to ${this.delivered})`));
    }
    return this.run(async () => {
      if (this.rec && seq > this.rec.recvCursor) {
        await this.commit(seq);
      }
    });
  }

  /** Resolves when every message sent so far is acknowledged; rejects TETHER_ETIMEDOUT after ms. */
  waitAcked(ms: number): Promise<void> {
    if (this.allAcked()) {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w = {
        resolve,
        timer: this.timers.setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          const p = this.pending;
          reject(new TetherError('TETHER_ETIMEDOUT', `${p.messages + this.sendQueue.length} message(s) not acknowledged after ${ms} ms`));
        }, ms),
      };
      this.waiters.push(w);
    });
  }

  /** Ends the connection gracefully (ACK what was committed, BYE 0) and closes the store. */
  async close(): Promise<void> {
    if (this.phase === 'closed') {
      return;
    }
    const wasOpen = this.phase === 'open';
    this.phase = 'closed';
    this.unwatch();
    this.clearTimer();
    this.probe.stop();
    await this.chain.catch(() => undefined);
    if (this.tp) {
      if (wasOpen) {
        this.sendAckNow();
        this.write({ type: FRAME_BYE, code: 0, reason: '' });
      }
      this.closing = { error: 'TETHER_ECLOSED', code: 0, detail: 'closed by the application', stop: true };
      this.tp.close('TETHER_ECLOSED', 'closed by the application');
    }
    this.clearAckTimer();
    this.queuedBytes = 0;
    for (const q of this.sendQueue.splice(0)) {
      q.reject(new TetherError('TETHER_ECLOSED', 'the client was closed'));
    }
    for (const w of this.waiters.splice(0)) {
      this.timers.clearTimeout(w.timer);
    }
    await this.store.close();
    this.report('closed', 'TETHER_OK', 0, 0, 0, 'closed by the application');
  }

  /**
   * After a mismatch (state 'stopped'): abandons the session and starts a new one; the
   * unacknowledged messages are kept and renumbered from 1 in the new session.
   */
  async resetSession(): Promise<void> {
    if (this.phase !== 'stopped' || !this.rec) {
      throw new TetherError('TETHER_EINVAL', 'resetSession() is for a stopped client');
    }
    await this.run(async () => {
      const rec: SessionRecord = {
        id: randomBytes(16),
        token: randomBytes(32),
        established: false,
        outLast: 0n,
        peerAcked: 0n,
        recvCursor: 0n,
      };
      const renumbered = this.outbox.map((m, i) => ({ seq: BigInt(i + 1), data: m.data }));
      await this.store.create(rec);
      await this.store.append(renumbered);
      rec.outLast = BigInt(renumbered.length);
      this.rec = rec;
      this.outbox = renumbered;
      this.everSent = 0n;
      this.delivered = 0n;
      this.lastAckSent = 0n;
    });
    this.backoff.reset();
    this.attempt();
  }

  /* ---- sends, on the chain (clientbase.ts: run) ---- */

  private async flushSends(): Promise<void> {
    while (this.sendQueue.length > 0 && this.rec) {
      const batch = this.sendQueue.splice(0, 1024);
      this.queuedBytes -= batch.reduce((n, q) => n + q.data.length, 0);
      const first = this.rec.outLast + 1n;
      const msgs = batch.map((q, i) => ({ seq: first + BigInt(i), data: q.data }));
      try {
        await this.store.append(msgs);
      } catch (e) {
        const err = new TetherError('TETHER_ESTORE', `the outbox could not store the message: ${errText(e)}`);
        batch.forEach((q) => q.reject(err));
        continue;
      }
      this.rec.outLast = msgs[msgs.length - 1].seq;
      for (const m of msgs) {
        this.outbox.push(m);
        this.outboxBytes += m.data.length;
      }
      batch.forEach((q, i) => q.resolve(msgs[i].seq));
      this.pump();
    }
    this.flushing = false;
  }

  /* ---- connection life ---- */

  private attempt(): void {
    if (this.phase === 'closed') {
      return;
    }
    this.clearTimer();
    this.phase = 'connecting';
    this.welcomed = false;
    this.connAcked = false;
    this.closing = null;
    this.fb.beforeAttempt(this.timers.now());
    const kind = this.fb.http ? 'http' : 'websocket';
    const detail = kind === 'http' ? `${this.options.url} (HTTP carriage)` : this.options.url;
    this.report('connecting', 'TETHER_OK', 0, 0, 0, detail + this.verdict.take());
    let tp: Transport | null = null;
    const ev = this.eventsFor(() => tp);
    this.timer = this.timers.setTimeout(() => {
      this.abort('TETHER_ECONNECT_TIMEOUT', 0, `no connection within ${this.options.connectTimeoutMs} ms`, false);
    }, this.options.connectTimeoutMs);
    try {
      tp = (this.factory as TransportFactory)(kind, this.options.url, ev);
      this.tp = tp;
    } catch (e) {
      this.clearTimer();
      this.tp = null;
      this.afterClose({ error: 'TETHER_ECONNECT', detail: errText(e) });
    }
  }

  /**
   * The handlers of one carriage: its events count only while it is the session's (this.tp),
   * checked again when the chain runs them, so nothing an old carriage queued before the
   * session moved onto a probe acts on the new one.
   */
  private eventsFor(get: () => Transport | null): TransportEvents {
    const mine = () => get() !== null && this.tp === get();
    return {
      open: () => mine() && this.onOpen(),
      frame: (b: Uint8Array | null) => {
        if (mine()) {
          this.run(async () => mine() && (b ? this.onFrame(b) : this.protocolError('a text message')));
        }
      },
      close: (info: CloseInfo) => {
        if (mine()) {
          this.run(async () => mine() && this.onClosed(info));
        }
      },
    };
  }

  private helloFrame(): Frame {
    const r = this.rec as SessionRecord;
    return {
      type: 1,
      version: PROTOCOL_VERSION,
      sessionId: r.id,
      token: r.token,
      resume: r.established,
      recvCursor: r.recvCursor,
      outLast: r.outLast,
      maxMessage: this.options.maxMessage,
      window: this.options.window,
    };
  }

  private onOpen(): void {
    if (this.phase !== 'connecting' || !this.rec) {
      return;
    }
    this.clearTimer();
    this.phase = 'welcoming';
    this.write(this.helloFrame());
    this.timer = this.timers.setTimeout(() => {
      this.abort('TETHER_ESTALLED', 0, `upgraded, but no WELCOME within ${this.options.welcomeTimeoutMs} ms: frames are blocked`, false);
    }, this.options.welcomeTimeoutMs);
  }

  /** Ends the connection for a reason of ours; BYE code first when > 0 or stop. */
  private abort(error: ErrorName, byeCode: number, detail: string, stop: boolean, sendBye = false): void {
    if (!this.tp || this.closing) {
      return;
    }
    if (sendBye) {
      this.write({ type: FRAME_BYE, code: byeCode, reason: detail.slice(0, 200) });
    }
    this.closing = { error, code: 0, detail, stop };
    this.tp.close(error, detail);
  }

  private onClosed(info: CloseInfo): void {
    const c = this.closing;
    this.tp = null;
    this.closing = null;
    this.clearTimer();
    this.clearAckTimer();
    if (this.phase === 'closed') {
      return;
    }
    const error = c ? c.error : info.error;
    const detail = c ? c.detail : info.detail;
    const code = c ? c.code : 0;
    if (this.probe.helloSent && (!c?.stop || error === 'TETHER_EDISPLACED')) {
      /* the probe's HELLO displaced this connection (or it ended meanwhile): the probe decides */
      this.phase = 'waiting';
      this.connSent = 0n;
      this.delivered = this.rec ? this.rec.recvCursor : 0n;
      this.probe.orphaned();
      this.report('disconnected', error, info.httpStatus ?? 0, code, 0, `${detail}; waiting for the WebSocket probe`, 'http');
      return;
    }
    this.probe.stop();
    this.afterClose({ error, httpStatus: info.httpStatus, retryAfterMs: info.retryAfterMs, statusHidden: !c && info.statusHidden, detail }, code, c?.stop ?? false);
  }

  private afterClose(info: CloseInfo, code = 0, stop = false): void {
    const http = info.httpStatus ?? 0;
    const now = this.timers.now();
    const kind = this.fb.http ? 'http' : 'websocket';
    const wasWelcomed = this.welcomed;
    this.phase = 'waiting';
    this.connSent = 0n;
    this.delivered = this.rec ? this.rec.recvCursor : 0n;
    this.report('disconnected', info.error, http, code, 0, info.detail, kind);
    if (stop) {
      this.stopWith(info.error, http, code, info.detail);
      return;
    }
    const fb = this.fb.afterClose({ error: info.error, httpStatus: http, welcomed: wasWelcomed, acked: this.connAcked, statusHidden: info.statusHidden }, now);
    this.run(() => this.verdict.save());
    if (fb === FB_SWITCHED) {
      this.liveSince = 0;
      this.report('reconnecting', info.error, http, code, 0, this.fb.why);
      this.timer = this.timers.setTimeout(() => this.attempt(), 0);
      return;
    }
    if ((fb === FB_PERMANENT || permanent(info.error, http)) && !this.options.retryPermanent) {
      this.stopWith(info.error, http, code, info.detail);
      return;
    }
    if (this.liveSince && now - this.liveSince >= this.options.backoffResetMs) {
      this.backoff.reset();
    }
    this.liveSince = 0;
    let delay = this.backoff.next();
    if (delay === null) {
      this.stopWith('TETHER_EGIVEUP', http, code, 'gave up: the maximum number of attempts was reached');
      return;
    }
    if (info.retryAfterMs) {
      delay = Math.max(delay, Math.min(info.retryAfterMs, 600000));
    }
    this.report('reconnecting', info.error, http, code, delay, info.detail);
    this.timer = this.timers.setTimeout(() => this.attempt(), delay);
  }

  private stopWith(error: ErrorName, http: number, code: number, detail: string): void {
    this.phase = 'stopped';
    this.report('stopped', error, http, code, 0, detail);
  }

  /* ---- frames in ---- */

  private async onFrame(bytes: Uint8Array): Promise<void> {
    if (this.closing || !this.tp || (this.phase !== 'welcoming' && this.phase !== 'open')) {
      return; /* after our BYE, nothing more is read */
    }
    let f: Frame;
    try {
      f = decodeFrame(bytes, this.options.maxMessage);
    } catch (e) {
      const fe = e as FrameError;
      this.abort(fe.code ?? 'TETHER_EMALFORMED', fe.closeCode ?? 4, `the server sent a bad frame: ${fe.message}`, false, true);
      return;
    }
    const welcoming = this.phase === 'welcoming';
    switch (f.type) {
      case FRAME_WELCOME:
        if (!welcoming) {
          return this.protocolError('a second WELCOME');
        }
        return this.onWelcome(f);
      case FRAME_REJECT:
        if (!welcoming) {
          return this.protocolError('REJECT after WELCOME');
        }
        return this.onReject(f.code, f.reason);
      case FRAME_BYE:
        return this.onBye(f.code, f.reason);
      case FRAME_DATA:
        if (welcoming) {
          return this.protocolError('DATA before WELCOME');
        }
        return this.onData(f.firstSeq, f.flags, f.payloads);
      case FRAME_ACK:
        if (welcoming) {
          return this.protocolError('ACK before WELCOME');
        }
        return this.onAck(f.seq);
      default:
        return this.protocolError('HELLO sent to a client');
    }
  }

  private protocolError(detail: string, error: ErrorName = 'TETHER_EPROTO'): void {
    this.abort(error, 4, detail, false, true);
  }

  private async onWelcome(w: Welcome): Promise<void> {
    const r = this.rec as SessionRecord;
    if (hex(w.sessionId) !== hex(r.id)) {
      return this.protocolError('a WELCOME for another session id');
    }
    const m = mismatchOf(r, w);
    if (m.detail) {
      this.clearTimer();
      this.emitSafe('mismatch', m);
      this.abort('TETHER_EMISMATCH', 6, m.detail, true, true);
      if (this.closing) {
        this.closing.code = 6;
      }
      return;
    }
    this.clearTimer();
    this.phase = 'open';
    this.welcomed = true;
    this.fb.welcomed();
    await this.verdict.save();
    this.liveSince = this.timers.now();
    this.peerMax = w.maxMessage;
    this.peerWindow = w.window;
    this.lastAckSent = r.recvCursor;
    if (!r.established) {
      try {
        await this.store.established();
      } catch (e) {
        return this.storeFailed(e);
      }
      r.established = true;
    }
    this.report('connected', 'TETHER_OK', 0, 0, 0, w.resumed ? 'session resumed' : 'new session');
    this.connSent = w.recvCursor;
    if (w.recvCursor > r.peerAcked) {
      await this.onAck(w.recvCursor);
    }
    this.pump();
    this.probe.arm();
  }

  /* ---- the background probe (probe.ts) ---- */

  /** The probe got this session's WELCOME: the HTTP connection is dropped, the session moves onto it. */
  private adoptProbe(tp: Transport, w: Welcome, cursor: bigint): void {
    const old = this.tp;
    this.clearTimer();
    this.clearAckTimer();
    this.tp = tp; /* first: whatever the old carriage still delivers is ignored */
    this.closing = null;
    this.phase = 'welcoming';
    this.welcomed = false;
    this.connAcked = false;
    this.connSent = 0n;
    this.liveSince = 0;
    old?.close('TETHER_ECLOSED', 'the session moved onto the WebSocket probe');
    this.fb.probeWon();
    this.report('reconnecting', 'TETHER_OK', 0, 0, 0, this.fb.why, 'websocket');
    this.run(async () => {
      if (this.tp !== tp) {
        return;
      }
      this.delivered = this.rec ? this.rec.recvCursor : 0n;
      await this.onWelcome(w);
      if (this.phase === 'open' && this.tp === tp) {
        this.lastAckSent = cursor; /* what was committed after the probe's HELLO is acknowledged here */
        this.sendAckNow();
      }
    });
  }

  private probeFailed(why: string, orphan: boolean): void {
    this.fb.probeLost(this.timers.now(), why);
    this.run(() => this.verdict.save());
    if (this.phase === 'closed') {
      return;
    }
    if (orphan && this.phase === 'waiting') {
      this.report('reconnecting', 'TETHER_OK', 0, 0, 0, `${this.fb.why}; opening the HTTP carriage again`, 'http');
      this.attempt();
    } else {
      this.probe.arm();
    }
  }

  private onReject(code: number, reason: string): void {
    const map: Record<number, ErrorName> = { 1: 'TETHER_EVERSION', 2: 'TETHER_ETOKEN', 3: 'TETHER_ELIMIT' };
    const error = map[code] ?? 'TETHER_EREJECTED';
    this.abort(error, 0, `REJECT ${code}${reason ? `: ${reason}` : ''}`, false);
    if (this.closing) {
      this.closing.code = code;
    }
  }

  private onBye(code: number, reason: string): void {
    const map: Record<number, ErrorName> = {
      0: 'TETHER_EPEER_CLOSED',
      5: 'TETHER_EPEER_CLOSED',
      6: 'TETHER_EMISMATCH',
      7: 'TETHER_ETOOBIG',
      8: 'TETHER_ESTORE',
      9: 'TETHER_EDISPLACED',
    };
    const error = map[code] ?? 'TETHER_EPROTO';
    const detail = `the server sent BYE ${code}${reason ? `: ${reason}` : ''}`;
    if (code === 6) {
      const r = this.rec as SessionRecord;
      this.emitSafe('mismatch', {
        peerAcked: r.peerAcked,
        outLast: r.outLast,
        recvCursor: r.recvCursor,
        peerRecvCursor: 0n,
        peerOutLast: 0n,
        lostAcked: 0n,
        unknownReceived: 0n,
        detail,
      });
    }
    this.abort(error, 0, detail, code === 6 || code === 9 || code === 7);
    if (this.closing) {
      this.closing.code = code;
    }
  }

  private async onData(first: bigint, flags: number, payloads: Uint8Array[]): Promise<void> {
    const redelivered = (flags & 1) === 1;
    let dup = false;
    for (let i = 0; i < payloads.length; i++) {
      const seq = first + BigInt(i);
      if (seq <= this.delivered) {
        dup = true;
        continue;
      }
      if (seq !== this.delivered + 1n) {
        return this.protocolError(`a gap: seq ${seq} after ${this.delivered}`, 'TETHER_EGAP');
      }
      this.delivered = seq;
      this.emitSafe('message', seq, payloads[i], redelivered);
      if (this.phase !== 'open' || this.closing) {
        return; /* the application closed the client from its callback */
      }
    }
    if (!this.options.manualAck && this.rec && this.delivered > this.rec.recvCursor) {
      await this.commit(this.delivered);
    }
    if (dup) {
      this.sendAckNow(true);
    }
  }

  private async commit(seq: bigint): Promise<void> {
    const r = this.rec as SessionRecord;
    try {
      await this.store.committed(seq);
    } catch (e) {
      return this.storeFailed(e);
    }
    r.recvCursor = seq;
    const since = r.recvCursor - this.lastAckSent;
    if (since >= BigInt(this.options.ackEvery) || since >= BigInt(this.peerWindow)) {
      this.sendAckNow();
    } else if (this.ackTimer === null && this.phase === 'open') {
      this.ackTimer = this.timers.setTimeout(() => {
        this.ackTimer = null;
        this.sendAckNow();
      }, this.options.ackDelayMs);
    }
  }

  private sendAckNow(evenIfSame = false): void {
    const r = this.rec;
    this.clearAckTimer();
    if (!r || !this.tp || this.closing || this.phase !== 'open' && this.phase !== 'closed') {
      return;
    }
    if (r.recvCursor > 0n && (evenIfSame || r.recvCursor > this.lastAckSent)) {
      this.write({ type: FRAME_ACK, seq: r.recvCursor });
      this.lastAckSent = r.recvCursor;
    }
  }

  private async onAck(seq: bigint): Promise<void> {
    const r = this.rec as SessionRecord;
    if (seq > r.outLast) {
      return this.protocolError(`ACK ${seq} for a seq never assigned (out_last ${r.outLast})`);
    }
    if (seq <= r.peerAcked) {
      return;
    }
    try {
      await this.store.acked(seq);
    } catch (e) {
      return this.storeFailed(e);
    }
    const first = r.peerAcked + 1n;
    r.peerAcked = seq;
    this.connAcked = true;
    let i = 0;
    while (i < this.outbox.length && this.outbox[i].seq <= seq) {
      this.outboxBytes -= this.outbox[i].data.length;
      i++;
    }
    this.outbox.splice(0, i);
    if (this.connSent < seq) {
      this.connSent = seq;
    }
    this.emitSafe('acked', first, seq);
    if (this.outboxFull) {
      this.outboxFull = false;
      this.emitBp('outbox_open');
    }
    if (this.allAcked()) {
      for (const w of this.waiters.splice(0)) {
        this.timers.clearTimeout(w.timer);
        w.resolve();
      }
    }
    this.pump();
  }

  private storeFailed(e: unknown): void {
    this.emitSafe('error', new TetherError('TETHER_ESTORE', errText(e)));
    this.abort('TETHER_ESTORE', 8, `the store failed: ${errText(e)}`, false, true);
  }

  /* ---- frames out ---- */

  /** Transmits what the window allows, in runs. */
  private pump(): void {
    if (this.phase !== 'open' || !this.tp || this.closing || !this.rec) {
      return;
    }
    const r = this.rec;
    const limit = r.peerAcked + BigInt(this.options.window);
    /* the outbox holds consecutive seqs: the first one not sent yet is found by arithmetic */
    let i = this.outbox.length === 0 || this.connSent < this.outbox[0].seq ? 0 : Number(this.connSent - this.outbox[0].seq) + 1;
    i = i < this.outbox.length ? i : -1;
    while (i >= 0 && i < this.outbox.length && this.outbox[i].seq <= limit) {
      const start = this.outbox[i];
      if (start.data.length > this.peerMax) {
        this.emitSafe('error', new TetherError('TETHER_ETOOBIG', `message ${start.seq} is larger than the server accepts (${this.peerMax})`));
        this.abort('TETHER_ETOOBIG', 7, `message ${start.seq} of ${start.data.length} bytes exceeds the server's max_message ${this.peerMax}`, true, true);
        return;
      }
      const resent = start.seq <= this.everSent;
      const payloads: Uint8Array[] = [];
      let bytes = 0;
      const frameMax = Math.min(this.peerMax, RUN_BYTES_MAX);
      while (i < this.outbox.length && payloads.length < MAX_RUN) {
        const m = this.outbox[i];
        if (m.seq > limit || (m.seq <= this.everSent) !== resent) {
          break;
        }
        if (payloads.length > 0 && (bytes + m.data.length + 5 * (payloads.length + 1) > frameMax || m.data.length > this.peerMax)) {
          break;
        }
        payloads.push(m.data);
        bytes += m.data.length;
        i++;
      }
      this.write({ type: FRAME_DATA, firstSeq: start.seq, flags: resent ? 1 : 0, payloads });
      this.connSent = start.seq + BigInt(payloads.length) - 1n;
      if (this.connSent > this.everSent) {
        this.everSent = this.connSent;
      }
    }
    const full = i >= 0 && i < this.outbox.length;
    if (full !== this.windowFull) {
      this.windowFull = full;
      this.emitBp(full ? 'window_full' : 'window_open');
    }
  }

  /* Browsers: offline ends the connection now; back online while waiting → try at once. */
  private listenOnline(): void {
    this.unwatch = watchOnline(
      () => {
        if (this.phase === 'waiting' && !this.probe.helloSent) {
          this.backoff.reset();
          this.attempt();
        }
      },
      () => {
        if (this.phase === 'connecting' || this.phase === 'welcoming' || this.phase === 'open') {
          this.abort('TETHER_ECONNECT', 0, 'the browser went offline', false);
        }
      },
    );
  }

}

