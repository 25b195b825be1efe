// A frame's motion boxes over the picture, as SVG rects in frame pixels (the SVG letterboxes like
// the image).

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Shows `m.motion.boxes` in `svg`; hides it when `m` is null. */
export function drawMotion(svg, m) {
  const boxes = Array.isArray(m?.motion?.boxes) ? m.motion.boxes : [];
  svg.toggleAttribute('hidden', !m); // an SVG element has no .hidden property
  if (!m) return;
  if (m.width > 0 && m.height > 0) svg.setAttribute('viewBox', `0 0 ${m.width} ${m.height}`);
  while (svg.childElementCount > boxes.length) svg.lastElementChild.remove();
  while (svg.childElementCount < boxes.length) svg.appendChild(document.createElementNS(SVG_NS, 'rect'));
  boxes.forEach(([x1, y1, x2, y2], i) => {
    const r = svg.children[i];
    r.setAttribute('x', x1);
    r.setAttribute('y', y1);
    r.setAttribute('width', Math.max(1, x2 - x1));
    r.setAttribute('height', Math.max(1, y2 - y1));
  });
}
