// A fake clock and a fake carriage for the session tests: no sockets, no real time.
import { decodeFrame, encodeFrame } from '../../dist/esm/codec.js';
import { TetherClient } from '../../dist/esm/index.js';

export class FakeTimers {
  t = 0;
  seq = 0;
  pending = new Map();
  setTimeout = (fn, ms) => {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + ms, fn });
    return id;
  };
  clearTimeout = (id) => this.pending.delete(id);
  now = () => this.t;
  /** Runs every timer due within ms, in time order. */
  advance(ms) {
    const end = this.t + ms;
    for (let guard = 0; guard < 100000; guard++) {
      let next = null;
      for (const [id, p] of this.pending) {
        if (p.at <= end && (!next || p.at < next[1].at)) {
          next = [id, p];
        }
      }
      if (!next) {
        break;
      }
      this.pending.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
  }
}

export const tick = () => new Promise((r) => setImmediate(r));
export async function settle(n = 20) {
  for (let i = 0; i < n; i++) {
    await tick();
  }
}

/** A carriage the test drives: `conns` are the attempts, each with what the client wrote. */
export class FakeNet {
  conns = [];
  factory = (kind, url, ev) => {
    const c = {
      kind,
      ev,
      sent: [],
      closed: null,
      open: () => ev.open(),
      frames: () => c.sent.map((b) => decodeFrame(b, 1 << 30)),
      push: (f) => ev.frame(encodeFrame(f)),
      pushRaw: (b) => ev.frame(b),
      drop: (info = { error: 'TETHER_EPEER_CLOSED', detail: 'cut' }) => ev.close(info),
    };
    const t = {
      kind,
      send: (b) => c.sent.push(b.slice()),
      close: (error, detail) => {
        c.closed = { error, detail };
        queueMicrotask(() => ev.close({ error, detail }));
      },
    };
    this.conns.push(c);
    return t;
  };
  get last() {
    return this.conns[this.conns.length - 1];
  }
}

export function makeClient(extra = {}) {
  const timers = new FakeTimers();
  const net = new FakeNet();
  const c = new TetherClient({ url: 'ws://test/', store: 'memory', timers, transportFactory: net.factory, random: () => 0.5, transport: 'websocket', ...extra });
  const log = { state: [], message: [], acked: [], mismatch: [], backpressure: [], error: [] };
  for (const k of Object.keys(log)) {
    c.on(k, (...a) => log[k].push(a.length === 1 ? a[0] : a));
  }
  return { c, timers, net, log };
}

export function welcome(hello, extra = {}) {
  return { type: 2, sessionId: hello.sessionId, resumed: hello.resume, recvCursor: 0n, outLast: 0n, maxMessage: 1048576, window: 1024, ...extra };
}
