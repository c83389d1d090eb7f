// Backoff: the documented table of bounds (docs/config.md: base 250 ms, cap 30 s) and full jitter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, BACKOFF_BASE_MS, BACKOFF_CAP_MS, BACKOFF_RESET_MS } from '../../dist/esm/backoff.js';

test('defaults are the C client\'s (src/common/defaults.h)', () => {
  assert.equal(BACKOFF_BASE_MS, 250);
  assert.equal(BACKOFF_CAP_MS, 30000);
  assert.equal(BACKOFF_RESET_MS, 10000);
});

test('bounds double from the base up to the cap', () => {
  const b = new Backoff();
  const table = [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
  table.forEach((want, n) => assert.equal(b.bound(n), want, `attempt ${n}`));
  assert.equal(b.bound(31), 30000);
  assert.equal(b.bound(1000), 30000);
  assert.equal(new Backoff(0, 100).bound(5), 0);
});

test('full jitter: the delay is uniform in [0, bound], both ends reachable', () => {
  const draws = [0, 0.999999999, 0.5, 0.25];
  let i = 0;
  const b = new Backoff(250, 30000, 0, () => draws[i++]);
  assert.equal(b.next(), 0); // attempt 0, bound 250
  assert.equal(b.next(), 500); // attempt 1, bound 500, top end
  assert.equal(b.next(), 500); // attempt 2, bound 1000, half
  assert.equal(b.next(), 500); // attempt 3, bound 2000, a quarter
  assert.equal(b.attempt, 4);
  b.reset();
  assert.equal(b.attempt, 0);
});

test('maxAttempts gives up; 0 never does', () => {
  const b = new Backoff(10, 100, 2, () => 0);
  assert.equal(b.next(), 0);
  assert.equal(b.next(), 0);
  assert.equal(b.next(), null);
  const forever = new Backoff(10, 100, 0, () => 0);
  for (let n = 0; n < 100; n++) {
    assert.notEqual(forever.next(), null);
  }
});

test('out-of-range settings are refused', () => {
  assert.throws(() => new Backoff(-1), RangeError);
  assert.throws(() => new Backoff(1.5), RangeError);
  assert.throws(() => new Backoff(250, 2 ** 32), RangeError);
});
