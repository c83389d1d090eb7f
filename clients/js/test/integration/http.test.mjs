// The HTTP carriage (proto/HTTP.md) against the real C server, and the automatic fallback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TetherClient } from '../../dist/esm/index.js';
import { startServe, startChaos, tempDir, until, checkServerReceived, serverLines } from '../support/procs.mjs';

const payload = (seq) => `h-${seq}`;

function receiver(c) {
  const r = { next: 1n, errors: [] };
  c.on('message', (seq, data) => {
    const text = Buffer.from(data).toString();
    if (seq !== r.next || text !== payload(Number(seq))) {
      r.errors.push(`got ${seq} ${text}, expected ${r.next}`);
    }
    r.next = seq + 1n;
  });
  return r;
}

test('HTTP carriage: 3,000 messages each way exactly once, through cuts', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  const relay = await startChaos(dir.path, srv.port, ['--seed', '5', '--random', '200:400', '--kinds', 'cut']);
  const c = new TetherClient({ url: relay.url, transport: 'http', backoffBaseMs: 20, backoffCapMs: 200 });
  const r = receiver(c);
  const states = [];
  c.on('state', (s) => states.push(s));
  try {
    await c.start();
    const N = 3000;
    for (let i = 1; i <= N; i++) {
      await c.send(payload(i));
      if (i % 100 === 0) {
        await new Promise((res) => setTimeout(res, 10));
      }
    }
    await c.waitAcked(25000);
    await until(() => r.next > BigInt(N), 20000, 'the echoes');
    assert.deepEqual(r.errors, []);
    assert.ok(states.filter((s) => s.state === 'connected').every((s) => s.transport === 'http'));
    checkServerReceived(await serverLines(() => srv.messages(), N), N, payload);
  } finally {
    await c.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});

test('auto: an upgrade that passes and then stalls falls back to HTTP, which is kept while WebSocket heals', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path);
  /* the relay stalls every new connection after its first request and answer (the HTTP opens
     too) for 1.2 s, then lets everything through: the client must be on HTTP by then and stay */
  const relay = await startChaos(dir.path, srv.port, ['--stall-upgrade', '--do', 'in 1200ms stall-upgrade off']);
  const c = new TetherClient({ url: relay.url, welcomeTimeoutMs: 500 });
  const states = [];
  c.on('state', (s) => states.push(s));
  try {
    await c.start();
    for (let i = 1; i <= 100; i++) {
      await c.send(payload(i));
    }
    await c.waitAcked(15000).catch((e) => {
      throw new Error(`${e.message}; states: ${states.map((s) => `${s.state}/${s.transport}/${s.error}/${s.httpStatus} ${s.detail}`).join('; ')}`);
    });
    assert.equal(states.find((s) => s.state === 'disconnected').error, 'TETHER_ESTALLED');
    assert.ok(states.some((s) => s.state === 'reconnecting' && /falling back to the HTTP carriage/.test(s.detail)));
    const conns = states.filter((s) => s.state === 'connected');
    assert.ok(conns.length >= 1 && conns.every((s) => s.transport === 'http'), 'the verdict is kept (fallbackMemoryMs)');
    checkServerReceived(await serverLines(() => srv.messages(), 100), 100, payload);
  } finally {
    await c.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});

test('HTTP carriage: a refused Origin is reported with its status (403) and stops', { timeout: 15000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--allow-origin', 'https://ok.example']);
  const c = new TetherClient({ url: srv.url, transport: 'http', headers: { Origin: 'https://evil.example' } });
  const states = [];
  c.on('state', (s) => states.push(s));
  try {
    await c.start();
    await until(() => states.some((s) => s.state === 'stopped'), 5000, 'the stop');
    const d = states.find((s) => s.state === 'disconnected');
    assert.equal(d.error, 'TETHER_EHTTP');
    assert.equal(d.httpStatus, 403);
    assert.equal(d.transport, 'http');
  } finally {
    await c.close();
    await srv.stop();
    dir.remove();
  }
});
