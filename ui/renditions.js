// Which rendition a tile asks the server for. The server's ladder below the full frame: a grid tile
// asks for the smallest step at least as wide as the tile's picture in device pixels (a tile wider
// than 640 still gets 640: full size is for the focused camera), at GRID_QUALITY; with the data
// saver on, always 320 at SAVER_QUALITY. The focused (or fullscreen) camera gets the full frame at
// the camera's own quality (width and quality null).

export const LADDER = [320, 640];
export const GRID_QUALITY = 60;
export const SAVER_QUALITY = 40;

/**
 * `large`: focused or fullscreen; `cssWidth`: the picture's width in CSS pixels; `dpr`: device
 * pixels per CSS pixel. `overlay` is 'client' (pictures without drawings) or 'server'.
 */
export function chooseRendition({ large = false, saver = false, clientOverlay = false, cssWidth = 0, dpr = 1 }) {
  const overlay = clientOverlay ? 'client' : 'server';
  if (large) return { width: null, quality: null, overlay };
  if (saver) return { width: LADDER[0], quality: SAVER_QUALITY, overlay };
  const px = (cssWidth || 0) * (dpr || 1);
  const width = LADDER.find((w) => px <= w) ?? LADDER[LADDER.length - 1];
  return { width, quality: GRID_QUALITY, overlay };
}

/** The stream's query for a rendition at `fps` ('' = the server's default), without the token. */
export function streamQuery(rendition, fps) {
  const q = new URLSearchParams();
  if (fps) q.set('fps', fps);
  q.set('format', 'binary');
  if (rendition.width) q.set('width', String(rendition.width));
  if (rendition.quality) q.set('quality', String(rendition.quality));
  if (rendition.overlay === 'client') q.set('overlay', 'client');
  return q.toString();
}
