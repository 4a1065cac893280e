// The drawing surface: image, mask overlays and prompt markers on one <canvas>, under a zoom/pan
// view. Overlays are pre-rendered at image resolution into offscreen canvases (rebuilt only when
// their masks change) so redraws during zoom, pan and pointer moves are a few drawImage calls.

import { backingSize, backingTransform, fitView, imageToCanvas } from "./geometry.js";
import { paintOverlay } from "./maskops.js";

const POSITIVE = "#22c55e";
const NEGATIVE = "#ef4444";
const AMBER = [251, 191, 36];
// Proposals (waiting for accept / reject / fix): amber-and-black dashed outline, lighter fill; the
// selected one white-and-amber, and it pulses (unless the user asked for reduced motion).
const PROPOSAL_COLORS = [AMBER, [17, 17, 17]];
const SELECTED_PROPOSAL_COLORS = [[255, 255, 255], AMBER];
const PULSE_PERIOD_MS = 1200;
const PULSE_FRAME_MS = 80;

export class CanvasView {
  constructor(canvas, { devicePixelRatio = () => window.devicePixelRatio || 1 } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.dprSource = devicePixelRatio;
    this.dpr = devicePixelRatio();
    this.image = null;
    this.width = 0;
    this.height = 0;
    this.view = null;
    this.hidden = false;
    this.storedLayer = null;
    this.draftLayer = null;
    this.markers = { points: [], box: null, dragBox: null, path: null, brush: null };
    this.pulse = null; // {canvas, x, y}: the selected proposal, drawn over the stored layer
    this._pulseTimer = 0;
    this.reducedMotion = Boolean(window.matchMedia?.("(prefers-reduced-motion: reduce)").matches);
    this._frame = 0;
    this.cssWidth = 1;
    this.cssHeight = 1;
    this._observer = new ResizeObserver(() => this.resize());
    this._observer.observe(canvas.parentElement ?? canvas);
    this.resize();
  }

  setImage(image, width, height) {
    this._draftRgba = null;
    this._draftBounds = null;
    this.image = image;
    this.width = width;
    this.height = height;
    this.storedLayer = this._layer();
    this.draftLayer = this._layer();
    this.fit();
  }

  fit() {
    if (!this.width) return;
    this.view = fitView(this.width, this.height, this.cssWidth, this.cssHeight);
    this._autoFit = true; // keep fitting on window resizes until the user zooms or pans
    this.requestRender();
  }

  setView(view) {
    this.view = view;
    this._autoFit = false;
    this.requestRender();
  }

  resize() {
    const rect = this.canvas.getBoundingClientRect();
    const dpr = this.dprSource();
    const changed = Math.abs(rect.width - this.cssWidth) > 0.5 || Math.abs(rect.height - this.cssHeight) > 0.5;
    this.dpr = dpr;
    this.cssWidth = Math.max(1, rect.width);
    this.cssHeight = Math.max(1, rect.height);
    const size = backingSize(this.cssWidth, this.cssHeight, dpr);
    if (this.canvas.width !== size.width) this.canvas.width = size.width;
    if (this.canvas.height !== size.height) this.canvas.height = size.height;
    if (changed && this.width && this._autoFit !== false) this.fit();
    this.requestRender();
  }

  /** masks: [{mask: Uint8Array, rgb: [r,g,b], selected: bool, proposed: bool, bounds}] painted in order. */
  setStoredMasks(masks) {
    if (!this.width) return;
    const rgba = new Uint8ClampedArray(this.width * this.height * 4);
    // Dashes a few screen pixels long at the fitted zoom, whatever the image size.
    const length = Math.max(3, Math.round(Math.max(this.width, this.height) / 120));
    for (const m of masks) {
      if (m.bounds === null) continue; // empty mask
      const alpha = m.selected ? 0.6 : m.proposed ? 0.3 : 0.4;
      paintOverlay(rgba, m.mask, this.width, this.height, m.rgb, alpha, true, m.bounds,
        m.proposed ? { length, colors: PROPOSAL_COLORS } : null);
    }
    for (const m of masks) {
      if (m.selected && m.bounds !== null) {
        paintOverlay(rgba, m.mask, this.width, this.height, [255, 255, 255], 0, true, m.bounds,
          m.proposed ? { length, colors: SELECTED_PROPOSAL_COLORS } : null);
      }
    }
    this._put(this.storedLayer, rgba);
    this._setPulse(masks.find((m) => m.selected && m.proposed && m.bounds !== null) ?? null);
    this.requestRender();
  }

