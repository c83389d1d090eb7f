// The session logic with a fake carriage and a fake clock (PROTOCOL.md sections 6 to 10).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeClient, settle, welcome } from '../support/fake.mjs';

async function openClient(extra, w = {}) {
  const t = makeClient(extra);
  await t.c.start();
  t.net.last.open();
  const hello = t.net.last.frames()[0];
  t.net.last.push(welcome(hello, w));
  await settle();
  return { ...t, hello };
}

test('HELLO on open; WELCOME opens; sends go out as one run; the ACK prunes and is reported', async () => {
  const { c, net, log, hello } = await openClient();
  assert.equal(hello.type, 1);
  assert.equal(hello.version, 1);
  assert.equal(hello.resume, false);
  assert.equal(hello.sessionId.length, 16);
  assert.equal(hello.token.length, 32);
  assert.equal(hello.maxMessage, 1048576);
  assert.equal(hello.window, 1024);
  assert.deepEqual(log.state.map((s) => s.state), ['connecting', 'connected']);
  const seqs = await Promise.all([c.send('hello'), c.send('world')]);
  assert.deepEqual(seqs, [1n, 2n]);
  await settle();
  const data = net.last.frames().filter((f) => f.type === 4);
  assert.equal(data.length, 1);
  assert.equal(data[0].firstSeq, 1n);
  assert.equal(data[0].flags, 0);
  assert.deepEqual(data[0].payloads.map((p) => Buffer.from(p).toString()), ['hello', 'world']);
  const w = c.waitAcked(1000);
  net.last.push({ type: 5, seq: 2n });
  await settle();
  await w;
  assert.deepEqual(log.acked, [[1n, 2n]]);
  assert.equal(c.pending.messages, 0);
  assert.equal(c.cursors.peerAcked, 2n);
});

test('resume: the second HELLO says resume with the cursors; unacked messages go again flagged redelivered', async () => {
  const { c, net, timers, log } = await openClient();
  await c.send('a');
  await c.send('b');
  await c.send('c');
  await settle();
  net.last.push({ type: 5, seq: 1n });
  net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('x')] });
  await settle();
  net.last.drop();
  await settle();
  const rec = log.state.at(-1);
  assert.equal(rec.state, 'reconnecting');
  assert.equal(rec.error, 'TETHER_EPEER_CLOSED');
  assert.equal(rec.retryInMs, 125); // full jitter: 0.5 of the first bound 250
  timers.advance(125);
  await settle();
  assert.equal(net.conns.length, 2);
  net.last.open();
  const h2 = net.last.frames()[0];
  assert.equal(h2.resume, true);
  assert.equal(h2.recvCursor, 1n);
  assert.equal(h2.outLast, 3n);
  net.last.push(welcome(h2, { resumed: true, recvCursor: 2n, outLast: 1n }));
  await settle();
  assert.deepEqual(log.acked, [[1n, 1n], [2n, 2n]]); // the WELCOME's cursor is an ACK
  const data = net.last.frames().filter((f) => f.type === 4);
  assert.equal(data.length, 1);
  assert.equal(data[0].firstSeq, 3n);
  assert.equal(data[0].flags, 1);
});

test('receiving: in order, delayed cumulative ACK after T, duplicates re-acked at once, a gap is BYE 4', async () => {
  const { net, timers, log } = await openClient();
  net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('a'), Buffer.from('b')] });
  await settle();
  assert.deepEqual(log.message.map((m) => [m[0], Buffer.from(m[1]).toString(), m[2]]), [[1n, 'a', false], [2n, 'b', false]]);
  assert.equal(net.last.frames().filter((f) => f.type === 5).length, 0);
  timers.advance(20);
  assert.deepEqual(net.last.frames().filter((f) => f.type === 5).map((f) => f.seq), [2n]);
  net.last.push({ type: 4, firstSeq: 2n, flags: 1, payloads: [Buffer.from('b')] });
  await settle();
  assert.equal(log.message.length, 2);
  assert.deepEqual(net.last.frames().filter((f) => f.type === 5).map((f) => f.seq), [2n, 2n]);
  net.last.push({ type: 4, firstSeq: 4n, flags: 0, payloads: [Buffer.from('d')] });
  await settle();
  const bye = net.last.frames().at(-1);
  assert.equal(bye.type, 6);
  assert.equal(bye.code, 4);
  assert.equal(log.state.find((s) => s.state === 'disconnected').error, 'TETHER_EGAP');
});

test('ACK every K messages without waiting for T', async () => {
  const { net } = await openClient({ ackEvery: 3 });
  net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [1, 2, 3].map((x) => Buffer.from([x])) });
  await settle();
  assert.deepEqual(net.last.frames().filter((f) => f.type === 5).map((f) => f.seq), [3n]);
});

