// A camera socket's messages: binary frames (length-prefixed JSON, then the JPEG) and text frames.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseBinary, parseText } from '../../ui/frames.js';

function binary(json, jpeg = [0xff, 0xd8, 0xff]) {
  const head = new TextEncoder().encode(JSON.stringify(json));
  const buf = new ArrayBuffer(4 + head.length + jpeg.length);
  new DataView(buf).setUint32(0, head.length, false);
  new Uint8Array(buf, 4).set(head);
  new Uint8Array(buf, 4 + head.length).set(jpeg);
  return buf;
}

test('a binary frame gives its metadata and the JPEG bytes after it', async () => {
  const buf = binary({ type: 'frame', metadata: { seq: 7 } });
  const f = parseBinary(buf);
  assert.deepEqual(f.metadata, { seq: 7 });
  assert.equal(f.bytes, buf.byteLength);
  assert.equal(f.jpeg.type, 'image/jpeg');
  assert.deepEqual([...new Uint8Array(await f.jpeg.arrayBuffer())], [0xff, 0xd8, 0xff]);
});

test('anything else is not a frame', () => {
  assert.equal(parseBinary(new ArrayBuffer(2)), null, 'too short');
  const lying = binary({ type: 'frame' });
  new DataView(lying).setUint32(0, 9999, false);
  assert.equal(parseBinary(lying), null, 'a length past the end');
  assert.equal(parseBinary(binary({ type: 'hello' })), null);
  assert.equal(parseText('not json'), null);
  assert.equal(parseText(JSON.stringify({ type: 'frame' })), null, 'a text frame without its JPEG');
});

test('a text frame carries its JPEG as base64', () => {
  const text = JSON.stringify({ type: 'frame', data: 'AAAA', metadata: { seq: 1 } });
  assert.deepEqual(parseText(text), { metadata: { seq: 1 }, jpeg: 'AAAA', bytes: text.length });
  assert.deepEqual(parseText(JSON.stringify({ type: 'frame', data: 'AA' })).metadata, {});
});
