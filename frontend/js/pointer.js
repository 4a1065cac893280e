// The pointer on the canvas: points and boxes, scribbles, brush and eraser strokes, Alt+click
// selection, pan and wheel zoom. Turns gestures into draft steps; the page does the rest.

import { canvasToImage, clientToCanvas, dragDistance, imagePixel, isInsideImage, normalizeBox, panBy,
  wheelZoomFactor, zoomAt } from "./geometry.js";
import { paintStroke, samplePath } from "./maskops.js";
import { $ } from "./page.js";
import { encodeRle } from "./rle.js";

export const DRAFT_RGB = [0, 229, 255];
const DRAG_THRESHOLD_PX = 4;
export const TOOLS = Object.freeze(["prompt", "scribble", "brush", "eraser"]);

/**
 * What a press starts: "pan" (middle button, or Space + left), "select" (Alt + left), "brush"
 * (left, with the brush or eraser), "scribble", "prompt"; null for a press the tool ignores.
 */
export function pointerMode({ button, altKey }, tool, spaceDown) {
  if (button === 1 || (spaceDown && button === 0)) return "pan";
  if (altKey && button === 0) return "select";
  if (tool === "brush" || tool === "eraser") return button === 0 ? "brush" : null;
  if (tool === "scribble") return "scribble";
  return "prompt";
}

/** Brush radius in image pixels: one decimal, within [1, 400]. */
export function clampRadius(radius) {
  return Math.min(400, Math.max(1, Math.round(radius * 10) / 10));
}

export class PointerTools {
  /** `page`: the annotation page (canvas, view, info, history, predictor, effort, masks). */
  constructor(page) {
    this.page = page;
    this.canvas = page.canvas;
    this.view = page.view;
    this.tool = "prompt";
    this.brushRadius = 8;
    this.spaceDown = false;
    this.pointer = null; // the gesture under way
  }

  bind() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    c.addEventListener("pointermove", (e) => this.onPointerMove(e));
    c.addEventListener("pointerup", (e) => this.onPointerUp(e));
    c.addEventListener("pointercancel", () => {
      this.pointer = null;
      this.view.setMarkers({ dragBox: null, path: null });
      this.page.redrawDraft(); // over an abandoned brush preview
    });
    c.addEventListener("pointerleave", () => this.view.setMarkers({ brush: null }));
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    window.addEventListener("keyup", (e) => {
      if (e.key === " ") {
        this.spaceDown = false;
        c.classList.remove("panning");
      }
    });
  }

  /** Space held: the next left drag pans. */
  holdSpace() {
    this.spaceDown = true;
    this.canvas.classList.add("panning");
  }

  setTool(tool) {
    this.tool = tool;
    for (const button of document.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    this.canvas.dataset.tool = tool;
    if (tool !== "brush" && tool !== "eraser") this.view.setMarkers({ brush: null });
  }

  setBrushRadius(radius) {
    this.brushRadius = clampRadius(radius);
    $("brush-radius").textContent = `${Math.round(this.brushRadius)} px`;
  }

  _css(event) {
    return clientToCanvas(event.clientX, event.clientY, this.canvas.getBoundingClientRect());
  }

  onPointerDown(event) {
    if (!this.page.ready) return;
    this.canvas.focus();
    const css = this._css(event);
    const point = canvasToImage(css, this.view.view);
    const mode = pointerMode(event, this.tool, this.spaceDown);
    if (!mode) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    const negative = event.button === 2 || event.shiftKey;
    this.pointer = { mode, start: css, last: css, startImage: point, label: negative ? 0 : 1, dragging: false,
      path: [point], erase: this.tool === "eraser" };
    if (mode === "brush") {
      const { width, height } = this.page.info;
      const base = this.page.draftMask();
      this.pointer.work = base ? base.slice() : new Uint8Array(width * height);
      this.strokeTo(point, point);
    }
  }

  onPointerMove(event) {
    const css = this._css(event);
    const point = canvasToImage(css, this.view.view);
    if (this.tool === "brush" || this.tool === "eraser") {
      this.view.setMarkers({ brush: { ...point, radius: this.brushRadius, erase: this.tool === "eraser" } });
    }
    const p = this.pointer;
    if (!p) return;
    if (p.mode === "pan") {
      this.view.setView(panBy(this.view.view, css.x - p.last.x, css.y - p.last.y));
    } else if (p.mode === "prompt" && p.label === 1) {
      if (dragDistance(p.start, css) > DRAG_THRESHOLD_PX) p.dragging = true;
      if (p.dragging) {
        const { width, height } = this.page.info;
        this.view.setMarkers({ dragBox: normalizeBox(p.startImage, point, width, height) });
      }
    } else if (p.mode === "scribble") {
      p.path.push(point);
      this.view.setMarkers({ path: { points: p.path, label: p.label } });
    } else if (p.mode === "brush") {
      this.strokeTo(canvasToImage(p.last, this.view.view), point);
    }
    p.last = css;
  }

  strokeTo(a, b) {
    const { width, height } = this.page.info;
    paintStroke(this.pointer.work, width, height, a, b, this.brushRadius, this.pointer.erase ? 0 : 1);
    this.view.strokePreview(a, b, this.brushRadius, this.pointer.erase, DRAFT_RGB);
  }

  onPointerUp(event) {
    const p = this.pointer;
    if (!p) return;
    this.pointer = null;
    const point = canvasToImage(this._css(event), this.view.view);
    const { width, height } = this.page.info;
    const { history, predictor } = this.page;
    const d = history.state;
    if (p.mode === "select") {
      this.selectAt(point);
    } else if (p.mode === "prompt") {
      this.view.setMarkers({ dragBox: null });
      if (p.dragging) {
        const box = normalizeBox(p.startImage, point, width, height);
        if (box) predictor.addPrompt({ box });
      } else if (isInsideImage(p.startImage, width, height)) {
        predictor.addPrompt({ points: [...d.points, { x: p.startImage.x, y: p.startImage.y, label: p.label }] });
      }
    } else if (p.mode === "scribble") {
      this.view.setMarkers({ path: null });
      const inside = p.path.filter((q) => isInsideImage(q, width, height));
      const sampled = samplePath(inside, 8, Math.max(4, 12 / this.view.view.scale));
      if (sampled.length) predictor.addPrompt({ points: [...d.points, ...sampled.map((q) => ({ ...q, label: p.label }))] });
    } else if (p.mode === "brush") {
      this.page.effort.click();
      history.commit({ edited: encodeRle(p.work, height, width), waiting: false });
    }
  }

  /** Alt+click: select the topmost visible mask under the pointer. */
  selectAt(point) {
    const { width, height } = this.page.info;
    const pixel = imagePixel(point, width, height);
    if (!pixel) return;
    const hits = this.page.visibleMasks().filter((m) => this.page.decode(m.segmentation)[pixel.y * width + pixel.x]);
    if (hits.length) this.page.select(hits[hits.length - 1].key);
  }

  onWheel(event) {
    event.preventDefault();
    this.view.setView(zoomAt(this.view.view, this._css(event), wheelZoomFactor(event.deltaY, event.deltaMode)));
  }
}
