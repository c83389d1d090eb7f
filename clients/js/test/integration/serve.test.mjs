// Against the real C server (`tether serve`, started here on a port from the OS).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TetherClient, MemoryStore } from '../../dist/esm/index.js';
import { startServe, startChaos, tempDir, until, checkServerReceived, serverLines } from '../support/procs.mjs';

const payload = (seq) => `m-${seq}`;

/** Collects a client's deliveries and checks they run 1, 2, 3 ... with no repeat. */
function receiver(c) {
  const r = { next: 1n, redelivered: 0, errors: [] };
  c.on('message', (seq, data) => {
    const text = Buffer.from(data).toString();
    if (seq !== r.next) {
      r.errors.push(`got seq ${seq}, expected ${r.next}`);
    } else if (text !== payload(Number(seq))) {
      r.errors.push(`seq ${seq} holds ${text}`);
    }
    r.next = seq + 1n;
  });
  return r;
}

test('10,000 messages each way, exactly once and in order', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  const c = new TetherClient({ url: srv.url, store: 'memory' });
  const r = receiver(c);
  try {
    await c.start();
    const N = 10000;
    const sends = [];
    for (let i = 1; i <= N; i++) {
      sends.push(c.send(payload(i)));
    }
    const seqs = await Promise.all(sends);
    assert.equal(seqs[N - 1], BigInt(N));
    await c.waitAcked(20000);
    await until(() => r.next > BigInt(N), 20000, 'the echoes');
    assert.deepEqual(r.errors, []);
    await until(() => srv.messages().length >= N, 5000, 'the server output');
    checkServerReceived(await serverLines(() => srv.messages(), N), N, payload);
  } finally {
    await c.close();
    await srv.stop();
    dir.remove();
  }
});

test('cuts through tether chaos: both directions exactly once', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  const relay = await startChaos(dir.path, srv.port, ['--seed', '7', '--random', '100:300', '--kinds', 'cut']);
  const c = new TetherClient({ url: relay.url, store: 'memory', backoffBaseMs: 20, backoffCapMs: 200 });
  const r = receiver(c);
  let reconnects = 0;
  c.on('state', (s) => s.state === 'connected' && reconnects++);
  try {
    await c.start();
    const N = 3000;
    for (let i = 1; i <= N; i++) {
      await c.send(payload(i));
      if (i % 100 === 0) {
        await new Promise((res) => setTimeout(res, 15)); /* spread the stream over the cuts */
      }
    }
    await c.waitAcked(20000);
    await until(() => r.next > BigInt(N), 20000, 'the echoes');
    assert.deepEqual(r.errors, []);
    assert.ok(reconnects >= 3, `only ${reconnects} connections: the relay did not cut`);
    checkServerReceived(await serverLines(() => srv.messages(), N), N, payload);
  } finally {
    await c.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});

test('server restart on its SQLite store: the client resumes and nothing is lost', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const db = `${dir.path}/server.db`;
  let srv = await startServe(dir.path, ['--db', db, '--echo']);
  const port = srv.port;
  const c = new TetherClient({ url: srv.url, store: 'memory', backoffBaseMs: 20, backoffCapMs: 200 });
  const r = receiver(c);
  const before = [];
  try {
    await c.start();
    const N = 2000;
    for (let i = 1; i <= N / 2; i++) {
      await c.send(payload(i));
    }
    await srv.stop('SIGTERM');
    before.push(...srv.messages());
    for (let i = N / 2 + 1; i <= N; i++) {
      await c.send(payload(i));
    }
    srv = await startServe(dir.path, ['--db', db, '--echo'], port);
    await c.waitAcked(20000);
    await until(() => r.next > BigInt(N), 20000, 'the echoes');
    assert.deepEqual(r.errors, []);
    checkServerReceived(await serverLines(() => before.concat(srv.messages()), N), N, payload);
  } finally {
    await c.close();
    await srv.stop();
    dir.remove();
  }
});