test('manual ack mode: nothing is acknowledged until ack(seq); a reconnect redelivers the rest', async () => {
  const { c, net, timers, log } = await openClient({ manualAck: true });
  net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('a'), Buffer.from('b')] });
  await settle();
  timers.advance(1000);
  assert.equal(net.last.frames().filter((f) => f.type === 5).length, 0);
  await c.ack(1n);
  timers.advance(20);
  assert.deepEqual(net.last.frames().filter((f) => f.type === 5).map((f) => f.seq), [1n]);
  await assert.rejects(c.ack(3n), /TETHER_EINVAL/);
  net.last.drop();
  await settle();
  timers.advance(1000);
  net.last.open();
  assert.equal(net.last.frames()[0].recvCursor, 1n);
  net.last.push(welcome(net.last.frames()[0], { resumed: true, outLast: 2n }));
  await settle();
  net.last.push({ type: 4, firstSeq: 2n, flags: 1, payloads: [Buffer.from('b')] });
  await settle();
  assert.deepEqual(log.message.at(-1).slice(0, 1).concat(log.message.at(-1)[2]), [2n, true]);
  await assert.rejects(makeClient().c.ack(1n), /manualAck/);
});

test('window: at most `window` unacknowledged in flight, backpressure full then open', async () => {
  const { c, net, log } = await openClient({ window: 2 });
  for (const m of ['a', 'b', 'c', 'd']) {
    await c.send(m);
  }
  await settle();
  let data = net.last.frames().filter((f) => f.type === 4);
  assert.deepEqual(data.map((f) => [f.firstSeq, f.payloads.length]), [[1n, 1], [2n, 1]]);
  assert.deepEqual(log.backpressure.map((b) => b.kind), ['window_full']);
  net.last.push({ type: 5, seq: 2n });
  await settle();
  data = net.last.frames().filter((f) => f.type === 4);
  assert.equal(data.at(-1).firstSeq, 3n);
  net.last.push({ type: 5, seq: 4n });
  await settle();
  assert.deepEqual(log.backpressure.map((b) => b.kind), ['window_full', 'window_open']);
});

test('outbox cap: send refuses with TETHER_EOUTBOX_FULL and stores nothing', async () => {
  const { c, log } = makeClient({ maxPendingMessages: 2 });
  await c.start();
  await c.send('a');
  await c.send('b');
  await assert.rejects(c.send('c'), (e) => e.code === 'TETHER_EOUTBOX_FULL');
  assert.equal(c.pending.messages, 2);
  assert.equal(log.backpressure[0].kind, 'outbox_full');
  await assert.rejects(c.send('x'.repeat(1048577)), (e) => e.code === 'TETHER_ETOOBIG');
  await assert.rejects(c.send(42), (e) => e.code === 'TETHER_EINVAL');
});

test('mismatch: a WELCOME that lost acknowledged messages stops the client with BYE 6 and the counts', async () => {
  const { c, net, timers, log } = await openClient();
  await c.send('a');
  await c.send('b');
  await settle();
  net.last.push({ type: 5, seq: 2n });
  await settle();
  net.last.drop();
  await settle();
  timers.advance(1000);
  net.last.open();
  net.last.push(welcome(net.last.frames()[0], { resumed: false }));
  await settle();
  assert.equal(log.mismatch.length, 1);
  assert.equal(log.mismatch[0].lostAcked, 2n);
  assert.equal(net.last.frames().at(-1).code, 6);
  assert.equal(log.state.at(-1).state, 'stopped');
  assert.equal(log.state.at(-1).error, 'TETHER_EMISMATCH');
  timers.advance(60000);
  assert.equal(net.conns.length, 2); // never reconnects by itself
  await c.send('c');
  await c.resetSession();
  net.last.open();
  const h = net.last.frames()[0];
  assert.equal(h.resume, false);
  assert.equal(h.outLast, 1n);
});

test('REJECT 2 (token) is permanent; REJECT 3 (limit) retries with backoff', async () => {
  const a = makeClient();
  await a.c.start();
  a.net.last.open();
  a.net.last.push({ type: 3, code: 2, reason: 'bad token' });
  await settle();
  assert.equal(a.log.state.at(-1).state, 'stopped');
  assert.equal(a.log.state.at(-1).error, 'TETHER_ETOKEN');
  assert.equal(a.log.state.at(-1).code, 2);
  const b = makeClient();
  await b.c.start();
  b.net.last.open();
  b.net.last.push({ type: 3, code: 3, reason: '' });
  await settle();
  assert.equal(b.log.state.at(-1).state, 'reconnecting');
  assert.equal(b.log.state.at(-1).error, 'TETHER_ELIMIT');
});

