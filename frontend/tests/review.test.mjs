// The review page's overlay: colours, blending, hatching of rejected masks, and the hover hit test.
import { test } from "node:test";
import assert from "node:assert/strict";

import { DEFAULT_RGB, REJECTED_RGB, maskAt, paintReviewMasks, reviewColor } from "../js/review_overlay.js";

const square = (width, height, x0, y0, x1, y1) => {
  const bits = new Uint8Array(width * height);
  for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) bits[y * width + x] = 1;
  return bits;
};

test("a mask is drawn in its label colour, red when rejected, amber without a usable colour", () => {
  assert.deepEqual(reviewColor({ status: "accepted", color: "#00ff00" }), [0, 255, 0]);
  assert.deepEqual(reviewColor({ status: "accepted", color: "#0f0" }), [0, 255, 0]);
  assert.deepEqual(reviewColor({ status: "rejected", color: "#00ff00" }), REJECTED_RGB);
  assert.deepEqual(reviewColor({ status: "accepted", color: null }), DEFAULT_RGB);
  assert.deepEqual(reviewColor({ status: "accepted", color: "not a colour" }), DEFAULT_RGB);
});

test("the interior is tinted, the outline nearly opaque, pixels outside untouched", () => {
  const [w, h] = [8, 8];
  const rgba = new Float64Array(w * h * 4); // black image
  paintReviewMasks(rgba, w, h, [{ status: "accepted", color: "#ff0000", bits: square(w, h, 2, 2, 5, 5) }]);
  const red = (x, y) => rgba[(y * w + x) * 4];
  assert.equal(red(0, 0), 0);
  assert.ok(Math.abs(red(3, 3) - 0.4 * 255) < 1e-9, "interior at 40 %");
  assert.ok(Math.abs(red(2, 3) - 0.95 * 255) < 1e-9, "edge at 95 %");
  assert.equal(rgba[(3 * w + 3) * 4 + 1], 0, "green stays 0");
});

test("a rejected mask is hatched: diagonal lines inside it are painted like its outline", () => {
  const [w, h] = [16, 16];
  const rgba = new Float64Array(w * h * 4);
  paintReviewMasks(rgba, w, h, [{ status: "rejected", color: "#00ff00", bits: square(w, h, 1, 1, 14, 14) }]);
  const red = (x, y) => rgba[(y * w + x) * 4];
  assert.ok(Math.abs(red(4, 4) - 0.95 * 229) < 1e-9, "(4 + 4) % 8 == 0 is on a hatch line");
  assert.ok(Math.abs(red(5, 5) - 0.4 * 229) < 1e-9, "(5 + 5) % 8 == 2 is between lines");
});

test("the hover hit test finds the topmost mask and nothing outside the image", () => {
  const [w, h] = [8, 8];
  const below = { id: 1, bits: square(w, h, 0, 0, 7, 7) };
  const above = { id: 2, bits: square(w, h, 4, 4, 7, 7) };
  assert.equal(maskAt([below, above], w, h, 5, 5).id, 2);
  assert.equal(maskAt([below, above], w, h, 1, 1).id, 1);
  assert.equal(maskAt([below, above], w, h, 8, 1), undefined);
  assert.equal(maskAt([below, above], w, h, -1, 1), undefined);
});