test('a server→client backlog is delivered on resume', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  const store = new MemoryStore();
  const N = 1000;
  const a = new TetherClient({ url: srv.url, store, manualAck: true });
  let got = 0;
  a.on('message', () => got++);
  try {
    await a.start();
    for (let i = 1; i <= N; i++) {
      await a.send(payload(i));
    }
    await a.waitAcked(10000);
    await until(() => got === N, 10000, 'the first echoes');
    await a.ack(100n); /* only 100 committed: the server keeps 900 in its outbox */
    await new Promise((res) => setTimeout(res, 50));
    await a.close();
    const b = new TetherClient({ url: srv.url, store });
    const r = receiver(b);
    r.next = 101n;
    let redelivered = 0;
    b.on('message', (seq, data, re) => re && redelivered++);
    await b.start();
    await until(() => r.next > BigInt(N), 10000, 'the backlog');
    assert.deepEqual(r.errors, []);
    assert.equal(redelivered, N - 100, 'the backlog comes flagged redelivered');
    assert.equal(b.cursors.recvCursor, BigInt(N));
    await b.close();
  } finally {
    await srv.stop();
    dir.remove();
  }
});

test('a wrong resume token is refused (REJECT 2) and the client stops', { timeout: 15000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path);
  const store = new MemoryStore();
  try {
    const a = new TetherClient({ url: srv.url, store });
    await a.start();
    await a.send('hello');
    await a.waitAcked(5000);
    await a.close();
    const loaded = await store.load();
    loaded.session.token[0] ^= 0xff;
    await store.create(loaded.session); /* same id, another token */
    const b = new TetherClient({ url: srv.url, store });
    const states = [];
    b.on('state', (s) => states.push(s));
    await b.start();
    await until(() => states.some((s) => s.state === 'stopped'), 5000, 'the stop');
    const st = states.find((s) => s.state === 'stopped');
    assert.equal(st.error, 'TETHER_ETOKEN');
    assert.equal(st.code, 2);
    await b.close();
  } finally {
    await srv.stop();
    dir.remove();
  }
});

test('oversize: a message over the server\'s max_message is refused by send, or stops the client with BYE 7', { timeout: 15000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--quiet']);
  try {
    const big = new Uint8Array(1048576 + 1);
    const a = new TetherClient({ url: srv.url, maxMessage: 4 << 20 });
    const states = [];
    const errors = [];
    a.on('state', (s) => states.push(s));
    a.on('error', (e) => errors.push(e));
    await a.send(big).then(
      () => assert.fail('send before start'),
      (e) => assert.equal(e.code, 'TETHER_ECLOSED'),
    );
    /* queued before the server's limit is known: stored, then refused on the wire */
    const store = new MemoryStore();
    const b = new TetherClient({ url: srv.url, maxMessage: 4 << 20, store });
    b.on('state', (s) => states.push(s));
    b.on('error', (e) => errors.push(e));
    await a.start();
    await until(() => states.some((s) => s.state === 'connected'), 5000, 'a connected');
    await assert.rejects(a.send(big), (e) => e.code === 'TETHER_ETOOBIG');
    await b.start();
    await b.send(big);
    await until(() => states.some((s) => s.state === 'stopped'), 5000, 'b stopped');
    assert.equal(states.find((s) => s.state === 'stopped').error, 'TETHER_ETOOBIG');
    assert.ok(errors.some((e) => e.code === 'TETHER_ETOOBIG'));
    assert.equal(b.pending.messages, 1, 'the message stays in the outbox, reported');
    await a.close();
    await b.close();
  } finally {
    await srv.stop();
    dir.remove();
  }
});

test('connection refused and an HTTP status to the upgrade are reported', { timeout: 15000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--allow-origin', 'https://allowed.example']);
  const port = srv.port;
  try {
    const a = new TetherClient({ url: srv.url, headers: { Origin: 'https://other.example' } });
    const states = [];
    a.on('state', (s) => states.push(s));
    await a.start();
    await until(() => states.some((s) => s.state === 'stopped'), 5000, 'the 403 stop');
    const st = states.find((s) => s.state === 'disconnected');
    assert.equal(st.error, 'TETHER_EHTTP');
    assert.equal(st.httpStatus, 403);
    await a.close();
    await srv.stop();
    const b = new TetherClient({ url: `ws://127.0.0.1:${port}/`, backoffMaxAttempts: 1, backoffBaseMs: 10 });
    const bs = [];
    b.on('state', (s) => bs.push(s));
    await b.start();
    await until(() => bs.some((s) => s.state === 'stopped'), 5000, 'give up');
    assert.equal(bs.find((s) => s.state === 'disconnected').error, 'TETHER_ECONNREFUSED');
    assert.equal(bs.at(-1).error, 'TETHER_EGIVEUP');
    await b.close();
  } finally {
    await srv.stop();
    dir.remove();
  }
});
