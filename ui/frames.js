// A camera socket's frames: binary messages (?format=binary: u32 big-endian N, N bytes of JSON
// {"type":"frame","metadata":{…}}, the JPEG) or text ones ({"type":"frame","data":"<base64 JPEG>",
// "metadata":{…}}, what a server without renditions sends). Anything else is not a frame (null).

const textDecoder = new TextDecoder();

/** A frame from a text message: the JPEG as base64. */
export function parseText(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return null; }
  if (msg?.type !== 'frame' || typeof msg.data !== 'string') return null;
  return { metadata: msg.metadata || {}, jpeg: msg.data, bytes: data.length };
}

/** A frame from a binary message: u32 big-endian N, N bytes of JSON, the JPEG (as a Blob). */
export function parseBinary(buf) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength < 4) return null;
  const n = new DataView(buf).getUint32(0, false);
  if (4 + n > buf.byteLength) return null;
  let msg;
  try { msg = JSON.parse(textDecoder.decode(new Uint8Array(buf, 4, n))); } catch { return null; }
  if (msg?.type !== 'frame') return null;
  const jpeg = new Blob([new Uint8Array(buf, 4 + n)], { type: 'image/jpeg' });
  return { metadata: msg.metadata || {}, jpeg, bytes: buf.byteLength };
}
