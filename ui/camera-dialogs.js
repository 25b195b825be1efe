// Adding and removing cameras: the add form (with the field the server named marked) and the
// remove confirmation.

import { api } from './api.js';
import { $, toast } from './dom.js';
import { addOrUpdate, refreshSoon, removeLocal } from './grid.js';

const FIELDS = ['camera_id', 'source_type', 'source', 'jpeg_quality', 'resize_width', 'loop_video', 'ai_enabled'];

let removing = null; // the camera the remove dialog asks about

function showFormError(sel, message) {
  const el = $(sel);
  el.hidden = !message;
  el.textContent = message || '';
}

export function openAdd() {
  const dialog = $('#add-dialog');
  const form = $('#add-form');
  form.reset();
  showFormError('#add-error', null);
  for (const el of form.elements) el.removeAttribute?.('aria-invalid');
  dialog.showModal();
  form.elements.camera_id.focus();
}

/** The POST /api/cameras body from the add form. */
function addBody(f) {
  const body = {
    camera_id: f.camera_id.value.trim(),
    source: f.source.value.trim(),
    source_type: f.source_type.value,
    loop_video: f.loop_video.checked,
    ai_enabled: f.ai_enabled.checked,
  };
  if (f.jpeg_quality.value !== '') body.jpeg_quality = Number(f.jpeg_quality.value);
  if (f.resize_width.value !== '') body.resize_width = Number(f.resize_width.value);
  return body;
}

async function submitAdd(ev) {
  ev.preventDefault();
  const form = ev.target;
  const f = form.elements;
  const body = addBody(f);
  for (const el of form.elements) el.removeAttribute?.('aria-invalid');
  showFormError('#add-error', null);
  const submit = $('#add-submit');
  submit.disabled = true;
  try {
    const status = await api('POST', '/api/cameras', body);
    $('#add-dialog').close();
    toast(`Added ${body.camera_id}`);
    if (status?.camera_id) addOrUpdate(status);
    refreshSoon();
  } catch (e) {
    showFormError('#add-error', e.message);
    // Point at the field the server named, if it named one.
    const field = FIELDS.find((name) => e.message.includes(name));
    if (field) {
      f[field].setAttribute('aria-invalid', 'true');
      f[field].focus();
    }
  } finally {
    submit.disabled = false;
  }
}

export function confirmRemove(id) {
  removing = id;
  $('#remove-name').textContent = id;
  showFormError('#remove-error', null);
  $('#remove-dialog').showModal();
  $('#remove-dialog button[data-close]').focus();
}

async function submitRemove(ev) {
  ev.preventDefault();
  const id = removing;
  if (!id) return;
  const button = $('#remove-confirm');
  button.disabled = true;
  try {
    await api('DELETE', `/api/cameras/${encodeURIComponent(id)}`);
    $('#remove-dialog').close();
    removing = null;
    removeLocal(id);
    toast(`Removed ${id}`);
    refreshSoon();
  } catch (e) {
    if (e.status === 404) {
      $('#remove-dialog').close();
      removeLocal(id);
    } else {
      showFormError('#remove-error', e.message);
    }
  } finally {
    button.disabled = false;
  }
}

export function initCameraDialogs() {
  $('#add-camera-btn').addEventListener('click', openAdd);
  $('#add-form').addEventListener('submit', submitAdd);
  $('#remove-dialog form').addEventListener('submit', submitRemove);
}
