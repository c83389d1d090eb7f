/*
 * The tether.v1 frame codec (proto/PROTOCOL.md sections 3 and 4): a strict
 * MessagePack reader and a canonical writer for the six frame types only.
 *
 * Written for this protocol rather than on a generic MessagePack library: the
 * spec's checks (declared lengths backed by the input before anything is
 * reserved, a nesting limit of 8, the error order of section 4.1, exact bin
 * lengths, strict UTF-8 without U+0000) are most of the work, and a generic
 * decoder would still need all of them on top. Sequence numbers are BigInt.
 */

export const FRAME_HELLO = 1;
export const FRAME_WELCOME = 2;
export const FRAME_REJECT = 3;
export const FRAME_DATA = 4;
export const FRAME_ACK = 5;
export const FRAME_BYE = 6;

export const MAX_RUN = 65536;
export const MAX_REASON = 256;
export const MAX_DEPTH = 8;
export const UINT32_MAX = 0xffffffff;
export const UINT64_MAX = (1n << 64n) - 1n;

export interface Hello {
  type: 1;
  version: number;
  sessionId: Uint8Array;
  token: Uint8Array;
  resume: boolean;
  recvCursor: bigint;
  outLast: bigint;
  maxMessage: number;
  window: number;
}
export interface Welcome {
  type: 2;
  sessionId: Uint8Array;
  resumed: boolean;
  recvCursor: bigint;
  outLast: bigint;
  maxMessage: number;
  window: number;
}
export interface Reject {
  type: 3;
  code: number;
  reason: string;
}
export interface Data {
  type: 4;
  firstSeq: bigint;
  flags: number;
  payloads: Uint8Array[];
}
export interface Ack {
  type: 5;
  seq: bigint;
}
export interface Bye {
  type: 6;
  code: number;
  reason: string;
}
export type Frame = Hello | Welcome | Reject | Data | Ack | Bye;

export type FrameErrorName =
  | 'TETHER_EMALFORMED'
  | 'TETHER_EFRAME_TRAILING'
  | 'TETHER_EFRAME_TYPE'
  | 'TETHER_EFRAME_ARITY'
  | 'TETHER_EFRAME_FIELD'
  | 'TETHER_EFRAME_SEQ0'
  | 'TETHER_EFRAME_OVERSIZE';

/** A frame that failed to decode; `code` is the tether error name, `closeCode` the BYE code. */
export class FrameError extends Error {
  readonly code: FrameErrorName;
  readonly closeCode: number;
  constructor(code: FrameErrorName, message: string) {
    super(message);
    this.name = 'FrameError';
    this.code = code;
    this.closeCode = code === 'TETHER_EFRAME_OVERSIZE' ? 7 : 4;
  }
}

const ARITY = [0, 9, 7, 3, 4, 2, 3];
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function malformed(why: string): never {
  throw new FrameError('TETHER_EMALFORMED', why);
}
function field(why: string): never {
  throw new FrameError('TETHER_EFRAME_FIELD', why);
}

/* ---- pass 1: the structure of the first MessagePack object ---- */

