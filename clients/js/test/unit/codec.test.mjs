// The codec against every vector of proto/vectors (valid, noncanonical, invalid).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFrame, encodeFrame, FrameError } from '../../dist/esm/codec.js';
import { readVectors, parseHex, describe } from '../support/vectors.mjs';

const MAX = 1048576;

test('valid.txt: decodes to expect and re-encodes byte for byte', () => {
  const vs = readVectors('valid.txt');
  assert.ok(vs.length > 40, `only ${vs.length} vectors`);
  for (const v of vs) {
    const bytes = parseHex(v.hex);
    const f = decodeFrame(bytes, MAX);
    assert.equal(describe(f), v.expect, `${v.name} (line ${v.line})`);
    assert.deepEqual(Buffer.from(encodeFrame(f)), Buffer.from(bytes), `${v.name} re-encoded`);
  }
});

test('noncanonical.txt: decodes to expect; the encoder writes smaller forms', () => {
  const vs = readVectors('noncanonical.txt');
  assert.ok(vs.length > 10);
  for (const v of vs) {
    const bytes = parseHex(v.hex);
    const f = decodeFrame(bytes, MAX);
    assert.equal(describe(f), v.expect, v.name);
    const again = encodeFrame(f);
    assert.notDeepEqual(Buffer.from(again), Buffer.from(bytes), `${v.name} is written differently`);
    assert.equal(describe(decodeFrame(again, MAX)), v.expect, `${v.name} round trip`);
  }
});

test('invalid.txt: fails with the named error and its close code', () => {
  const vs = readVectors('invalid.txt');
  assert.ok(vs.length > 100);
  for (const v of vs) {
    const bytes = parseHex(v.hex);
    assert.throws(
      () => decodeFrame(bytes, MAX),
      (e) => {
        assert.ok(e instanceof FrameError, `${v.name}: ${e}`);
        assert.equal(e.code, v.expect, `${v.name} (line ${v.line}): ${e.message}`);
        assert.equal(e.closeCode, v.expect === 'TETHER_EFRAME_OVERSIZE' ? 7 : 4);
        return true;
      },
    );
  }
});

test('sequence numbers keep their precision past 2^53', () => {
  const seq = (1n << 53n) + 1n;
  const f = decodeFrame(encodeFrame({ type: 5, seq }), MAX);
  assert.equal(f.seq, seq);
});

test('the encoder refuses out-of-range fields instead of wrapping', () => {
  assert.throws(() => encodeFrame({ type: 5, seq: 1n << 64n }), RangeError);
  assert.throws(() => encodeFrame({ type: 5, seq: -1n }), RangeError);
  assert.throws(() => encodeFrame({ type: 6, code: 2 ** 32, reason: '' }), RangeError);
  assert.throws(() => encodeFrame({ type: 6, code: 0, reason: 'x'.repeat(257) }), RangeError);
  assert.throws(() => encodeFrame({ type: 4, firstSeq: 1n, flags: 0, payloads: [] }), RangeError);
});
