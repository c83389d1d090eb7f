// HTTP carriage bodies against proto/vectors/http_valid.txt and http_invalid.txt.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBody, writeBody, BodyError } from '../../dist/esm/body.js';
import { decodeFrame, FrameError } from '../../dist/esm/codec.js';
import { readVectors, parseHex } from '../support/vectors.mjs';

const frames = new Map(readVectors('valid.txt').map((v) => [v.name, parseHex(v.hex)]));

function kindOf(k) {
  const [kind, max] = k.split('/');
  return { kind, max: max === undefined ? 1048576 : Number(max) };
}

test('http_valid.txt: exactly the frames listed, each decodes, and writing them gives the body', () => {
  const vs = readVectors('http_valid.txt', 4);
  assert.ok(vs.length > 20);
  for (const v of vs) {
    const { kind, max } = kindOf(v.fields[0]);
    const body = parseHex(v.hex);
    const got = parseBody(body, kind, max);
    const want = v.expect === '-' ? [] : v.expect.split(',').flatMap((n) => {
      const [name, rep] = n.split('*');
      assert.ok(frames.has(name), `${v.name}: unknown vector ${name}`);
      return Array(rep === undefined ? 1 : Number(rep)).fill(frames.get(name));
    });
    assert.equal(got.length, want.length, v.name);
    got.forEach((f, i) => {
      assert.deepEqual(Buffer.from(f), Buffer.from(want[i]), `${v.name} frame ${i + 1}`);
      decodeFrame(f, max);
    });
    assert.deepEqual(Buffer.from(writeBody(got, kind === 'stream')), Buffer.from(body), `${v.name} written`);
  }
});

test('http_invalid.txt: the first rule broken, or the first frame that fails with its position', () => {
  const vs = readVectors('http_invalid.txt', 4);
  assert.ok(vs.length > 30);
  for (const v of vs) {
    const { kind, max } = kindOf(v.fields[0]);
    let got;
    try {
      const fs = parseBody(parseHex(v.hex), kind, max);
      fs.forEach((f, i) => {
        try {
          decodeFrame(f, max);
        } catch (e) {
          assert.ok(e instanceof FrameError);
          throw Object.assign(new Error(), { name: `${e.code}@${i + 1}` });
        }
      });
      got = 'accepted';
    } catch (e) {
      got = e instanceof BodyError ? e.code : e.name;
    }
    assert.equal(got, v.expect, `${v.name} (line ${v.line})`);
  }
});