/** Size of the header and the count of child objects of the object at p (checked against the input). */
function skim(b: Uint8Array, p: number, depth: number): number {
  const n = b.length;
  if (p >= n) {
    malformed('truncated');
  }
  const t = b[p];
  const need = (k: number) => {
    if (p + k > n) {
      malformed('truncated');
    }
  };
  const be = (off: number, k: number) => {
    need(off + k);
    let v = 0;
    for (let i = 0; i < k; i++) {
      v = v * 256 + b[p + off + i];
    }
    return v;
  };
  const bytes = (hdr: number, len: number) => {
    if (len > n - p - hdr) {
      malformed('a length the input cannot hold');
    }
    return p + hdr + len;
  };
  const container = (hdr: number, count: number, perItem: number) => {
    if (depth > MAX_DEPTH) {
      malformed('nested deeper than 8');
    }
    if (count * perItem > n - p - hdr) {
      malformed('a count the input cannot hold');
    }
    let q = p + hdr;
    for (let i = 0; i < count * perItem; i++) {
      q = skim(b, q, depth + 1);
    }
    return q;
  };
  if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) {
    return p + 1;
  }
  if (t >= 0x80 && t <= 0x8f) {
    return container(1, t & 0x0f, 2);
  }
  if (t >= 0x90 && t <= 0x9f) {
    return container(1, t & 0x0f, 1);
  }
  if (t >= 0xa0 && t <= 0xbf) {
    return bytes(1, t & 0x1f);
  }
  switch (t) {
    case 0xc1:
      return malformed('0xc1 is never used');
    case 0xc4:
    case 0xd9:
      return bytes(2, be(1, 1));
    case 0xc5:
    case 0xda:
      return bytes(3, be(1, 2));
    case 0xc6:
    case 0xdb:
      return bytes(5, be(1, 4));
    case 0xc7:
      return bytes(3, be(1, 1));
    case 0xc8:
      return bytes(4, be(1, 2));
    case 0xc9:
      return bytes(6, be(1, 4));
    case 0xca:
      need(5);
      return p + 5;
    case 0xcb:
      need(9);
      return p + 9;
    case 0xcc:
    case 0xd0:
      need(2);
      return p + 2;
    case 0xcd:
    case 0xd1:
      need(3);
      return p + 3;
    case 0xce:
    case 0xd2:
      need(5);
      return p + 5;
    case 0xcf:
    case 0xd3:
      need(9);
      return p + 9;
    case 0xd4:
      need(3);
      return p + 3;
    case 0xd5:
      need(4);
      return p + 4;
    case 0xd6:
      need(6);
      return p + 6;
    case 0xd7:
      need(10);
      return p + 10;
    case 0xd8:
      need(18);
      return p + 18;
    case 0xdc:
      return container(3, be(1, 2), 1);
    case 0xdd:
      return container(5, be(1, 4), 1);
    case 0xde:
      return container(3, be(1, 2), 2);
    case 0xdf:
      return container(5, be(1, 4), 2);
  }
  return malformed('unknown byte');
}

/* ---- pass 2: values, on input whose structure is known to be sound ---- */

class Reader {
  constructor(
    readonly b: Uint8Array,
    public p: number,
  ) {}

  private be(off: number, k: number): number {
    let v = 0;
    for (let i = 0; i < k; i++) {
      v = v * 256 + this.b[this.p + off + i];
    }
    return v;
  }

  private be64(off: number): bigint {
    let v = 0n;
    for (let i = 0; i < 8; i++) {
      v = (v << 8n) | BigInt(this.b[this.p + off + i]);
    }
    return v;
  }

  /** An integer (any format), or null when the object is not one; the reader moves only on success. */
  int(): bigint | null {
    const t = this.b[this.p];
    let v: bigint;
    let size: number;
    if (t <= 0x7f) {
      v = BigInt(t);
      size = 1;
    } else if (t >= 0xe0) {
      v = BigInt(t - 256);
      size = 1;
    } else {
      switch (t) {
        case 0xcc:
          v = BigInt(this.be(1, 1));
          size = 2;
          break;
        case 0xcd:
          v = BigInt(this.be(1, 2));
          size = 3;
          break;
        case 0xce:
          v = BigInt(this.be(1, 4));
          size = 5;
          break;
        case 0xcf:
          v = this.be64(1);
          size = 9;
          break;
        case 0xd0:
          v = BigInt.asIntN(8, BigInt(this.be(1, 1)));
          size = 2;
          break;
        case 0xd1:
          v = BigInt.asIntN(16, BigInt(this.be(1, 2)));
          size = 3;
          break;
        case 0xd2:
          v = BigInt.asIntN(32, BigInt(this.be(1, 4)));
          size = 5;
          break;
        case 0xd3:
          v = BigInt.asIntN(64, this.be64(1));
          size = 9;
          break;
        default:
          return null;
      }
    }
    this.p += size;
    return v;
  }

