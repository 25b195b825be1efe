// What the pages do with GET /api/session, and the login and People pages' small rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sessionView } from '../../ui/session.js';
import { refusal } from '../../ui/login.js';
import { cameraList } from '../../ui/admin.js';

test('a server with accounts sends nobody to the login page and shows a role', () => {
  assert.deepEqual(sessionView(401, { error: 'not signed in', accounts: true }), { go: 'login' });
  assert.deepEqual(sessionView(200, { name: 'vic', role: 'viewer', via: 'session', accounts: true }), { role: 'viewer', name: 'vic', signedIn: true });
  assert.equal(sessionView(200, { name: 'ha', role: 'viewer', via: 'token', accounts: true }).signedIn, false);
});

test('a server without accounts is left as it was (the token prompt, every control)', () => {
  assert.deepEqual(sessionView(200, { name: 'anonymous', role: 'admin', via: 'open', accounts: false }), { role: '' });
  assert.deepEqual(sessionView(401, { error: 'not signed in', accounts: false }), { role: '' });
  assert.deepEqual(sessionView(500, null), { role: '' });
});

test('a refused sign-in says why in the server words', () => {
  assert.equal(refusal(401, { error: 'wrong name or password' }), 'wrong name or password');
  assert.match(refusal(429, null), /wait a minute/);
  assert.equal(refusal(502, null), 'Sign-in failed (502).');
});

test('camera lists are split on commas', () => {
  assert.deepEqual(cameraList(' ward-a-*, ,door '), ['ward-a-*', 'door']);
  assert.deepEqual(cameraList(''), []);
});
