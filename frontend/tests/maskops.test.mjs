import { test } from "node:test";
import assert from "node:assert/strict";
import { paintDisc, paintOverlay, paintStroke, paletteColor, parseColor, samplePath } from "../js/maskops.js";

const sum = (a) => a.reduce((s, v) => s + v, 0);

test("a brush disc covers the pixels whose centres are inside it", () => {
  const m = paintDisc(new Uint8Array(100), 10, 10, 5, 5, 2, 1);
  for (let y = 0; y < 10; y++) {
    for (let x = 0; x < 10; x++) {
      const inside = (x + 0.5 - 5) ** 2 + (y + 0.5 - 5) ** 2 <= 4;
      assert.equal(m[y * 10 + x], inside ? 1 : 0, `pixel ${x},${y}`);
    }
  }
});

test("the eraser clears, and discs are clipped at the image border", () => {
  const m = new Uint8Array(25).fill(1);
  paintDisc(m, 5, 5, 0, 0, 3, 0);
  assert.equal(m[0], 0);
  assert.equal(m[24], 1);
  paintDisc(new Uint8Array(25), 5, 5, -50, -50, 3, 1); // fully outside: no throw, nothing painted
});

test("a stroke has no gaps between far-apart pointer events", () => {
  const m = paintStroke(new Uint8Array(200 * 20), 200, 20, { x: 5, y: 10 }, { x: 195, y: 10 }, 2, 1);
  for (let x = 5; x < 195; x++) assert.equal(m[10 * 200 + x], 1, `gap at x=${x}`);
  assert.equal(m[0], 0);
});

test("a scribble becomes a few points spread along it, ends included", () => {
  const path = [{ x: 0, y: 0 }, { x: 100, y: 0 }, { x: 100, y: 100 }];
  const pts = samplePath(path, 5, 4);
  assert.equal(pts.length, 5);
  assert.deepEqual(pts[0], { x: 0, y: 0 });
  assert.deepEqual(pts[4], { x: 100, y: 100 });
  assert.deepEqual(pts[2], { x: 100, y: 0 });
  assert.deepEqual(samplePath([{ x: 3, y: 4 }, { x: 4, y: 4 }], 8, 4), [{ x: 3, y: 4 }]);
  assert.deepEqual(samplePath([], 8), []);
});

test("colours parse or fail clearly", () => {
  assert.deepEqual(parseColor("#ff8000"), [255, 128, 0]);
  assert.deepEqual(parseColor("0f0"), [0, 255, 0]);
  assert.throws(() => parseColor("red"), /#rgb or #rrggbb/);
  assert.notEqual(paletteColor(0), paletteColor(1));
  assert.equal(paletteColor(-1), paletteColor(15));
});

test("overlay fills the inside translucent and the outline opaque", () => {
  const w = 5;
  const mask = new Uint8Array(25);
  for (let y = 1; y <= 3; y++) for (let x = 1; x <= 3; x++) mask[y * w + x] = 1;
  const rgba = paintOverlay(new Uint8ClampedArray(100), mask, 5, 5, [10, 20, 30], 0.5);
  assert.equal(rgba[(2 * w + 2) * 4 + 3], 128); // centre
  assert.equal(rgba[(1 * w + 1) * 4 + 3], 255); // edge
  assert.deepEqual([...rgba.slice((1 * w + 2) * 4, (1 * w + 2) * 4 + 3)], [10, 20, 30]);
  assert.equal(rgba[0 + 3], 0); // outside untouched
  assert.equal(sum(mask), 9);
  const bounded = paintOverlay(new Uint8ClampedArray(100), mask, 5, 5, [10, 20, 30], 0.5, true, [1, 1, 3, 3]);
  assert.deepEqual(bounded, rgba); // painting inside the mask's bounds gives the same picture
  const clipped = paintOverlay(new Uint8ClampedArray(100), mask, 5, 5, [10, 20, 30], 0.5, true, [1, 1, 1, 3]);
  assert.equal(clipped[(2 * w + 2) * 4 + 3], 0);
});

test("a dashed outline alternates two colours in square cells and keeps the fill", () => {
  const w = 8;
  const mask = new Uint8Array(64);
  for (let y = 1; y <= 6; y++) for (let x = 1; x <= 6; x++) mask[y * w + x] = 1;
  const a = [250, 190, 30];
  const b = [10, 10, 10];
  const rgba = paintOverlay(new Uint8ClampedArray(256), mask, 8, 8, [1, 2, 3], 0.5, true, null,
    { length: 2, colors: [a, b] });
  const at = (x, y) => [...rgba.slice((y * w + x) * 4, (y * w + x) * 4 + 4)];
  assert.deepEqual(at(1, 1), [...a, 255]); // cell (0, 0)
  assert.deepEqual(at(2, 1), [...b, 255]); // cell (1, 0): along the top edge the colour alternates
  assert.deepEqual(at(4, 1), [...a, 255]);
  assert.deepEqual(at(1, 2), [...b, 255]); // and down the left edge
  assert.deepEqual(at(3, 3), [1, 2, 3, 128]); // the inside is filled as usual
  assert.deepEqual(at(0, 0), [0, 0, 0, 0]);
  const solid = paintOverlay(new Uint8ClampedArray(256), mask, 8, 8, [1, 2, 3], 0.5);
  assert.deepEqual([...solid.slice((1 * w + 2) * 4, (1 * w + 2) * 4 + 4)], [1, 2, 3, 255]); // no dash: solid
});
