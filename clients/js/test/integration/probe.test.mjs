// The background WebSocket probe against the real C server: WebSocket blocked by the chaos
// relay's stall-upgrade (plain HTTP passes), then lifted; messages flow throughout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore, TetherClient } from '../../dist/esm/index.js';
import { startServe, startChaos, tempDir, until, checkServerReceived, serverLines } from '../support/procs.mjs';

const payload = (seq) => `p-${seq}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('auto: blocked WebSocket -> HTTP, a failed probe, the block lifted -> back to WebSocket; every message exactly once both ways', { timeout: 30000 }, async () => {
  const dir = tempDir();
  const srv = await startServe(dir.path, ['--echo']);
  /* upgrades stall (plain HTTP passes) until the first background probe has failed: the
     first WebSocket (ESTALLED) and that probe fail; the next probe, twice the memory later, passes */
  const relay = await startChaos(dir.path, srv.port, ['--stall-upgrade']);
  const store = new MemoryStore();
  const puts = [];
  const put = store.verdictPut.bind(store);
  store.verdictPut = (key, v) => (puts.push(v && v.probesFailed), put(key, v));
  const c = new TetherClient({ url: relay.url, store, welcomeTimeoutMs: 500, fallbackMemoryMs: 1000, backoffBaseMs: 20, backoffCapMs: 200 });
  const got = { next: 1n, errors: [] };
  c.on('message', (seq, data) => {
    const t = Buffer.from(data).toString();
    if (seq !== got.next || t !== payload(Number(seq))) {
      got.errors.push(`got ${seq} ${t}, expected ${got.next}`);
    }
    got.next = seq + 1n;
  });
  const states = [];
  const t0 = Date.now();
  c.on('state', (s) => states.push({ ...s, at: Date.now() - t0 }));
  const say = () => states.map((s) => `${s.at} ${s.state}/${s.transport}/${s.error} ${s.detail}`).join('\n');
  const switched = () => states.some((s) => /back to WebSocket/.test(s.detail));
  let n = 0;
  let after = 0;
  let sender = Promise.resolve();
  let quit = false;
  try {
    await c.start();
    /* messages both ways all along (the server echoes): some in flight at every switch */
    sender = (async () => {
      while (n < 3000 && after < 20 && !quit) {
        for (let k = 0; k < 10; k++) {
          await c.send(payload(++n));
        }
        after += switched() ? 1 : 0;
        await sleep(40);
      }
    })();
    await until(() => puts.includes(1), 10000, 'a failed probe').catch((e) => {
      throw new Error(`${e.message}\n${say()}`);
    });
    relay.cmd('stall-upgrade off');
    await until(switched, 10000, 'the switch back').catch((e) => {
      throw new Error(`${e.message}\n${say()}`);
    });
    await sender;
    const N = n;
    await c.waitAcked(10000);
    await until(() => got.next > BigInt(N), 10000, 'the echoes');
    assert.deepEqual(got.errors, []);
    assert.equal(states.find((s) => s.state === 'disconnected').error, 'TETHER_ESTALLED');
    assert.ok(states.some((s) => s.state === 'connected' && s.transport === 'http'), say());
    assert.equal(states.filter((s) => /back to WebSocket/.test(s.detail)).length, 1, say());
    const last = states.filter((s) => s.state === 'connected').at(-1);
    assert.equal(last.transport, 'websocket', say());
    assert.equal(c.state, 'open');
    assert.deepEqual(puts, [0, 1, null], `${say()}\nstored at the fallback, extended by the failed probe, removed by the won one`);
    checkServerReceived(await serverLines(() => srv.messages(), N), N, payload);
  } finally {
    quit = true;
    await sender.catch(() => undefined);
    await c.close();
    await relay.stop();
    await srv.stop();
    dir.remove();
  }
});
