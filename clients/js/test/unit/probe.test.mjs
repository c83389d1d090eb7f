// The remembered fallback verdict and the background WebSocket probe (src/verdict.ts,
// src/probe.ts), with the fake carriage and the fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../dist/esm/index.js';
import { makeClient, settle, welcome } from '../support/fake.mjs';

const KEY = 'ws://test/|proxy=';
const OPTS = { transport: 'auto', fallbackMemoryMs: 1000, connectTimeoutMs: 500, welcomeTimeoutMs: 500 };
const text = (b) => Buffer.from(b).toString();
const dataOf = (conn) => conn.frames().filter((f) => f.type === 4);

/** Opens conn (the last one) and welcomes it; returns its HELLO. */
async function welcomeLast(net, extra = {}) {
  const conn = net.last;
  conn.open();
  const hello = conn.frames()[0];
  conn.push(welcome(hello, extra));
  await settle();
  return hello;
}

/** A client that found WebSocket blocked (no WELCOME over it) and is welcomed on HTTP at t=500. */
async function onHttp(extra = {}) {
  const store = new MemoryStore();
  const t = makeClient({ ...OPTS, store, ...extra });
  await t.c.start();
  t.net.last.open();
  t.timers.advance(500); /* upgraded, no WELCOME: ESTALLED, HTTP until 1500 */
  await settle();
  t.timers.advance(0);
  assert.equal(t.net.last.kind, 'http');
  await welcomeLast(t.net);
  return { ...t, store };
}

test('a stored verdict starts on HTTP at once and is probed when it expires; an expired one is forgotten', async () => {
  const store = new MemoryStore();
  await store.verdictPut(KEY, { untilMs: 3000, probesFailed: 1 });
  const { c, net, timers, log } = makeClient({ ...OPTS, store });
  await c.start();
  assert.equal(net.conns.length, 1);
  assert.equal(net.last.kind, 'http', 'no WebSocket attempt first');
  assert.match(log.state[0].detail, /HTTP carriage.*earlier run found WebSocket blocked/);
  await welcomeLast(net);
  timers.advance(2999);
  await settle();
  assert.equal(net.conns.length, 1, 'no probe before the verdict ends');
  timers.advance(1);
  await settle();
  assert.equal(net.conns.length, 2);
  assert.equal(net.last.kind, 'websocket', 'the probe at 3000');
  await c.close();

  const capped = new MemoryStore();
  await capped.verdictPut(KEY, { untilMs: 10 ** 12, probesFailed: 0 }); /* a clock that jumped: 12x memory at most */
  const b = makeClient({ ...OPTS, store: capped });
  await b.c.start();
  await welcomeLast(b.net);
  b.timers.advance(12000);
  await settle();
  assert.equal(b.net.last.kind, 'websocket');
  await b.c.close();

  const old = new MemoryStore();
  await old.verdictPut(KEY, { untilMs: 0, probesFailed: 3 });
  const a = makeClient({ ...OPTS, store: old });
  await a.c.start();
  assert.equal(a.net.last.kind, 'websocket');
  assert.equal(await old.verdictGet(KEY), null, 'the expired verdict is removed');
  await a.c.close();

  const pinned = new MemoryStore();
  await pinned.verdictPut(KEY, { untilMs: 3000, probesFailed: 0 });
  const p = makeClient({ ...OPTS, store: pinned, transport: 'websocket' });
  await p.c.start();
  assert.equal(p.net.last.kind, 'websocket', 'only auto reads the verdict');
  await p.c.close();
});

