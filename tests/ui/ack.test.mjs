// What an acknowledgement and a long lie read as, and which events the UI offers to acknowledge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ackLabel, cleanName, needsAck } from '../../ui/ack.js';

test('only a stored fall nobody acknowledged yet offers the button', () => {
  assert.ok(needsAck({ id: 4, kind: 'fall', acknowledged_at: null }));
  assert.ok(needsAck({ id: 4, kind: 'fall' }));
  assert.ok(!needsAck({ id: 4, kind: 'fall', acknowledged_at: 12 }));
  assert.ok(!needsAck({ id: null, kind: 'fall' }), 'not stored: nothing to acknowledge');
  assert.ok(!needsAck({ id: 5, kind: 'person_detected' }));
  assert.ok(!needsAck(null));
});

test('an acknowledged event says by whom and when', () => {
  const time = (t) => `T${t}`;
  assert.equal(ackLabel({ acknowledged_at: 100, acknowledged_by: 'Ann' }, time), 'acknowledged by Ann at T100');
  assert.equal(ackLabel({ acknowledged_at: null }, time), '');
  assert.equal(ackLabel({}, time), '');
});

test('a name is taken as the server takes it: trimmed, 1 to 64 characters, printable', () => {
  assert.equal(cleanName('  Ann '), 'Ann');
  assert.equal(cleanName(''), null);
  assert.equal(cleanName('   '), null);
  assert.equal(cleanName(null), null);
  assert.equal(cleanName('é'.repeat(64)), 'é'.repeat(64));
  assert.equal(cleanName('x'.repeat(65)), null);
  assert.equal(cleanName('a\u0007b'), null);
});