  /** The selected proposal as a white cut-out of its bounding box, faded in and out by render(). */
  _setPulse(m) {
    clearTimeout(this._pulseTimer);
    this._pulseTimer = 0;
    if (!m) {
      this.pulse = null;
      return;
    }
    const [x0, y0, x1, y1] = m.bounds;
    const w = x1 - x0 + 1;
    const h = y1 - y0 + 1;
    const rgba = new Uint8ClampedArray(w * h * 4);
    for (let y = 0; y < h; y++) {
      const row = (y + y0) * this.width + x0;
      for (let x = 0; x < w; x++) {
        if (m.mask[row + x]) rgba.fill(255, (y * w + x) * 4, (y * w + x) * 4 + 4);
      }
    }
    const canvas = document.createElement("canvas");
    canvas.width = w;
    canvas.height = h;
    canvas.getContext("2d").putImageData(new ImageData(rgba, w, h), 0, 0);
    this.pulse = { canvas, x: x0, y: y0, bounds: m.bounds };
  }

  /**
   * The mask being made. Called after every model answer, so it reuses one RGBA buffer and only
   * clears and repaints the union of the old and new mask bounds ([x0, y0, x1, y1] or null).
   */
  setDraftMask(mask, rgb, bounds = undefined) {
    if (!this.width) return;
    const { width, height } = this;
    if (!this._draftRgba) this._draftRgba = new Uint8ClampedArray(width * height * 4);
    const full = [0, 0, width - 1, height - 1];
    const next = mask ? (bounds === undefined ? full : bounds) : null;
    const previous = this._draftBounds ?? null;
    const dirty = union(previous, next);
    if (!dirty) return;
    const rgba = this._draftRgba;
    for (let y = dirty[1]; y <= dirty[3]; y++) rgba.fill(0, (y * width + dirty[0]) * 4, (y * width + dirty[2] + 1) * 4);
    if (mask && next) paintOverlay(rgba, mask, width, height, rgb, 0.5, true, next);
    this._draftBounds = next;
    // Also forget brush previews drawn straight onto the layer: clear it where they may be.
    const ctx = this.draftLayer.getContext("2d");
    const image = new ImageData(rgba, width, height);
    if (this._previewDirty) {
      ctx.putImageData(image, 0, 0);
      this._previewDirty = false;
    } else {
      ctx.putImageData(image, 0, 0, dirty[0], dirty[1], dirty[2] - dirty[0] + 1, dirty[3] - dirty[1] + 1);
    }
    this.requestRender();
  }

  /** Live brush/eraser feedback on the draft layer before the stroke is committed to the mask. */
  strokePreview(a, b, radius, erase, rgb) {
    this._previewDirty = true;
    const ctx = this.draftLayer.getContext("2d");
    ctx.save();
    ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
    ctx.strokeStyle = erase ? "rgba(0,0,0,1)" : `rgba(${rgb[0]},${rgb[1]},${rgb[2]},0.5)`;
    ctx.lineWidth = radius * 2;
    ctx.lineCap = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    ctx.restore();
    this.requestRender();
  }

  setMarkers(markers) {
    Object.assign(this.markers, markers);
    this.requestRender();
  }

  setHidden(hidden) {
    this.hidden = hidden;
    this.requestRender();
  }

  requestRender() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  render() {
    const { ctx, dpr } = this;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.image || !this.view) return;
    ctx.setTransform(...backingTransform(this.view, dpr));
    ctx.imageSmoothingEnabled = this.view.scale * dpr < 2;
    ctx.drawImage(this.image, 0, 0, this.width, this.height);
    ctx.imageSmoothingEnabled = false;
    if (!this.hidden) {
      ctx.drawImage(this.storedLayer, 0, 0);
      if (this.pulse) this._drawPulse();
    }
    ctx.drawImage(this.draftLayer, 0, 0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    this._drawMarkers();
  }

