// Poses drawn by the browser, the way the server draws them on a rendition (src/inference/draw.rs,
// after scaling the detections to the rendition's size): a box with "person 0.87" above it, limbs
// coloured by body part, dots on the confident keypoints, lines one pixel thick per 400 of the
// picture's longer side (rounded up), all scaled with the picture as it is shown and never thinner
// than one device pixel. The skeleton, colours and confidence threshold are the server's own, from
// GET /api/overlay (`style`): { skeleton, limb_colors, keypoint_color, keypoint_min_conf,
// person_color, class_colors }.

/** The colour of a detection: the person colour for people with keypoints, the class's for objects. */
export function detectionColor(d, style) {
  if (Array.isArray(d?.keypoints) && d.keypoints.length) return style.person_color;
  const id = Number.isInteger(d?.class_id) ? d.class_id : 0;
  return style.class_colors[id % style.class_colors.length];
}

/** Sizes the canvas's backing store to its CSS box in device pixels, and clears it. */
function clearCanvas(canvas, dpr) {
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

/** One person's limbs and confident keypoints (`k`: frame pixels → picture pixels). */
function drawSkeleton(ctx, kp, k, style, t, s) {
  const visible = (i) => i < kp.length && kp[i]?.[2] >= style.keypoint_min_conf;
  const at = (i) => [Math.round(kp[i][0] * k), Math.round(kp[i][1] * k)];
  style.skeleton.forEach(([a, b], limb) => {
    if (!visible(a) || !visible(b)) return;
    ctx.strokeStyle = style.limb_colors[limb];
    ctx.beginPath();
    ctx.moveTo(...at(a));
    ctx.lineTo(...at(b));
    ctx.stroke();
  });
  ctx.fillStyle = style.keypoint_color;
  const r = Math.max(t + 2, 1.5 / s);
  for (let i = 0; i < kp.length; i++) {
    if (!visible(i)) continue;
    ctx.beginPath();
    ctx.arc(...at(i), r, 0, 2 * Math.PI);
    ctx.fill();
  }
}

/** One detection's box, label and skeleton, as `layers` ({ skeletons, boxes, labels }) say. */
function drawDetection(ctx, d, k, layers, style, t, s) {
  const [x1, y1, x2, y2] = Array.isArray(d?.bbox) ? d.bbox.map((v) => Math.trunc(v * k)) : [];
  const boxed = [x1, y1, x2, y2].every(Number.isFinite);
  const color = detectionColor(d, style);
  if (layers.boxes && boxed) {
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, Math.max(1, x2 - x1), Math.max(1, y2 - y1));
  }
  if (layers.labels && boxed && Number.isFinite(d.score)) {
    ctx.fillStyle = color;
    ctx.fillText(`${typeof d.class === 'string' ? d.class : 'person'} ${d.score.toFixed(2)}`, x1, Math.max(y1 - 4, 10));
  }
  const kp = Array.isArray(d?.keypoints) ? d.keypoints : [];
  if (layers.skeletons && kp.length) drawSkeleton(ctx, kp, k, style, t, s);
}

/**
 * Draws the frame's detections (in frame pixels: metadata.width × height) on the canvas, as the
 * server would on the picture shown (metadata.rendition: its size), letterboxed as the <img> under
 * the canvas is (object-fit: contain). Returns how many detections it drew (none without a style).
 */
export function drawPoses(canvas, m, layers, style, dpr = globalThis.devicePixelRatio || 1) {
  const { ctx, w, h } = clearCanvas(canvas, dpr);
  const fw = m?.width;
  const fh = m?.height;
  const dets = Array.isArray(m?.detections) ? m.detections : [];
  if (!style || !(fw > 0 && fh > 0) || !dets.length || !(layers.skeletons || layers.boxes || layers.labels)) return 0;
  // The picture's pixels (the rendition), and frame pixels → picture pixels → canvas pixels.
  const pw = m.rendition?.width > 0 ? m.rendition.width : fw;
  const ph = m.rendition?.height > 0 ? m.rendition.height : fh;
  const k = pw / fw;
  const s = Math.min(w / pw, h / ph);
  ctx.setTransform(s, 0, 0, s, (w - pw * s) / 2, (h - ph * s) / 2);
  const t = Math.max(1, Math.ceil(Math.max(pw, ph) / 400));
  ctx.lineWidth = Math.max(t, 1 / s);
  ctx.lineCap = 'round';
  ctx.font = `${11 * t}px sans-serif`; // about as tall and wide as Hershey simplex at 0.4 × thickness
  ctx.textBaseline = 'alphabetic';
  for (const d of dets) drawDetection(ctx, d, k, layers, style, t, s);
  return dets.length;
}
