// Canvas ↔ image coordinates under zoom, pan and devicePixelRatio.
//
// Three frames: client (MouseEvent.clientX/Y), canvas CSS pixels (relative to the canvas'
// top-left corner, what layout and the view transform use) and image pixels (continuous: pixel
// (i, j) covers [i, i+1) × [j, j+1), as SAM's point prompts expect). The backing store of the
// canvas is CSS size × devicePixelRatio, so drawing uses `backingTransform`, input uses the CSS
// frame, and nothing else needs to know about the ratio.
//
// A view is a plain immutable object {scale, tx, ty}: canvasCss = image * scale + t.

export const MIN_SCALE = 0.02;
export const MAX_SCALE = 64;

export function makeView(scale = 1, tx = 0, ty = 0) {
  if (!(scale > 0) || !Number.isFinite(scale)) throw new RangeError(`view scale must be positive, got ${scale}`);
  return Object.freeze({ scale, tx, ty });
}

/** Client coordinates → canvas CSS coordinates, given canvas.getBoundingClientRect(). */
export function clientToCanvas(clientX, clientY, rect) {
  return { x: clientX - rect.left, y: clientY - rect.top };
}

export function canvasToClient(point, rect) {
  return { x: point.x + rect.left, y: point.y + rect.top };
}

export function canvasToImage(point, view) {
  return { x: (point.x - view.tx) / view.scale, y: (point.y - view.ty) / view.scale };
}

export function imageToCanvas(point, view) {
  return { x: point.x * view.scale + view.tx, y: point.y * view.scale + view.ty };
}

/** Canvas CSS → backing-store (device) pixels. */
export function canvasToBacking(point, dpr = 1) {
  return { x: point.x * dpr, y: point.y * dpr };
}

/** Matrix [a, b, c, d, e, f] for ctx.setTransform so that drawing in image pixels lands right. */
export function backingTransform(view, dpr = 1) {
  return [view.scale * dpr, 0, 0, view.scale * dpr, view.tx * dpr, view.ty * dpr];
}

/** Backing-store size for a canvas of the given CSS size (integers, at least 1). */
export function backingSize(cssWidth, cssHeight, dpr = 1) {
  return { width: Math.max(1, Math.round(cssWidth * dpr)), height: Math.max(1, Math.round(cssHeight * dpr)) };
}

/** The integer pixel under an image point, or null when it lies outside the image. */
export function imagePixel(point, width, height) {
  const x = Math.floor(point.x);
  const y = Math.floor(point.y);
  if (x < 0 || y < 0 || x >= width || y >= height) return null;
  return { x, y };
}

export function isInsideImage(point, width, height) {
  return point.x >= 0 && point.y >= 0 && point.x < width && point.y < height;
}

/** Clamp an image point into [0, width] × [0, height] (continuous coordinates). */
export function clampToImage(point, width, height) {
  return { x: Math.min(Math.max(point.x, 0), width), y: Math.min(Math.max(point.y, 0), height) };
}

/** Largest view that shows the whole image centred in the canvas, with a margin in CSS pixels. */
export function fitView(imageWidth, imageHeight, canvasWidth, canvasHeight, margin = 16) {
  const availableW = Math.max(1, canvasWidth - 2 * margin);
  const availableH = Math.max(1, canvasHeight - 2 * margin);
  const scale = clampScale(Math.min(availableW / imageWidth, availableH / imageHeight));
  return makeView(scale, (canvasWidth - imageWidth * scale) / 2, (canvasHeight - imageHeight * scale) / 2);
}

/** Zoom by `factor` keeping the image point under `anchor` (canvas CSS) where it is. */
export function zoomAt(view, anchor, factor, minScale = MIN_SCALE, maxScale = MAX_SCALE) {
  const scale = clampScale(view.scale * factor, minScale, maxScale);
  const under = canvasToImage(anchor, view);
  return makeView(scale, anchor.x - under.x * scale, anchor.y - under.y * scale);
}

/** Wheel delta → zoom factor: smooth for trackpads, about 1.2× per mouse-wheel notch. */
export function wheelZoomFactor(deltaY, deltaMode = 0) {
  const pixels = deltaMode === 1 ? deltaY * 16 : deltaMode === 2 ? deltaY * 400 : deltaY;
  return Math.exp(-pixels * 0.0018);
}

export function panBy(view, dx, dy) {
  return makeView(view.scale, view.tx + dx, view.ty + dy);
}

/**
 * Two corners of a drag (image coordinates, any order) → XYXY box [x0, y0, x1, y1] with
 * x0 <= x1, y0 <= y1, clamped to the image. Null when the box is empty after clamping.
 */
export function normalizeBox(a, b, width, height) {
  const p = clampToImage(a, width, height);
  const q = clampToImage(b, width, height);
  const box = [Math.min(p.x, q.x), Math.min(p.y, q.y), Math.max(p.x, q.x), Math.max(p.y, q.y)];
  if (box[2] - box[0] <= 0 || box[3] - box[1] <= 0) return null;
  return box;
}

/** XYXY → XYWH (stored data and exports use XYWH; XYXY is model input only). */
export function xyxyToXywh(box) {
  return [box[0], box[1], box[2] - box[0], box[3] - box[1]];
}

/** Distance in canvas CSS pixels between two client points: decides click vs drag. */
export function dragDistance(a, b) {
  return Math.hypot(b.x - a.x, b.y - a.y);
}

function clampScale(scale, minScale = MIN_SCALE, maxScale = MAX_SCALE) {
  return Math.min(Math.max(scale, minScale), maxScale);
}

/** Image coordinates as the page sends them: two decimals are finer than any prompt needs. */
export function round2(v) {
  return Math.round(v * 100) / 100;
}
