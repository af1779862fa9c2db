// Unit: the reconnect backoff stays within its bounds (full jitter: 0 ≤ delay ≤ ceiling, the
// ceiling growing by `factor` up to `maxDelayMs`), and reset() starts over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, DEFAULT_INITIAL_DELAY_MS, DEFAULT_MAX_DELAY_MS } from '../dist/index.js';

test('ceilings grow by factor and stop at maxDelayMs', () => {
  const b = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000, factor: 3 });
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => b.ceiling(n)), [100, 300, 900, 1000, 1000]);
});

test('full jitter: every delay within [0, ceiling], extremes reached', () => {
  const lo = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000 }, () => 0);
  const hi = new Backoff({ initialDelayMs: 100, maxDelayMs: 1000 }, () => 0.999999);
  assert.deepEqual([1, 2, 3].map(() => lo.next()), [0, 0, 0]);
  assert.deepEqual([1, 2, 3, 4, 5].map(() => hi.next()), [100, 200, 400, 800, 1000]);
  const r = new Backoff({ initialDelayMs: 50, maxDelayMs: 5000 });
  for (let i = 0; i < 200; i++) {
    const ceiling = r.ceiling(r.attempt);
    const d = r.next();
    assert.ok(d >= 0 && d <= ceiling, `delay ${d} within [0, ${ceiling}]`);
  }
});

test('reset starts from the first ceiling; defaults are the named constants', () => {
  const b = new Backoff({}, () => 0.999999);
  assert.equal(b.next(), DEFAULT_INITIAL_DELAY_MS);
  b.next();
  b.reset();
  assert.equal(b.next(), DEFAULT_INITIAL_DELAY_MS);
  assert.equal(b.ceiling(100), DEFAULT_MAX_DELAY_MS);
});

test('jitter stays within the first ceiling and counts no attempt', () => {
  const b = new Backoff({ initialDelayMs: 80 }, () => 0.5);
  assert.equal(b.jitter(), 40);
  assert.equal(b.attempt, 0);
});
