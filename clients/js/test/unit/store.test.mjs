// The store contract (src/store.ts) on the memory store: each call takes full effect or changes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStore } from '../../dist/esm/index.js';

const rec = () => ({ id: new Uint8Array(16), token: new Uint8Array(32), established: false, outLast: 0n, peerAcked: 0n, recvCursor: 0n });
const msg = (seq) => ({ seq: BigInt(seq), data: new Uint8Array([seq]) });

test('memory store: create, append, acked, committed, established', async () => {
  const s = new MemoryStore();
  assert.equal(await s.load(), null);
  await assert.rejects(s.append([msg(1)]), /no session/);
  await s.create(rec());
  await s.append([msg(1), msg(2), msg(3)]);
  await assert.rejects(s.append([msg(5)]), /append of seq 5 after 3/);
  await s.acked(2n);
  await s.acked(1n); /* not above peerAcked: nothing */
  await s.committed(7n);
  await s.established();
  const l = await s.load();
  assert.equal(l.session.outLast, 3n);
  assert.equal(l.session.peerAcked, 2n);
  assert.equal(l.session.recvCursor, 7n);
  assert.equal(l.session.established, true);
  assert.deepEqual(l.outbox.map((m) => m.seq), [3n]);
  await s.create(rec());
  assert.deepEqual((await s.load()).outbox, [], 'a new session drops the old outbox');
});

test('a client restarted on the same store resumes its session and resends its outbox flagged', async () => {
  const { makeClient, settle, welcome } = await import('../support/fake.mjs');
  const store = new MemoryStore();
  const a = makeClient({ store });
  await a.c.start();
  await a.c.send('x');
  await a.c.send('y');
  const id = a.c.sessionId;
  await a.c.close();
  const b = makeClient({ store });
  await b.c.start();
  assert.equal(b.c.sessionId, id);
  assert.equal(b.c.pending.messages, 2);
  b.net.last.open();
  const h = b.net.last.frames()[0];
  assert.equal(h.outLast, 2n);
  b.net.last.push(welcome(h));
  await settle();
  const data = b.net.last.frames().filter((f) => f.type === 4);
  assert.equal(data[0].flags, 1, 'a restart cannot rule out an earlier transmission');
});
