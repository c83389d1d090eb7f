/*
 * The browser store: the session and the outbox in IndexedDB (database
 * "tether:<name>"), written with durability "strict" so that what send()
 * resolved survives a reload, a tab crash or a browser restart. One tab at a
 * time owns a session: load() takes the Web Lock "tether:<name>" (waiting at
 * most lockWaitMs, so a reloading page gets it as soon as the old document is
 * gone) and holds it until close(); a tab that cannot get it is refused with
 * TETHER_ELOCKED, and the owner hears about it on a BroadcastChannel
 * ('contended' event). Plain IndexedDB, no wrapper library.
 */
import { TetherError } from './errors.js';
import type { SessionRecord, StoredMessage, StoredVerdict, TetherStore } from './store.js';

/* version 2 added VERDICT; a version-1 database gets it in its upgrade, its data untouched */
const DB_VERSION = 2;
const SESSION = 'session';
const OUTBOX = 'outbox';
const VERDICT = 'verdict';

/* seqs as keys: 20-digit decimal strings sort like the numbers and keep all 64 bits */
const key = (seq: bigint) => seq.toString().padStart(20, '0');

interface StoredSession {
  id: Uint8Array;
  token: Uint8Array;
  established: boolean;
  outLast: string;
  peerAcked: string;
  recvCursor: string;
}

function req<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function txDone(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
  });
}

export interface IndexedDbStoreOptions {
  /** How long load() waits for another tab (or the page being reloaded) to release the session, ms. */
  lockWaitMs?: number;
  /** Called in the owning tab when another tab tried to take the session. */
  onContended?: () => void;
}

export class IndexedDbStore implements TetherStore {
  private db: IDBDatabase | null = null;
  private rec: SessionRecord | null = null;
  private release: (() => void) | null = null;
  private channel: BroadcastChannel | null = null;

  constructor(
    readonly name: string,
    private readonly opts: IndexedDbStoreOptions = {},
  ) {}

