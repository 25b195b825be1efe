// Acknowledging an event (POST /api/events/{id}/ack) and how an acknowledgement and a long lie
// read, in the alert banner, the events list and the player. The name asked for once is
// remembered in this browser (localStorage); the write goes with the token the UI uses for writes.

import { fetchWithToken } from './api.js';
import { el } from './dom.js';
import { fmt } from './format.js';

export const ACK_NAME_KEY = 'haven.ack-name';
export const MAX_NAME = 64;

/** Whether the UI offers to acknowledge `ev`: a stored fall nobody has acknowledged yet. */
export function needsAck(ev) {
  return ev?.kind === 'fall' && ev.id != null && ev.acknowledged_at == null;
}

/** "acknowledged by Ann at 10:02:03" ('' when not acknowledged). */
export function ackLabel(ev, time = fmt.time) {
  if (ev?.acknowledged_at == null) return '';
  return `acknowledged by ${ev.acknowledged_by ?? '?'} at ${time(ev.acknowledged_at)}`;
}

/** A name as the server takes it: trimmed, 1 to 64 characters, else null. */
export function cleanName(name) {
  const n = String(name ?? '').trim();
  const chars = [...n].length;
  return chars >= 1 && chars <= MAX_NAME && !/\p{Cc}/u.test(n) ? n : null;
}

/** The name remembered in this browser, or asked for once (null if the user cancels). */
function askName() {
  const kept = cleanName(localStorage.getItem(ACK_NAME_KEY));
  if (kept) return kept;
  for (;;) {
    const given = prompt('Your name, to acknowledge alerts with (remembered in this browser):');
    if (given === null) return null;
    const name = cleanName(given);
    if (name) {
      try { localStorage.setItem(ACK_NAME_KEY, name); } catch { /* storage off */ }
      return name;
    }
  }
}

/** Acknowledges `ev` as the remembered name; resolves to the event as the server answers it. */
export async function acknowledge(ev) {
  const by = askName();
  if (!by) return null;
  const res = await fetchWithToken(`/api/events/${encodeURIComponent(ev.id)}/ack`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ by }),
  }, 'Acknowledging an alert needs the token.');
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error ?? `acknowledging failed (${res.status})`);
  return body;
}

/** The marks of `ev`: a red "long lie" badge, "acknowledged by X at T", and an Acknowledge button
 * while it needs one (`onAcked` gets the event as the server answers). */
export function ackMarks(ev, onAcked = () => {}) {
  const out = [];
  if (ev.long_lie) out.push(el('span', { class: 'badge-long-lie', title: 'Still down long after the fall', text: 'long lie' }));
  const label = ackLabel(ev);
  if (label) out.push(el('span', { class: 'ack-by', title: ev.ack_note ?? '', text: label }));
  if (needsAck(ev)) {
    const button = el('button', { type: 'button', class: 'ack-button operator-only', text: 'Acknowledge' });
    button.addEventListener('click', async (e) => {
      e.stopPropagation();
      button.disabled = true;
      try {
        const acked = await acknowledge(ev);
        if (acked) onAcked(acked);
      } catch (err) {
        button.title = err.message;
      } finally {
        button.disabled = false;
      }
    });
    button.addEventListener('keydown', (e) => e.stopPropagation());
    out.push(button);
  }
  return out;
}