test('HTTP 401 to the upgrade stops, 503 retries no sooner than Retry-After; BYE 9 stops', async () => {
  const a = makeClient();
  await a.c.start();
  a.net.last.drop({ error: 'TETHER_EHTTP', httpStatus: 401, detail: 'refused' });
  await settle();
  assert.equal(a.log.state.at(-1).state, 'stopped');
  assert.equal(a.log.state.at(-1).httpStatus, 401);
  const b = makeClient();
  await b.c.start();
  b.net.last.drop({ error: 'TETHER_EHTTP', httpStatus: 503, retryAfterMs: 2000, detail: 'busy' });
  await settle();
  assert.equal(b.log.state.at(-1).retryInMs, 2000);
  const d = await openClient();
  d.net.last.push({ type: 6, code: 9, reason: 'displaced' });
  await settle();
  assert.equal(d.log.state.at(-1).error, 'TETHER_EDISPLACED');
  assert.equal(d.log.state.at(-1).state, 'stopped');
});

test('welcome timeout reports TETHER_ESTALLED; a malformed frame is BYE 4, an oversize one BYE 7', async () => {
  const a = makeClient();
  await a.c.start();
  a.net.last.open();
  a.timers.advance(10000);
  await settle();
  assert.equal(a.log.state.find((s) => s.state === 'disconnected').error, 'TETHER_ESTALLED');
  const b = await openClient({ maxMessage: 4 });
  b.net.last.pushRaw(new Uint8Array([0x92, 0x05]));
  await settle();
  assert.equal(b.net.last.frames().at(-1).code, 4);
  assert.equal(b.log.state.find((s) => s.state === 'disconnected').error, 'TETHER_EMALFORMED');
  const d = await openClient({ maxMessage: 4 });
  d.net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('12345')] });
  await settle();
  assert.equal(d.net.last.frames().at(-1).code, 7);
});

test('an ACK beyond out_last is a protocol error; a text message too', async () => {
  const a = await openClient();
  a.net.last.push({ type: 5, seq: 1n });
  await settle();
  assert.equal(a.net.last.frames().at(-1).code, 4);
  const b = await openClient();
  b.net.last.pushRaw(null);
  await settle();
  assert.equal(b.net.last.frames().at(-1).code, 4);
});

test('backoff grows, resets after a connection that lived backoffResetMs, and gives up after maxAttempts', async () => {
  const { c, net, timers, log } = makeClient({ backoffMaxAttempts: 2, random: () => 0.999999 });
  await c.start();
  net.last.drop({ error: 'TETHER_ECONNREFUSED', detail: 'x' });
  await settle();
  assert.equal(log.state.at(-1).retryInMs, 250);
  timers.advance(250);
  net.last.drop({ error: 'TETHER_ECONNREFUSED', detail: 'x' });
  await settle();
  assert.equal(log.state.at(-1).retryInMs, 500);
  timers.advance(500);
  net.last.drop({ error: 'TETHER_ECONNREFUSED', detail: 'x' });
  await settle();
  assert.equal(log.state.at(-1).error, 'TETHER_EGIVEUP');
  assert.equal(log.state.at(-1).state, 'stopped');
});

test('close: ACK what was committed, BYE 0, state closed; send after close is refused', async () => {
  const { c, net, log } = await openClient();
  net.last.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('a')] });
  await settle();
  await c.close();
  const f = net.last.frames();
  assert.equal(f.at(-2).type, 5);
  assert.equal(f.at(-1).type, 6);
  assert.equal(f.at(-1).code, 0);
  assert.equal(log.state.at(-1).state, 'closed');
  await assert.rejects(c.send('x'), (e) => e.code === 'TETHER_ECLOSED');
});

test('options out of range are refused with TETHER_ECONFIG', async () => {
  const { TetherClient } = await import('../../dist/esm/index.js');
  assert.throws(() => new TetherClient({ url: 'http://x/' }), /ECONFIG/);
  assert.throws(() => new TetherClient({ url: 'ws://x/', window: 0 }), /ECONFIG/);
  assert.throws(() => new TetherClient({ url: 'ws://x/', maxMessage: 2 ** 32 }), /ECONFIG/);
  assert.throws(() => new TetherClient({ url: 'ws://x/', store: 'indexeddb' }), /ECONFIG/);
  assert.throws(() => new TetherClient({ url: 'ws://x/', store: 'nope' }), /ECONFIG/);
});

test('browsers: offline ends the connection at once, online retries without waiting for the backoff', async () => {
  const listeners = {};
  globalThis.window = globalThis;
  globalThis.addEventListener = (t, f) => (listeners[t] = f);
  globalThis.removeEventListener = (t) => delete listeners[t];
  try {
    const { c, net, log } = await openClient({ backoffBaseMs: 60000 });
    listeners.offline();
    await settle();
    assert.equal(log.state.find((s) => s.state === 'disconnected').error, 'TETHER_ECONNECT');
    assert.equal(log.state.at(-1).state, 'reconnecting');
    assert.equal(net.conns.length, 1);
    listeners.online();
    assert.equal(net.conns.length, 2, 'a new attempt at once');
    await c.close();
    assert.equal(listeners.online, undefined, 'close removes the listeners');
  } finally {
    delete globalThis.window;
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});
