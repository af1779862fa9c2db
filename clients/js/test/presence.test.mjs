// Unit: presence as phoenix.js applies it. A snapshot, then diffs applied idempotently, join and
// leave callbacks only for real changes, count from the server, `exact` false when the snapshot
// was cut or the updates went count-only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Presence } from '../dist/index.js';

function watch(p) {
  const log = { joins: [], leaves: [], syncs: [] };
  p.onJoin((m) => log.joins.push(m.user));
  p.onLeave((m) => log.leaves.push(m.user));
  p.onSync((members, count) => log.syncs.push([members.map((m) => m.user).sort(), count]));
  return log;
}

test('snapshot then idempotent diffs', () => {
  const p = new Presence();
  const log = watch(p);
  p._snapshot({ count: 2, members: [{ user: 'a' }, { user: 'b' }] });
  assert.deepEqual(log.joins, ['a', 'b']);
  assert.equal(p.count, 2);
  assert.equal(p.exact, true);
  // The joiner's own PRESENCE_UPDATE repeats what the snapshot had: nothing changes.
  p._update({ count: 2, joins: [{ user: 'b' }], leaves: [] });
  assert.deepEqual(log.joins, ['a', 'b']);
  p._update({ count: 3, joins: [{ user: 'c' }], leaves: [] });
  p._update({ count: 3, joins: [{ user: 'c' }], leaves: [] });
  assert.deepEqual(log.joins, ['a', 'b', 'c']);
  p._update({ count: 2, joins: [], leaves: [{ user: 'a' }] });
  p._update({ count: 2, joins: [], leaves: [{ user: 'a' }, { user: 'zz' }] });
  assert.deepEqual(log.leaves, ['a']);
  assert.deepEqual(p.list().map((m) => m.user).sort(), ['b', 'c']);
  assert.deepEqual(log.syncs.at(-1), [['b', 'c'], 2]);
  assert.equal(log.syncs.length, 6, 'onSync after the snapshot and after each update');
});

test('a new snapshot reports the difference as joins and leaves', () => {
  const p = new Presence();
  p._snapshot({ count: 2, members: [{ user: 'a' }, { user: 'b' }] });
  const log = watch(p);
  p._snapshot({ count: 2, members: [{ user: 'b' }, { user: 'c' }] });
  assert.deepEqual(log.joins, ['c']);
  assert.deepEqual(log.leaves, ['a']);
});

test('a cut snapshot or count-only updates make the list inexact; the count stays right', () => {
  const p = new Presence();
  const members = Array.from({ length: 100 }, (_, i) => ({ user: 'u' + i }));
  p._snapshot({ count: 250, members });
  assert.equal(p.exact, false);
  assert.equal(p.count, 250);
  assert.equal(p.list().length, 100);

  const q = new Presence();
  q._snapshot({ count: 2, members: [{ user: 'a' }, { user: 'b' }] });
  assert.equal(q.exact, true);
  q._update({ count: 1500 });
  assert.equal(q.exact, false);
  assert.equal(q.count, 1500);
  assert.equal(q.list().length, 2, 'count-only updates change no member');
  q._snapshot({ count: 1, members: [{ user: 'a' }] });
  assert.equal(q.exact, true, 'a whole snapshot makes it exact again');
});