test('probes at 1x, 2x, 4x, 8x, then 12x the memory; each failure extends the stored verdict', async () => {
  const { c, net, timers, store } = await onHttp();
  assert.deepEqual(await store.verdictGet(KEY), { untilMs: 1500, probesFailed: 0 });
  const http = net.last;
  let n = net.conns.length;
  for (const [i, wait] of [1000, 2000, 4000, 8000, 12000, 12000].entries()) {
    timers.advance(wait - 1);
    await settle();
    assert.equal(net.conns.length, n, `no probe before ${wait} ms`);
    timers.advance(1);
    await settle();
    assert.equal(net.conns.length, n + 1, `probe ${i + 1} after ${wait} ms`);
    const probe = net.last;
    assert.equal(probe.kind, 'websocket');
    n++;
    if (i % 2 === 0) {
      probe.drop({ error: 'TETHER_ECONNREFUSED', detail: 'refused' }); /* a failed connect */
    } else {
      probe.open();
      assert.equal(probe.frames()[0].type, 1, 'the probe sends the HELLO');
      timers.advance(500); /* no WELCOME through */
      assert.ok(probe.closed, 'the probe is closed');
    }
    await settle();
    const next = Math.min(12, 2 ** (i + 1)) * 1000;
    assert.deepEqual(await store.verdictGet(KEY), { untilMs: timers.t + next, probesFailed: i + 1 });
    assert.equal(http.closed, null, 'HTTP keeps carrying the session');
  }
  assert.equal(c.state, 'open');
  await c.close();
});

test('a won probe moves the session onto WebSocket with messages in flight, exactly once', async () => {
  const { c, net, timers, log, store } = await onHttp();
  const http = net.last;
  await c.send('a');
  await c.send('b');
  await c.send('c');
  await settle();
  assert.deepEqual(dataOf(http).flatMap((f) => f.payloads.map(text)), ['a', 'b', 'c']);
  http.push({ type: 5, seq: 1n });
  http.push({ type: 4, firstSeq: 1n, flags: 0, payloads: [Buffer.from('x1'), Buffer.from('x2')] });
  await settle();
  timers.advance(1000);
  await settle();
  const probe = net.last;
  assert.equal(probe.kind, 'websocket');
  probe.open();
  const hello = probe.frames()[0];
  assert.equal(hello.recvCursor, 2n);
  assert.equal(hello.resume, true);
  /* while the probe is out, HTTP still carries both ways */
  http.push({ type: 4, firstSeq: 3n, flags: 0, payloads: [Buffer.from('x3')] });
  await c.send('d');
  await settle();
  assert.ok(dataOf(http).some((f) => f.firstSeq === 4n), 'd went over HTTP');
  /* the server took the probe's HELLO after 1..3 (not d), and resends from the HELLO's cursor */
  probe.push(welcome(hello, { resumed: true, recvCursor: 3n, outLast: 3n }));
  probe.push({ type: 4, firstSeq: 3n, flags: 1, payloads: [Buffer.from('x3')] });
  await settle();
  http.push({ type: 4, firstSeq: 4n, flags: 0, payloads: [Buffer.from('late')] }); /* stale: ignored */
  await settle();
  assert.ok(http.closed, 'the HTTP connection is dropped');
  assert.ok(!http.frames().some((f) => f.type === 6), 'without BYE');
  assert.deepEqual(log.message.map(([s, p]) => [s, text(p)]), [[1n, 'x1'], [2n, 'x2'], [3n, 'x3']]);
  const sent = dataOf(probe);
  assert.deepEqual(sent.map((f) => [f.firstSeq, f.flags, f.payloads.map(text)]), [[4n, 1, ['d']]], 'only d is sent again');
  assert.ok(probe.frames().some((f) => f.type === 5 && f.seq === 3n), 'the duplicate is acknowledged');
  const back = log.state.filter((s) => /back to WebSocket/.test(s.detail));
  assert.equal(back.length, 1);
  assert.equal(back[0].state, 'reconnecting');
  assert.equal(log.state.at(-1).state, 'connected');
  assert.equal(log.state.at(-1).transport, 'websocket');
  assert.equal(await store.verdictGet(KEY), null, 'a won probe forgets the verdict');
  probe.push({ type: 5, seq: 4n });
  await c.send('e');
  await settle();
  assert.deepEqual(dataOf(probe).at(-1).firstSeq, 5n);
  const conns = net.conns.length;
  timers.advance(60000);
  await settle();
  assert.equal(net.conns.length, conns, 'no further probe on WebSocket');
  assert.equal(c.state, 'open');
  await c.close();
});