  _drawPulse() {
    const { ctx } = this;
    const phase = this.reducedMotion ? 0.5 : 0.5 + 0.5 * Math.sin((2 * Math.PI * performance.now()) / PULSE_PERIOD_MS);
    ctx.globalAlpha = 0.08 + 0.3 * phase;
    ctx.drawImage(this.pulse.canvas, this.pulse.x, this.pulse.y);
    ctx.globalAlpha = 1;
    if (!this.reducedMotion && !this._pulseTimer) {
      // A few frames a second is enough for a pulse, and leaves the CPU to the annotator.
      this._pulseTimer = setTimeout(() => {
        this._pulseTimer = 0;
        if (this.pulse) this.requestRender();
      }, PULSE_FRAME_MS);
    }
  }

  /** Marching ants around the selected proposal's box: visible at any zoom and on any image. */
  _drawProposalBox() {
    const { ctx } = this;
    const [x0, y0, x1, y1] = this.pulse.bounds;
    const a = imageToCanvas({ x: x0, y: y0 }, this.view);
    const b = imageToCanvas({ x: x1 + 1, y: y1 + 1 }, this.view);
    const pad = 4;
    const rect = [a.x - pad, a.y - pad, b.x - a.x + 2 * pad, b.y - a.y + 2 * pad];
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(0,0,0,0.6)";
    ctx.strokeRect(...rect);
    ctx.setLineDash([7, 5]);
    ctx.lineDashOffset = this.reducedMotion ? 0 : -((performance.now() / 50) % 12);
    ctx.lineWidth = 2;
    ctx.strokeStyle = `rgb(${AMBER.join(",")})`;
    ctx.strokeRect(...rect);
    ctx.setLineDash([]);
    ctx.lineDashOffset = 0;
  }

  _drawMarkers() {
    const { ctx } = this;
    const m = this.markers;
    if (this.pulse && !this.hidden) this._drawProposalBox();
    for (const box of [m.box, m.dragBox]) {
      if (!box) continue;
      const a = imageToCanvas({ x: box[0], y: box[1] }, this.view);
      const b = imageToCanvas({ x: box[2], y: box[3] }, this.view);
      ctx.setLineDash(box === m.dragBox ? [6, 4] : []);
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#facc15";
      ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
    }
    ctx.setLineDash([]);
    if (m.path && m.path.points.length > 1) {
      ctx.beginPath();
      m.path.points.forEach((p, i) => {
        const c = imageToCanvas(p, this.view);
        if (i) ctx.lineTo(c.x, c.y);
        else ctx.moveTo(c.x, c.y);
      });
      ctx.lineWidth = 3;
      ctx.lineCap = "round";
      ctx.strokeStyle = m.path.label ? POSITIVE : NEGATIVE;
      ctx.stroke();
    }
    for (const p of m.points) {
      const c = imageToCanvas(p, this.view);
      ctx.beginPath();
      ctx.arc(c.x, c.y, 6, 0, Math.PI * 2);
      ctx.fillStyle = p.label ? POSITIVE : NEGATIVE;
      ctx.fill();
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#fff";
      ctx.stroke();
      ctx.beginPath();
      ctx.moveTo(c.x - 3, c.y);
      ctx.lineTo(c.x + 3, c.y);
      if (p.label) {
        ctx.moveTo(c.x, c.y - 3);
        ctx.lineTo(c.x, c.y + 3);
      }
      ctx.stroke();
    }
    if (m.brush) {
      const c = imageToCanvas(m.brush, this.view);
      ctx.beginPath();
      ctx.arc(c.x, c.y, Math.max(1, m.brush.radius * this.view.scale), 0, Math.PI * 2);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = m.brush.erase ? NEGATIVE : "#fff";
      ctx.stroke();
    }
  }

  _layer() {
    const layer = document.createElement("canvas");
    layer.width = this.width;
    layer.height = this.height;
    return layer;
  }

  _put(layer, rgba) {
    layer.getContext("2d").putImageData(new ImageData(rgba, this.width, this.height), 0, 0);
  }
}

/** Smallest [x0, y0, x1, y1] containing both boxes (either may be null). */
function union(a, b) {
  if (!a) return b;
  if (!b) return a;
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

/** Whether two stored-mask layer lists draw the same picture (masks decoded once per RLE). */
export function sameLayers(a, b) {
  return a.length === b.length && a.every((x, i) => {
    const y = b[i];
    return x.mask === y.mask && x.selected === y.selected && x.proposed === y.proposed && x.bounds === y.bounds &&
      x.rgb.join() === y.rgb.join();
  });
}
