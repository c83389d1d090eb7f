// Reads proto/vectors files (format: proto/README.md).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const protoDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'proto');

export function parseHex(text) {
  const parts = [];
  for (const tok of text.split(' ').filter((t) => t.length > 0)) {
    const [hex, rep] = tok.split('*');
    if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
      throw new Error(`bad hex token ${tok}`);
    }
    const bytes = Buffer.from(hex, 'hex');
    const times = rep === undefined ? 1 : Number(rep);
    for (let i = 0; i < times; i++) {
      parts.push(bytes);
    }
  }
  return new Uint8Array(Buffer.concat(parts));
}

export function readVectors(file, fields = 3) {
  const out = [];
  const lines = readFileSync(join(protoDir, 'vectors', file), 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.length === 0 || line.startsWith('#')) {
      return;
    }
    const f = line.split('\t');
    if (f.length !== fields) {
      throw new Error(`${file}:${i + 1}: ${f.length} fields, not ${fields}`);
    }
    out.push({ line: i + 1, name: f[0], fields: f.slice(1, fields - 1), expect: f[fields - 2], hex: f[fields - 1] });
  });
  return out;
}

const hex = (b) => (b.length === 0 ? '-' : Buffer.from(b).toString('hex'));
const txt = (s) => hex(new TextEncoder().encode(s));
const b01 = (v) => (v ? '1' : '0');

/** A decoded frame in the `expect` notation of proto/README.md. */
export function describe(f) {
  switch (f.type) {
    case 1:
      return `HELLO v=${f.version} id=${hex(f.sessionId)} token=${hex(f.token)} resume=${b01(f.resume)} recv=${f.recvCursor} out=${f.outLast} max=${f.maxMessage} window=${f.window}`;
    case 2:
      return `WELCOME id=${hex(f.sessionId)} resumed=${b01(f.resumed)} recv=${f.recvCursor} out=${f.outLast} max=${f.maxMessage} window=${f.window}`;
    case 3:
      return `REJECT code=${f.code} reason=${txt(f.reason)}`;
    case 6:
      return `BYE code=${f.code} reason=${txt(f.reason)}`;
    case 4:
      return `DATA first=${f.firstSeq} flags=${f.flags} payloads=${f.payloads.map(hex).join(',')}`;
    case 5:
      return `ACK seq=${f.seq}`;
    default:
      throw new Error(`unknown frame type ${f.type}`);
  }
}
