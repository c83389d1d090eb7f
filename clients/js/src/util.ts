/* Small helpers of the client. */
import { TetherError, type ErrorName } from './errors.js';
import type { SessionRecord, TetherStore } from './store.js';
import type { Welcome } from './codec.js';
import type { MismatchEvent } from './events.js';

/* Errors that another attempt cannot cure (as the C client). */
export function permanent(e: ErrorName, http: number): boolean {
  return (
    e === 'TETHER_ETOKEN' ||
    e === 'TETHER_EVERSION' ||
    e === 'TETHER_ETOOBIG' ||
    e === 'TETHER_EPROXY_AUTH' ||
    (e === 'TETHER_EHTTP' && (http === 401 || http === 403))
  );
}

/* Set by the IndexedDB module when it is loaded (the browser bundle); Node has none. */
let idbFactory: ((name: string) => TetherStore) | null = null;
export function registerIndexedDbStore(f: (name: string) => TetherStore): void {
  idbFactory = f;
}
export function makeIndexedDbStore(name: string): TetherStore {
  if (!idbFactory || typeof indexedDB === 'undefined') {
    throw new TetherError('TETHER_ECONFIG', "store 'indexeddb' needs a browser with IndexedDB");
  }
  return idbFactory(name);
}

export function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) {
    s += x.toString(16).padStart(2, '0');
  }
  return s;
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The mismatch checks of PROTOCOL.md 6.5 on a WELCOME; detail is '' when consistent. */
export function mismatchOf(r: SessionRecord, w: Welcome): MismatchEvent {
  const m: MismatchEvent = {
    peerAcked: r.peerAcked,
    outLast: r.outLast,
    recvCursor: r.recvCursor,
    peerRecvCursor: w.recvCursor,
    peerOutLast: w.outLast,
    lostAcked: w.recvCursor < r.peerAcked ? r.peerAcked - w.recvCursor : 0n,
    unknownReceived: w.outLast < r.recvCursor ? r.recvCursor - w.outLast : 0n,
    detail: '',
  };
  if (w.recvCursor < r.peerAcked) {
    m.detail = `the server lost ${m.lostAcked} acknowledged message(s)`;
  } else if (w.recvCursor > r.outLast) {
    m.detail = `the server claims ${w.recvCursor} message(s); we sent ${r.outLast}`;
  } else if (w.outLast < r.recvCursor) {
    m.detail = `we committed ${m.unknownReceived} message(s) the server does not know it sent`;
  } else if (r.established && !w.resumed) {
    m.detail = 'the server does not know this session';
  }
  return m;
}

/** Browsers: calls online/offline on the window's events; returns what removes them (Node: nothing). */
export function watchOnline(online: () => void, offline: () => void): () => void {
  type Target = { addEventListener?: (t: string, f: () => void) => void; removeEventListener?: (t: string, f: () => void) => void };
  const g = globalThis as unknown as Target;
  if (typeof g.addEventListener !== 'function' || typeof window === 'undefined') {
    return () => undefined;
  }
  g.addEventListener('online', online);
  g.addEventListener('offline', offline);
  return () => {
    g.removeEventListener?.('online', online);
    g.removeEventListener?.('offline', offline);
  };
}