  /** Array header: the count, or null when the object is not an array. */
  array(): number | null {
    const t = this.b[this.p];
    if (t >= 0x90 && t <= 0x9f) {
      this.p += 1;
      return t & 0x0f;
    }
    if (t === 0xdc) {
      const c = this.be(1, 2);
      this.p += 3;
      return c;
    }
    if (t === 0xdd) {
      const c = this.be(1, 4);
      this.p += 5;
      return c;
    }
    return null;
  }

  /** A bin's bytes (a view), or null when the object is not a bin. */
  bin(): Uint8Array | null {
    const t = this.b[this.p];
    let len: number;
    let hdr: number;
    if (t === 0xc4) {
      len = this.be(1, 1);
      hdr = 2;
    } else if (t === 0xc5) {
      len = this.be(1, 2);
      hdr = 3;
    } else if (t === 0xc6) {
      len = this.be(1, 4);
      hdr = 5;
    } else {
      return null;
    }
    const out = this.b.subarray(this.p + hdr, this.p + hdr + len);
    this.p += hdr + len;
    return out;
  }

  /** A str's bytes, or null when the object is not a str. */
  str(): Uint8Array | null {
    const t = this.b[this.p];
    let len: number;
    let hdr: number;
    if (t >= 0xa0 && t <= 0xbf) {
      len = t & 0x1f;
      hdr = 1;
    } else if (t === 0xd9) {
      len = this.be(1, 1);
      hdr = 2;
    } else if (t === 0xda) {
      len = this.be(1, 2);
      hdr = 3;
    } else if (t === 0xdb) {
      len = this.be(1, 4);
      hdr = 5;
    } else {
      return null;
    }
    const out = this.b.subarray(this.p + hdr, this.p + hdr + len);
    this.p += hdr + len;
    return out;
  }

  uint(what: string, max: bigint): bigint {
    const v = this.int();
    if (v === null) {
      field(`${what}: not an integer`);
    }
    if (v < 0n) {
      field(`${what}: negative`);
    }
    if (v > max) {
      field(`${what}: out of range`);
    }
    return v;
  }

  u32(what: string, nonzero = false): number {
    const v = Number(this.uint(what, BigInt(UINT32_MAX)));
    if (nonzero && v === 0) {
      field(`${what}: zero`);
    }
    return v;
  }

  u64(what: string): bigint {
    return this.uint(what, UINT64_MAX);
  }

  bool(what: string): boolean {
    const t = this.b[this.p];
    if (t !== 0xc2 && t !== 0xc3) {
      field(`${what}: not a bool`);
    }
    this.p++;
    return t === 0xc3;
  }

  binN(what: string, n: number): Uint8Array {
    const v = this.bin();
    if (v === null || v.length !== n) {
      field(`${what}: not a bin of ${n} bytes`);
    }
    return v.slice();
  }

  text(what: string): string {
    const v = this.str();
    if (v === null) {
      field(`${what}: not a str`);
    }
    if (v.length > MAX_REASON) {
      field(`${what}: longer than ${MAX_REASON} bytes`);
    }
    let s: string;
    try {
      s = strictUtf8.decode(v);
    } catch {
      field(`${what}: not well-formed UTF-8`);
    }
    if (s.includes('\u0000')) {
      field(`${what}: contains U+0000`);
    }
    return s;
  }
}

/**
 * Decodes one frame (one WebSocket binary message). `maxMessage` is the largest
 * payload this receiver accepts. Throws FrameError with the first failure of
 * PROTOCOL.md section 4.1.
 */