  private async lock(): Promise<void> {
    const lockName = `tether:${this.name}`;
    const locks = (globalThis.navigator as Navigator | undefined)?.locks;
    if (typeof BroadcastChannel !== 'undefined') {
      this.channel = new BroadcastChannel(lockName);
    }
    if (!locks) {
      return; /* no Web Locks (very old browsers): one tab per session is then the application's duty */
    }
    const wait = this.opts.lockWaitMs ?? 3000;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), wait);
    let granted!: () => void;
    const got = new Promise<void>((r) => (granted = r));
    const held = locks
      .request(lockName, { signal: ac.signal }, () => {
        granted();
        return new Promise<void>((r) => (this.release = r));
      })
      .catch((e: unknown) => {
        if ((e as Error)?.name !== 'AbortError') {
          throw e;
        }
      });
    const first = await Promise.race([got.then(() => 'granted'), held.then(() => 'aborted')]);
    clearTimeout(timer);
    if (first !== 'granted') {
      this.channel?.postMessage('contended');
      this.channel?.close();
      this.channel = null;
      throw new TetherError('TETHER_ELOCKED', `another tab owns the session "${this.name}" (Web Lock ${lockName})`);
    }
    if (this.channel) {
      this.channel.onmessage = (m) => {
        if (m.data === 'contended') {
          this.opts.onContended?.();
        }
      };
    }
  }

  async load(): Promise<{ session: SessionRecord; outbox: StoredMessage[] } | null> {
    await this.lock();
    try {
      this.db = await new Promise<IDBDatabase>((resolve, reject) => {
        const r = indexedDB.open(`tether:${this.name}`, DB_VERSION);
        r.onupgradeneeded = () => {
          const have = r.result.objectStoreNames;
          for (const name of [SESSION, OUTBOX, VERDICT]) {
            if (!have.contains(name)) {
              r.result.createObjectStore(name);
            }
          }
        };
        r.onsuccess = () => resolve(r.result);
        r.onerror = () => reject(r.error);
        r.onblocked = () => reject(new Error('the database is blocked by another connection'));
      });
    } catch (e) {
      this.release?.();
      throw new TetherError('TETHER_ESTORE', `cannot open IndexedDB tether:${this.name}: ${(e as Error)?.message ?? e}`);
    }
    const tx = this.db.transaction([SESSION, OUTBOX], 'readonly');
    const s = (await req(tx.objectStore(SESSION).get('rec'))) as StoredSession | undefined;
    if (!s) {
      return null;
    }
    const keys = (await req(tx.objectStore(OUTBOX).getAllKeys())) as string[];
    const values = (await req(tx.objectStore(OUTBOX).getAll())) as Uint8Array[];
    this.rec = {
      id: s.id,
      token: s.token,
      established: s.established,
      outLast: BigInt(s.outLast),
      peerAcked: BigInt(s.peerAcked),
      recvCursor: BigInt(s.recvCursor),
    };
    return { session: { ...this.rec }, outbox: keys.map((k, i) => ({ seq: BigInt(k), data: values[i] })) };
  }

  private write(stores: string[], fn: (tx: IDBTransaction) => void): Promise<void> {
    if (!this.db) {
      return Promise.reject(new Error('the store is not open'));
    }
    const tx = this.db.transaction(stores, 'readwrite', { durability: 'strict' } as IDBTransactionOptions);
    const done = txDone(tx);
    fn(tx);
    return done;
  }

  private putRec(tx: IDBTransaction, r: SessionRecord): void {
    const s: StoredSession = {
      id: r.id,
      token: r.token,
      established: r.established,
      outLast: r.outLast.toString(),
      peerAcked: r.peerAcked.toString(),
      recvCursor: r.recvCursor.toString(),
    };
    tx.objectStore(SESSION).put(s, 'rec');
  }

  /* each write changes the in-memory mirror only once its transaction committed */
  private async update(stores: string[], next: SessionRecord, extra?: (tx: IDBTransaction) => void): Promise<void> {
    await this.write(stores, (tx) => {
      extra?.(tx);
      this.putRec(tx, next);
    });
    this.rec = next;
  }

  async create(session: SessionRecord): Promise<void> {
    await this.update([SESSION, OUTBOX], { ...session }, (tx) => tx.objectStore(OUTBOX).clear());
  }

  async append(messages: StoredMessage[]): Promise<void> {
    const r = this.need();
    if (messages.length === 0) {
      return;
    }
    if (messages[0].seq !== r.outLast + 1n) {
      throw new Error(`append of seq ${messages[0].seq} after ${r.outLast}`);
    }
    await this.update([SESSION, OUTBOX], { ...r, outLast: messages[messages.length - 1].seq }, (tx) => {
      const o = tx.objectStore(OUTBOX);
      for (const m of messages) {
        o.put(m.data, key(m.seq));
      }
    });
  }

  async acked(seq: bigint): Promise<void> {
    const r = this.need();
    if (seq <= r.peerAcked) {
      return;
    }
    await this.update([SESSION, OUTBOX], { ...r, peerAcked: seq }, (tx) => tx.objectStore(OUTBOX).delete(IDBKeyRange.upperBound(key(seq))));
  }

  async committed(seq: bigint): Promise<void> {
    await this.update([SESSION], { ...this.need(), recvCursor: seq });
  }

  async established(): Promise<void> {
    await this.update([SESSION], { ...this.need(), established: true });
  }

  async verdictGet(key: string): Promise<StoredVerdict | null> {
    if (!this.db) {
      throw new Error('the store is not open');
    }
    const v = (await req(this.db.transaction([VERDICT], 'readonly').objectStore(VERDICT).get(key))) as StoredVerdict | undefined;
    return v && typeof v.untilMs === 'number' && typeof v.probesFailed === 'number' ? { untilMs: v.untilMs, probesFailed: v.probesFailed } : null;
  }

  async verdictPut(key: string, verdict: StoredVerdict | null): Promise<void> {
    await this.write([VERDICT], (tx) => {
      const o = tx.objectStore(VERDICT);
      if (verdict) {
        o.put({ untilMs: verdict.untilMs, probesFailed: verdict.probesFailed }, key);
      } else {
        o.delete(key);
      }
    });
  }

  async close(): Promise<void> {
    this.db?.close();
    this.db = null;
    this.channel?.close();
    this.channel = null;
    this.release?.();
    this.release = null;
  }

  private need(): SessionRecord {
    if (!this.rec) {
      throw new Error('no session');
    }
    return this.rec;
  }
}
