// A tile's model switches: one per model the server has loaded (GET /api/engine), checked where
// the camera runs it; switching one PATCHes the camera's `models`, live.

/** The models a camera runs (a status without `models` runs the pose model). */
export function modelsOf(status) {
  return Array.isArray(status?.models) ? status.models : ['pose'];
}

/** The camera's models with `name` switched on or off. */
export function withModel(current, name, on) {
  return on ? [...new Set([...current, name])] : current.filter((m) => m !== name);
}

/** Builds (when the loaded models changed) and checks the tile's model switches. */
export function renderModels(tile, engine) {
  // The fall model is asked by the events where someone may be down, not switched per camera.
  const loaded = (Array.isArray(engine?.models) ? engine.models : []).filter((m) => !m.fall_model);
  const names = loaded.map((m) => m.name);
  if (names.join('\n') !== [...tile.modelBoxes.keys()].join('\n')) {
    tile.modelBoxes.clear();
    tile.modelsEl.replaceChildren(...loaded.map((m) => {
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.className = 'c-model';
      box.dataset.model = m.name;
      box.setAttribute('aria-label', `${m.name} model for ${tile.id}`);
      box.addEventListener('change', () => tile.toggleModel(m.name, box.checked));
      tile.modelBoxes.set(m.name, box);
      const label = document.createElement('label');
      label.className = 'check model';
      label.title = `${m.task === 'detect' ? `${m.classes} classes` : 'people and keypoints'} · ${m.description ?? ''}`;
      label.append(box, ` ${m.name}`);
      return label;
    }));
  }
  const on = new Set(modelsOf(tile.status));
  for (const [name, box] of tile.modelBoxes) {
    if (!tile.busy.has(`model:${name}`)) box.checked = on.has(name);
  }
  tile.modelsEl.hidden = tile.modelBoxes.size < 2; // one model: the AI switch says it all
}
