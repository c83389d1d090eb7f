/*
 * The store: where a client keeps its session (id, token, cursors) and its
 * outbox, so that what `send` resolved survives a reload or a restart. A small
 * interface so an application can plug in its own (a file, SQLite, ...).
 *
 * Rules every store follows (the C store.h rule "on error, unchanged"): each
 * call either takes full effect before its promise resolves or rejects and
 * changes nothing. The client calls them one at a time, never concurrently.
 */

export interface SessionRecord {
  /** 16 random bytes, made on the first start. */
  id: Uint8Array;
  /** 32 random bytes, the resume secret. */
  token: Uint8Array;
  /** A WELCOME was received for this session (HELLO's resume flag). */
  established: boolean;
  /** Highest seq assigned (0: none). */
  outLast: bigint;
  /** Highest of our seqs the server acknowledged. */
  peerAcked: bigint;
  /** Highest of the server's seqs committed here. */
  recvCursor: bigint;
}

export interface StoredMessage {
  seq: bigint;
  data: Uint8Array;
}

/** The fallback verdict remembered per server url: HTTP until untilMs (ms since the epoch). */
export interface StoredVerdict {
  untilMs: number;
  /** WebSocket probes that failed since the fallback (the next probe's wait doubles with each). */
  probesFailed: number;
}

export interface TetherStore {
  /** Loads the session and its unacknowledged messages in seq order, or null when there is none. */
  load(): Promise<{ session: SessionRecord; outbox: StoredMessage[] } | null>;
  /** Creates or replaces the session record (and drops any outbox of an older session). */
  create(session: SessionRecord): Promise<void>;
  /** Appends messages (consecutive seqs after outLast) and sets outLast to the last one. */
  append(messages: StoredMessage[]): Promise<void>;
  /** The server acknowledged up to seq: peerAcked = seq, and messages up to seq are removed. */
  acked(seq: bigint): Promise<void>;
  /** recvCursor = seq. */
  committed(seq: bigint): Promise<void>;
  /** The session was welcomed once (established = true). */
  established(): Promise<void>;
  /** Releases what the store holds (locks, handles). */
  close(): Promise<void>;
  /**
   * Optional: the fallback verdict stored under key (the url and proxy), or null. A store
   * without verdictGet/verdictPut works; the client then forgets the verdict when it stops.
   */
  verdictGet?(key: string): Promise<StoredVerdict | null>;
  /** Optional: stores the verdict under key, or removes it (null). */
  verdictPut?(key: string, verdict: StoredVerdict | null): Promise<void>;
}

/** A store in memory: what a Node process uses by default; nothing survives the process. */
export class MemoryStore implements TetherStore {
  private session: SessionRecord | null = null;
  private outbox: StoredMessage[] = [];
  private verdicts = new Map<string, StoredVerdict>();

  async load() {
    if (!this.session) {
      return null;
    }
    return { session: { ...this.session }, outbox: this.outbox.slice() };
  }

  async create(session: SessionRecord) {
    this.session = { ...session };
    this.outbox = [];
  }

  async append(messages: StoredMessage[]) {
    const s = this.need();
    if (messages.length === 0) {
      return;
    }
    if (messages[0].seq !== s.outLast + 1n) {
      throw new Error(`store: append of seq ${messages[0].seq} after ${s.outLast}`);
    }
    for (const m of messages) {
      this.outbox.push({ seq: m.seq, data: m.data });
    }
    s.outLast = messages[messages.length - 1].seq;
  }

  async acked(seq: bigint) {
    const s = this.need();
    if (seq <= s.peerAcked) {
      return;
    }
    s.peerAcked = seq;
    let i = 0;
    while (i < this.outbox.length && this.outbox[i].seq <= seq) {
      i++;
    }
    this.outbox.splice(0, i);
  }

  async committed(seq: bigint) {
    this.need().recvCursor = seq;
  }

  async established() {
    this.need().established = true;
  }

  async close() {}

  async verdictGet(key: string) {
    const v = this.verdicts.get(key);
    return v ? { ...v } : null;
  }

  async verdictPut(key: string, verdict: StoredVerdict | null) {
    if (verdict) {
      this.verdicts.set(key, { untilMs: verdict.untilMs, probesFailed: verdict.probesFailed });
    } else {
      this.verdicts.delete(key);
    }
  }

  private need(): SessionRecord {
    if (!this.session) {
      throw new Error('store: no session');
    }
    return this.session;
  }
}