export function decodeFrame(b: Uint8Array, maxMessage: number): Frame {
  if (b.length === 0) {
    malformed('empty input');
  }
  const t0 = b[0];
  if (!((t0 >= 0x90 && t0 <= 0x9f) || t0 === 0xdc || t0 === 0xdd)) {
    malformed('not an array');
  }
  const end = skim(b, 0, 1);
  if (end !== b.length) {
    throw new FrameError('TETHER_EFRAME_TRAILING', 'bytes follow the frame');
  }
  const r = new Reader(b, 0);
  const count = r.array() as number;
  if (count === 0) {
    throw new FrameError('TETHER_EFRAME_TYPE', 'empty array');
  }
  const typ = r.int();
  if (typ === null || typ < 1n || typ > 6n) {
    throw new FrameError('TETHER_EFRAME_TYPE', 'element 0 is not a frame type');
  }
  const type = Number(typ);
  if (count !== ARITY[type]) {
    throw new FrameError('TETHER_EFRAME_ARITY', `frame type ${type} has ${ARITY[type]} elements, not ${count}`);
  }
  switch (type) {
    case FRAME_HELLO:
      return {
        type: 1,
        version: r.u32('version', true),
        sessionId: r.binN('session_id', 16),
        token: r.binN('token', 32),
        resume: r.bool('resume'),
        recvCursor: r.u64('recv_cursor'),
        outLast: r.u64('out_last'),
        maxMessage: r.u32('max_message', true),
        window: r.u32('window', true),
      };
    case FRAME_WELCOME:
      return {
        type: 2,
        sessionId: r.binN('session_id', 16),
        resumed: r.bool('resumed'),
        recvCursor: r.u64('recv_cursor'),
        outLast: r.u64('out_last'),
        maxMessage: r.u32('max_message', true),
        window: r.u32('window', true),
      };
    case FRAME_REJECT:
    case FRAME_BYE: {
      const code = r.u32('code');
      const reason = r.text('reason');
      return { type: type as 3 | 6, code, reason };
    }
    case FRAME_DATA: {
      const firstSeq = r.u64('first_seq');
      if (firstSeq === 0n) {
        throw new FrameError('TETHER_EFRAME_SEQ0', 'first_seq is 0');
      }
      const flags = r.u32('flags');
      if ((flags & ~1) !== 0) {
        field('flags: unknown bits');
      }
      const n = r.array();
      if (n === null || n === 0) {
        field('payloads: not an array of at least one bin');
      }
      if (n > MAX_RUN) {
        throw new FrameError('TETHER_EFRAME_OVERSIZE', `a run of ${n} messages (at most ${MAX_RUN})`);
      }
      const payloads: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        const p = r.bin();
        if (p === null) {
          field(`payload ${i}: not a bin`);
        }
        if (p.length > maxMessage) {
          throw new FrameError('TETHER_EFRAME_OVERSIZE', `a payload of ${p.length} bytes (at most ${maxMessage})`);
        }
        payloads.push(p.slice());
      }
      if (firstSeq + BigInt(n) - 1n > UINT64_MAX) {
        field('the run passes 2^64-1');
      }
      return { type: 4, firstSeq, flags, payloads };
    }
    default: {
      const seq = r.u64('seq');
      if (seq === 0n) {
        throw new FrameError('TETHER_EFRAME_SEQ0', 'ACK seq is 0');
      }
      return { type: 5, seq };
    }
  }
}

/* ---- encoder: smallest forms ---- */

