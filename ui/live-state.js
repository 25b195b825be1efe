// The live page's shared state: its tiles, the focused camera, and what the server said about
// itself (its models, and how it draws poses).

export const tiles = new Map(); // camera id → Tile, in the server's order
export const view = { focus: null };
export const server = {
  engine: null, // GET /api/engine
  overlay: null, // GET /api/overlay: the skeleton and colours the browser draws with
};

export const visible = () => document.visibilityState !== 'hidden';
