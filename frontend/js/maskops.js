// Pixel work on row-major 0/1 masks: brush and eraser strokes, scribble → prompt points, and the
// coloured overlay (fill + outline) drawn over the image. Pure functions, no DOM.

/** Set (value 1) or clear (value 0) a disc of radius r (image px) centred at (cx, cy). In place. */
export function paintDisc(mask, width, height, cx, cy, radius, value) {
  const r = Math.max(0.5, radius);
  const y0 = Math.max(0, Math.floor(cy - r));
  const y1 = Math.min(height - 1, Math.ceil(cy + r));
  for (let y = y0; y <= y1; y++) {
    const dy = y + 0.5 - cy;
    const half = Math.sqrt(Math.max(0, r * r - dy * dy));
    const x0 = Math.max(0, Math.ceil(cx - half - 0.5));
    const x1 = Math.min(width - 1, Math.floor(cx + half - 0.5));
    if (x1 >= x0) mask.fill(value, y * width + x0, y * width + x1 + 1);
  }
  return mask;
}

/** Paint discs along the segment a→b, close enough that the stroke has no gaps. In place. */
export function paintStroke(mask, width, height, a, b, radius, value) {
  const length = Math.hypot(b.x - a.x, b.y - a.y);
  const step = Math.max(0.5, radius / 2);
  const n = Math.max(1, Math.ceil(length / step));
  for (let i = 0; i <= n; i++) {
    const t = i / n;
    paintDisc(mask, width, height, a.x + (b.x - a.x) * t, a.y + (b.y - a.y) * t, radius, value);
  }
  return mask;
}

/**
 * A scribble (polyline in image px) → at most `maxPoints` prompt points spread evenly along its
 * length (SAM takes points, not strokes; a few well-spread points carry the intent).
 */
export function samplePath(path, maxPoints = 8, minSpacing = 4) {
  if (!path.length) return [];
  const lengths = [0];
  for (let i = 1; i < path.length; i++) {
    lengths.push(lengths[i - 1] + Math.hypot(path[i].x - path[i - 1].x, path[i].y - path[i - 1].y));
  }
  const total = lengths[lengths.length - 1];
  const count = Math.max(1, Math.min(maxPoints, Math.floor(total / minSpacing) + 1));
  if (count === 1) return [{ x: path[0].x, y: path[0].y }];
  const out = [];
  let segment = 1;
  for (let k = 0; k < count; k++) {
    const target = (total * k) / (count - 1);
    while (segment < path.length - 1 && lengths[segment] < target) segment++;
    const span = lengths[segment] - lengths[segment - 1] || 1;
    const t = Math.min(1, Math.max(0, (target - lengths[segment - 1]) / span));
    const p = path[segment - 1];
    const q = path[segment];
    out.push({ x: p.x + (q.x - p.x) * t, y: p.y + (q.y - p.y) * t });
  }
  return out;
}

/** "#rrggbb" / "#rgb" → [r, g, b]; a clear error for anything else. */
export function parseColor(color) {
  const m = /^#?([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(String(color ?? "").trim());
  if (!m) throw new TypeError(`colour must be #rgb or #rrggbb, got ${JSON.stringify(color)}`);
  const hex = m[1].length === 3 ? [...m[1]].map((c) => c + c).join("") : m[1];
  return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
  "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"];

/** A stable, distinct colour for masks without a label colour. */
export function paletteColor(index) {
  return PALETTE[((index % PALETTE.length) + PALETTE.length) % PALETTE.length];
}

/**
 * Paint a mask into an RGBA buffer (ImageData.data layout, same size): the interior tinted with
 * `fillAlpha`, boundary pixels (a 4-neighbour outside the mask) opaque so edges read clearly.
 * Later calls paint over earlier ones, so one buffer holds many masks. `bounds` ([x0, y0, x1, y1],
 * inclusive) limits the work to the mask's box, which matters with hundreds of automatic masks.
 * `dash` ({length, colors: [rgb, rgb]}) draws the outline in two alternating colours, in square
 * cells of `length` image pixels: the "dashed" look of a proposal still waiting for a decision.
 * (Two colours rather than gaps, so no stretch of the outline disappears whatever its angle.)
 */
export function paintOverlay(rgba, mask, width, height, rgb, fillAlpha = 0.45, outline = true, bounds = null,
  dash = null) {
  const [r, g, b] = rgb;
  const fill = Math.round(fillAlpha * 255);
  const [bx0, by0, bx1, by1] = bounds ?? [0, 0, width - 1, height - 1];
  const dashLength = dash ? Math.max(1, Math.round(dash.length)) : 0;
  for (let y = Math.max(0, by0); y <= Math.min(height - 1, by1); y++) {
    const row = y * width;
    const cellY = dashLength ? Math.floor(y / dashLength) : 0;
    for (let x = Math.max(0, bx0); x <= Math.min(width - 1, bx1); x++) {
      const i = row + x;
      if (!mask[i]) continue;
      const edge = outline && (x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
        !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width]);
      const o = i * 4;
      if (edge && dashLength) {
        const color = dash.colors[(Math.floor(x / dashLength) + cellY) & 1];
        rgba[o] = color[0];
        rgba[o + 1] = color[1];
        rgba[o + 2] = color[2];
        rgba[o + 3] = 255;
        continue;
      }
      rgba[o] = r;
      rgba[o + 1] = g;
      rgba[o + 2] = b;
      rgba[o + 3] = edge ? 255 : Math.max(rgba[o + 3], fill);
    }
  }
  return rgba;
}
