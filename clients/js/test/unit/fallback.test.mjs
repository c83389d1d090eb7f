// The choice of carriage (src/fallback.ts), with made-up events and times, as the C suite does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fallback, FB_SAME, FB_SWITCHED, FB_PERMANENT } from '../../dist/esm/fallback.js';

const ev = (error, extra = {}) => ({ error, httpStatus: 0, welcomed: false, acked: false, ...extra });

test('path failures move AUTO to HTTP; refusals HTTP would meet too do not', () => {
  for (const [e, st] of [['TETHER_ESTALLED', 0], ['TETHER_EHTTP', 426], ['TETHER_EHANDSHAKE', 101]]) {
    const f = new Fallback('auto', 1000);
    assert.equal(f.afterClose(ev(e, { httpStatus: st }), 0), FB_SWITCHED, e);
    assert.equal(f.http, true);
  }
  for (const [e, st] of [['TETHER_ECONNREFUSED', 0], ['TETHER_EHTTP', 503], ['TETHER_ETOKEN', 0]]) {
    const f = new Fallback('auto', 1000);
    assert.equal(f.afterClose(ev(e, { httpStatus: st }), 0), FB_SAME, e);
    assert.equal(f.http, false);
  }
  const pinned = new Fallback('websocket', 1000);
  assert.equal(pinned.afterClose(ev('TETHER_ESTALLED'), 0), FB_SAME);
});

test('the verdict is kept memoryMs, then WebSocket is probed; a failed probe doubles the wait, up to 12x', () => {
  const f = new Fallback('auto', 1000);
  f.afterClose(ev('TETHER_ESTALLED'), 0);
  assert.equal(f.beforeAttempt(999), false);
  assert.equal(f.beforeAttempt(1000), true);
  assert.equal(f.http, false);
  assert.equal(f.afterClose(ev('TETHER_ESTALLED'), 1000), FB_SWITCHED);
  assert.equal(f.httpUntil, 3000);
  for (const want of [4000, 8000, 12000, 12000]) {
    assert.equal(f.beforeAttempt(f.httpUntil), true);
    const t = f.httpUntil;
    f.afterClose(ev('TETHER_ESTALLED'), t);
    assert.equal(f.httpUntil - t, want);
  }
  f.beforeAttempt(f.httpUntil);
  f.welcomed();
  assert.equal(f.http, false);
  assert.equal(f.probesFailed, 0);
});

test('401/403 to the upgrade tries HTTP once: welcomed there it stays, refused there it is permanent', () => {
  const a = new Fallback('auto', 1000);
  assert.equal(a.afterClose(ev('TETHER_EHTTP', { httpStatus: 403 }), 0), FB_SWITCHED);
  assert.equal(a.afterClose(ev('TETHER_EHTTP', { httpStatus: 403 }), 0), FB_PERMANENT);
  const b = new Fallback('auto', 1000);
  b.afterClose(ev('TETHER_EHTTP', { httpStatus: 401 }), 0);
  b.welcomed();
  assert.equal(b.afterClose(ev('TETHER_EPEER_CLOSED', { welcomed: true }), 10), FB_SAME);
  assert.equal(b.http, true);
});

test('a browser WebSocket that did not open: the HTTP open asks; its status decides', () => {
  const blocked = new Fallback('auto', 1000);
  assert.equal(blocked.afterClose(ev('TETHER_ECONNECT', { statusHidden: true }), 0), FB_SWITCHED);
  assert.equal(blocked.keep(), false, 'not a verdict before the HTTP open passed');
  const changes = blocked.changes;
  blocked.welcomed(); /* HTTP passes: WebSocket was blocked on the path */
  assert.equal(blocked.http, true);
  assert.equal(blocked.keep(), true);
  assert.ok(blocked.changes > changes, 'now stored');
  const refused = new Fallback('auto', 1000);
  refused.afterClose(ev('TETHER_ECONNECT', { statusHidden: true }), 0);
  assert.equal(refused.afterClose(ev('TETHER_EHTTP', { httpStatus: 401 }), 0), FB_PERMANENT);
  const down = new Fallback('auto', 1000);
  down.afterClose(ev('TETHER_ECONNECT', { statusHidden: true }), 0);
  assert.equal(down.afterClose(ev('TETHER_ECONNREFUSED'), 0), FB_SAME);
  assert.equal(down.http, false, 'back to WebSocket, with backoff');
});

test('two WebSocket connections in a row silent before any ACK fall back', () => {
  const f = new Fallback('auto', 1000);
  assert.equal(f.afterClose(ev('TETHER_EPING', { welcomed: true }), 0), FB_SAME);
  assert.equal(f.afterClose(ev('TETHER_EPING', { welcomed: true }), 0), FB_SWITCHED);
});

test('a stored verdict restores HTTP for its remaining time, at most 12x memoryMs; probes win and lose', () => {
  const f = new Fallback('auto', 1000);
  assert.equal(f.restore(100, 0, 0), false, 'nothing left');
  assert.equal(f.http, false);
  assert.equal(f.restore(100, 50000, 2), true);
  assert.equal(f.http, true);
  assert.equal(f.httpUntil, 100 + 12000, 'capped at 12x');
  assert.equal(f.probesFailed, 2);
  assert.equal(f.keep(), true);
  assert.equal(f.probeDue(12099), false);
  assert.equal(f.probeDue(12100), true);
  const before = f.changes;
  f.probeLost(12100, 'no WELCOME');
  assert.equal(f.probesFailed, 3);
  assert.equal(f.httpUntil, 12100 + 8000);
  assert.ok(f.changes > before);
  f.probeWon();
  assert.equal(f.http, false);
  assert.equal(f.probesFailed, 0);
  assert.equal(f.keep(), false);
  assert.match(f.why, /back to WebSocket/);
  assert.equal(new Fallback('websocket', 1000).restore(0, 500, 0), false, 'only auto restores');
  const auth = new Fallback('auto', 1000);
  auth.afterClose(ev('TETHER_EHTTP', { httpStatus: 401 }), 0);
  assert.equal(auth.keep(), false, 'the one HTTP try after 401/403 is not a verdict');
  assert.equal(auth.probeDue(5000), false);
});