test('a probe whose HELLO displaced the HTTP connection: the client waits for it, then opens HTTP again', async () => {
  const { c, net, timers, log } = await onHttp();
  const http = net.last;
  timers.advance(1000);
  await settle();
  const probe = net.last;
  probe.open();
  http.push({ type: 6, code: 9, reason: 'displaced' });
  await settle();
  assert.notEqual(c.state, 'stopped');
  assert.equal(net.conns.length, 3, 'no new attempt while the probe is out');
  timers.advance(500);
  await settle();
  timers.advance(0);
  await settle();
  assert.equal(net.conns.length, 4);
  assert.equal(net.last.kind, 'http', 'HTTP again at once');
  assert.ok(log.state.some((s) => /opening the HTTP carriage again/.test(s.detail)));
  await c.close();
});

test('a store without verdictGet/verdictPut still falls back (in memory only)', async () => {
  const inner = new MemoryStore();
  const store = {};
  for (const k of ['load', 'create', 'append', 'acked', 'committed', 'established', 'close']) {
    store[k] = (...a) => inner[k](...a);
  }
  const { c, net, timers } = makeClient({ ...OPTS, store });
  await c.start();
  net.last.open();
  timers.advance(500);
  await settle();
  timers.advance(0);
  assert.equal(net.last.kind, 'http');
  await welcomeLast(net);
  timers.advance(1000);
  await settle();
  assert.equal(net.last.kind, 'websocket', 'the probe still runs');
  await c.close();
});

test('a store whose verdict calls fail never stops the client; the next connecting event says so', async () => {
  const store = new MemoryStore();
  store.verdictGet = async () => {
    throw new Error('disk gone');
  };
  const { c, net, log } = makeClient({ ...OPTS, store });
  await c.start();
  assert.equal(net.last.kind, 'websocket');
  assert.match(log.state[0].detail, /cannot read the fallback verdict: disk gone/);
  await c.close();
});

test('a mismatch on the HTTP connection while the probe is out stops the client and closes the probe', async () => {
  const { c, net, timers, log } = await onHttp();
  const http = net.last;
  timers.advance(1000);
  await settle();
  const probe = net.last;
  probe.open();
  http.push({ type: 6, code: 6, reason: 'session state lost' });
  await settle();
  assert.equal(c.state, 'stopped');
  assert.equal(log.state.at(-1).error, 'TETHER_EMISMATCH');
  assert.ok(probe.closed, 'the probe is closed');
  timers.advance(60000);
  await settle();
  assert.equal(net.conns.length, 3, 'nothing reconnects');
  await c.close();
});

test('BYE DISPLACED on HTTP before the probe\'s WELCOME: the WELCOME then moves the session, nothing stops', async () => {
  const { c, net, timers, log } = await onHttp();
  await c.send('a');
  await settle();
  const http = net.last;
  timers.advance(1000);
  await settle();
  const probe = net.last;
  probe.open();
  const hello = probe.frames()[0];
  http.push({ type: 6, code: 9, reason: 'displaced' });
  await settle();
  assert.equal(c.state, 'waiting');
  probe.push(welcome(hello, { resumed: true, recvCursor: 0n, outLast: 0n }));
  await settle();
  assert.equal(c.state, 'open');
  assert.equal(log.state.at(-1).transport, 'websocket');
  assert.ok(!log.state.some((s) => s.state === 'stopped'));
  assert.deepEqual(dataOf(probe).map((f) => [f.firstSeq, f.flags]), [[1n, 1]], 'a goes again, flagged');
  assert.equal(net.conns.length, 3);
  await c.close();
});
