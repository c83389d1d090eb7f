/*
 * Bodies of the HTTP carriage (proto/HTTP.md section 3): length-prefixed
 * records, each one frame (a stream's first record is the empty probe), with
 * the limits of each kind and the order of checks of section 3.3.
 */

export type BodyKind = 'open' | 'answer' | 'send' | 'poll' | 'stream';

export type BodyErrorName =
  | 'BODY_PREFIX_TRUNCATED'
  | 'BODY_NO_PROBE'
  | 'BODY_RECORD_EMPTY'
  | 'BODY_TOO_MANY'
  | 'BODY_COUNT'
  | 'BODY_RECORD_TOO_LARGE'
  | 'BODY_TOO_LARGE'
  | 'BODY_RECORD_TRUNCATED';

export class BodyError extends Error {
  readonly code: BodyErrorName;
  /** The status a server answers for it (400 or 413). */
  readonly status: number;
  constructor(code: BodyErrorName, message: string) {
    super(`${code}: ${message}`);
    this.name = 'BodyError';
    this.code = code;
    this.status = ['BODY_TOO_MANY', 'BODY_RECORD_TOO_LARGE', 'BODY_TOO_LARGE'].includes(code) ? 413 : 400;
  }
}

export const MAX_FRAMES = 4096;

/** record_max and body_max of a kind, for the receiver's max_message. */
export function bodyLimits(kind: BodyKind, maxMessage: number): { recordMax: number; bodyMax: number; minFrames: number; maxFrames: number } {
  if (kind === 'open') {
    return { recordMax: 1024, bodyMax: 1028, minFrames: 1, maxFrames: 1 };
  }
  const recordMax = Math.max(maxMessage + 64, 1024);
  const bodyMax = Math.max(2 * (recordMax + 4), 65536) + (kind === 'stream' ? 4 : 0);
  return { recordMax, bodyMax, minFrames: kind === 'stream' ? 0 : 1, maxFrames: kind === 'answer' ? 2 : MAX_FRAMES };
}

/** The frames of a whole body (the probe of a stream left out); throws BodyError with the first rule broken. */
export function parseBody(b: Uint8Array, kind: BodyKind, maxMessage: number): Uint8Array[] {
  const { recordMax, bodyMax, minFrames, maxFrames } = bodyLimits(kind, maxMessage);
  const frames: Uint8Array[] = [];
  let o = 0;
  let i = 0;
  while (o < b.length) {
    i++;
    if (b.length - o < 4) {
      throw new BodyError('BODY_PREFIX_TRUNCATED', `the body ends inside a length at byte ${o}`);
    }
    const n = ((b[o] << 24) >>> 0) + (b[o + 1] << 16) + (b[o + 2] << 8) + b[o + 3];
    const probe = kind === 'stream' && i === 1;
    if (probe && n !== 0) {
      throw new BodyError('BODY_NO_PROBE', 'a stream answer must begin with an empty record');
    }
    if (n === 0 && !probe) {
      throw new BodyError('BODY_RECORD_EMPTY', `record ${i} is empty`);
    }
    if (!probe) {
      if (frames.length === maxFrames) {
        if (maxFrames === MAX_FRAMES) {
          throw new BodyError('BODY_TOO_MANY', `more than ${MAX_FRAMES} frames`);
        }
        throw new BodyError('BODY_COUNT', `more than ${maxFrames} frame(s) in a body of kind ${kind}`);
      }
      if (n > recordMax) {
        throw new BodyError('BODY_RECORD_TOO_LARGE', `record ${i} of ${n} bytes (at most ${recordMax})`);
      }
    }
    if (o + 4 + n > bodyMax) {
      throw new BodyError('BODY_TOO_LARGE', `the body reaches past ${bodyMax} bytes`);
    }
    if (b.length - o - 4 < n) {
      throw new BodyError('BODY_RECORD_TRUNCATED', `the body ends inside record ${i}`);
    }
    if (!probe) {
      frames.push(b.subarray(o + 4, o + 4 + n));
    }
    o += 4 + n;
  }
  if (kind === 'stream' && i === 0) {
    throw new BodyError('BODY_NO_PROBE', 'an empty stream answer');
  }
  if (frames.length < minFrames) {
    throw new BodyError('BODY_COUNT', `no frame in a body of kind ${kind}`);
  }
  return frames;
}

/** Writes frames as records (after the empty probe when `probe`). */
export function writeBody(frames: Uint8Array[], probe = false): Uint8Array {
  let size = probe ? 4 : 0;
  for (const f of frames) {
    size += 4 + f.length;
  }
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  let o = probe ? 4 : 0;
  for (const f of frames) {
    dv.setUint32(o, f.length);
    out.set(f, o + 4);
    o += 4 + f.length;
  }
  return out;
}
