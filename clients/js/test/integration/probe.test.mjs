// The background WebSocket probe against the real C server: WebSocket blocked by the chaos
// relay's stall-upgrade (plain HTTP passes), then lifted; messages flow throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TetherClient } from '../../dist/esm/index.js';
import { startServe, startChaos, tempDir, until, checkServerReceived } from '../support/procs.mjs';

const payload = (seq) => `p-${seq}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('auto: blocked WebSocket -> HTTP, a failed probe, the block lifted -> back to WebSocket; every message exactly once both ways', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  /* upgrades stall until 2.6 s: the first WebSocket (ESTALLED at 0.5 s) and the probe at
     ~1.5 s fail; the next probe (~4 s, twice the memory later) passes */
  const relay = await startChaos(dir.path, srv.port, ['--stall-upgrade', '--do', 'in 2600ms stall-upgrade off']);
  const c = new TetherClient({ url: relay.url, welcomeTimeoutMs: 500, fallbackMemoryMs: 1000, backoffBaseMs: 20, backoffCapMs: 200 });
  const got = { next: 1n, errors: [] };
  c.on('message', (seq, data) => {
    const t = Buffer.from(data).toString();
    if (seq !== got.next || t !== payload(Number(seq))) {
      got.errors.push(`got ${seq} ${t}, expected ${got.next}`);
    }
    got.next = seq + 1n;
  });
  const states = [];
  c.on('state', (s) => states.push(s));
  const say = () => states.map((s) => `${s.state}/${s.transport}/${s.error} ${s.detail}`).join('\n');
  try {
    await c.start();
    const N = 600;
    for (let i = 1; i <= N; i++) {
      await c.send(payload(i));
      if (i % 10 === 0) {
        await sleep(80); /* spread over ~5 s: messages in flight at every switch */
      }
    }
    await until(() => states.some((s) => /back to WebSocket/.test(s.detail)), 10000, 'the switch back').catch((e) => {
      throw new Error(`${e.message}\n${say()}`);
    });
    await c.waitAcked(10000);
    await until(() => got.next > BigInt(N), 10000, 'the echoes');
    assert.deepEqual(got.errors, []);
    assert.equal(states.find((s) => s.state === 'disconnected').error, 'TETHER_ESTALLED');
    assert.ok(states.some((s) => s.state === 'connected' && s.transport === 'http'), say());
    assert.equal(states.filter((s) => /back to WebSocket/.test(s.detail)).length, 1, say());
    const last = states.filter((s) => s.state === 'connected').at(-1);
    assert.equal(last.transport, 'websocket', say());
    assert.equal(c.state, 'open');
    checkServerReceived(srv.messages(), N, payload);
  } finally {
    await c.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});