class Writer {
  buf: Uint8Array;
  n = 0;
  constructor(size: number) {
    this.buf = new Uint8Array(size);
  }
  private room(k: number) {
    if (this.n + k > this.buf.length) {
      const nb = new Uint8Array(Math.max(this.buf.length * 2, this.n + k));
      nb.set(this.buf.subarray(0, this.n));
      this.buf = nb;
    }
  }
  byte(v: number) {
    this.room(1);
    this.buf[this.n++] = v;
  }
  be(v: number, k: number) {
    this.room(k);
    for (let i = k - 1; i >= 0; i--) {
      this.buf[this.n + i] = v & 0xff;
      v = Math.floor(v / 256);
    }
    this.n += k;
  }
  uint(v: bigint | number) {
    const x = BigInt(v);
    if (x < 0n || x > UINT64_MAX) {
      throw new RangeError(`${x} is not a uint64`);
    }
    if (x < 128n) {
      this.byte(Number(x));
    } else if (x < 256n) {
      this.byte(0xcc);
      this.be(Number(x), 1);
    } else if (x < 65536n) {
      this.byte(0xcd);
      this.be(Number(x), 2);
    } else if (x <= 0xffffffffn) {
      this.byte(0xce);
      this.be(Number(x), 4);
    } else {
      this.byte(0xcf);
      this.be(Number(x >> 32n), 4);
      this.be(Number(x & 0xffffffffn), 4);
    }
  }
  array(count: number) {
    if (count < 16) {
      this.byte(0x90 | count);
    } else if (count < 65536) {
      this.byte(0xdc);
      this.be(count, 2);
    } else {
      this.byte(0xdd);
      this.be(count, 4);
    }
  }
  bin(v: Uint8Array) {
    if (v.length < 256) {
      this.byte(0xc4);
      this.be(v.length, 1);
    } else if (v.length < 65536) {
      this.byte(0xc5);
      this.be(v.length, 2);
    } else {
      this.byte(0xc6);
      this.be(v.length, 4);
    }
    this.room(v.length);
    this.buf.set(v, this.n);
    this.n += v.length;
  }
  str(s: string) {
    const v = utf8.encode(s);
    if (v.length > MAX_REASON) {
      throw new RangeError(`a reason of ${v.length} bytes (at most ${MAX_REASON})`);
    }
    if (v.length < 32) {
      this.byte(0xa0 | v.length);
    } else if (v.length < 256) {
      this.byte(0xd9);
      this.be(v.length, 1);
    } else {
      this.byte(0xda);
      this.be(v.length, 2);
    }
    this.room(v.length);
    this.buf.set(v, this.n);
    this.n += v.length;
  }
  bool(v: boolean) {
    this.byte(v ? 0xc3 : 0xc2);
  }
  done(): Uint8Array {
    return this.buf.subarray(0, this.n);
  }
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > UINT32_MAX) {
    throw new RangeError(`${what} ${v} is not a uint32`);
  }
  return v;
}

/** Encodes a frame in the canonical (smallest) form. Throws RangeError for out-of-range fields. */
export function encodeFrame(f: Frame): Uint8Array {
  let size = 96;
  if (f.type === FRAME_DATA) {
    for (const p of f.payloads) {
      size += p.length + 5;
    }
  }
  const w = new Writer(size + 300);
  w.array(ARITY[f.type]);
  w.uint(f.type);
  switch (f.type) {
    case FRAME_HELLO:
      w.uint(u32(f.version, 'version'));
      w.bin(f.sessionId);
      w.bin(f.token);
      w.bool(f.resume);
      w.uint(f.recvCursor);
      w.uint(f.outLast);
      w.uint(u32(f.maxMessage, 'max_message'));
      w.uint(u32(f.window, 'window'));
      break;
    case FRAME_WELCOME:
      w.bin(f.sessionId);
      w.bool(f.resumed);
      w.uint(f.recvCursor);
      w.uint(f.outLast);
      w.uint(u32(f.maxMessage, 'max_message'));
      w.uint(u32(f.window, 'window'));
      break;
    case FRAME_REJECT:
    case FRAME_BYE:
      w.uint(u32(f.code, 'code'));
      w.str(f.reason);
      break;
    case FRAME_DATA:
      if (f.payloads.length < 1 || f.payloads.length > MAX_RUN) {
        throw new RangeError(`a run of ${f.payloads.length} messages`);
      }
      w.uint(f.firstSeq);
      w.uint(u32(f.flags, 'flags'));
      w.array(f.payloads.length);
      for (const p of f.payloads) {
        w.bin(p);
      }
      break;
    case FRAME_ACK:
      w.uint(f.seq);
      break;
  }
  return w.done();
}
