import { test } from "node:test";
import assert from "node:assert/strict";
import {
  backingSize, backingTransform, canvasToImage, clientToCanvas, fitView, imagePixel, imageToCanvas,
  makeView, normalizeBox, panBy, wheelZoomFactor, xyxyToXywh, zoomAt,
} from "../js/geometry.js";

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

test("a click on a zoomed and panned canvas maps to the right image pixel", () => {
  // Image pixel (40, 25) is drawn at 4x, shifted by (-100, 30) CSS px; the canvas sits at (10, 50).
  const view = makeView(4, -100, 30);
  const rect = { left: 10, top: 50 };
  // Centre of pixel (40, 25) on screen: ((40.5 * 4) - 100 + 10, (25.5 * 4) + 30 + 50)
  const client = { x: 40.5 * 4 - 100 + 10, y: 25.5 * 4 + 30 + 50 };
  const p = canvasToImage(clientToCanvas(client.x, client.y, rect), view);
  assert.deepEqual(imagePixel(p, 640, 480), { x: 40, y: 25 });
  // Just inside the pixel's right/bottom edge still belongs to it; the edge itself is the next one.
  const edge = canvasToImage({ x: 41 * 4 - 100 - 1e-6, y: 26 * 4 + 30 - 1e-6 }, view);
  assert.deepEqual(imagePixel(edge, 640, 480), { x: 40, y: 25 });
  assert.deepEqual(imagePixel(canvasToImage({ x: 41 * 4 - 100, y: 26 * 4 + 30 }, view), 640, 480), { x: 41, y: 26 });
});

test("image ↔ canvas are inverse", () => {
  const view = makeView(0.37, 12.5, -8);
  const p = { x: 123.25, y: 77.5 };
  const q = canvasToImage(imageToCanvas(p, view), view);
  close(q.x, p.x);
  close(q.y, p.y);
});

test("points outside the image have no pixel", () => {
  const view = makeView(2, 0, 0);
  assert.equal(imagePixel(canvasToImage({ x: -1, y: 5 }, view), 10, 10), null);
  assert.equal(imagePixel(canvasToImage({ x: 20, y: 5 }, view), 10, 10), null);
  assert.deepEqual(imagePixel(canvasToImage({ x: 19.99, y: 19.99 }, view), 10, 10), { x: 9, y: 9 });
});

test("zoom keeps the image point under the cursor fixed", () => {
  let view = makeView(1.5, 20, 40);
  const anchor = { x: 311, y: 207 };
  const before = canvasToImage(anchor, view);
  for (const factor of [1.2, 3, 0.1, 7]) {
    view = zoomAt(view, anchor, factor);
    const after = canvasToImage(anchor, view);
    close(after.x, before.x, 1e-9);
    close(after.y, before.y, 1e-9);
  }
});

test("zoom is clamped", () => {
  const view = zoomAt(makeView(1), { x: 0, y: 0 }, 1e9);
  assert.equal(view.scale, 64);
  assert.equal(zoomAt(makeView(1), { x: 0, y: 0 }, 1e-9).scale, 0.02);
});

test("wheel up zooms in, down zooms out, one notch about 1.2x", () => {
  assert.ok(wheelZoomFactor(-100) > 1);
  assert.ok(wheelZoomFactor(100) < 1);
  close(wheelZoomFactor(-100) * wheelZoomFactor(100), 1);
  close(wheelZoomFactor(-3, 1), wheelZoomFactor(-48));
});

test("pan moves the image with the pointer", () => {
  const view = panBy(makeView(2, 10, 10), 5, -7);
  const p = canvasToImage({ x: 15 + 2 * 3, y: 3 + 2 * 4 }, view);
  close(p.x, 3);
  close(p.y, 4);
});

test("fit centres the whole image", () => {
  const view = fitView(1000, 500, 800, 600, 0);
  close(view.scale, 0.8);
  close(view.tx, 0);
  close(view.ty, (600 - 400) / 2);
});

test("devicePixelRatio only scales the backing store", () => {
  const view = makeView(2, 10, 20);
  assert.deepEqual(backingTransform(view, 2), [4, 0, 0, 4, 20, 40]);
  assert.deepEqual(backingSize(300.4, 150, 1.5), { width: 451, height: 225 });
  // An image point drawn with the backing transform lands at canvas CSS point × dpr.
  const [a, , , d, e, f] = backingTransform(view, 2);
  const css = imageToCanvas({ x: 7, y: 9 }, view);
  close(7 * a + e, css.x * 2);
  close(9 * d + f, css.y * 2);
});

test("boxes are normalised and clamped", () => {
  assert.deepEqual(normalizeBox({ x: 50, y: 8 }, { x: 10, y: 30 }, 100, 100), [10, 8, 50, 30]);
  assert.deepEqual(normalizeBox({ x: -5, y: 120 }, { x: 40, y: 60 }, 100, 100), [0, 60, 40, 100]);
  assert.equal(normalizeBox({ x: 3, y: 3 }, { x: 3, y: 40 }, 100, 100), null);
  assert.equal(normalizeBox({ x: -9, y: 3 }, { x: -2, y: 40 }, 100, 100), null);
  assert.deepEqual(xyxyToXywh([10, 8, 50, 30]), [10, 8, 40, 22]);
});

test("a view must have a positive scale", () => {
  assert.throws(() => makeView(0), /positive/);
  assert.throws(() => makeView(NaN), /positive/);
});
