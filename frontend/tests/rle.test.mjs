import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  countsToString, decodeRle, encodeRle, maskBbox, maskToCounts, rleArea, rleBounds, stringToCounts,
} from "../js/rle.js";

const fixtures = JSON.parse(readFileSync(new URL("./fixtures/rle_pycocotools.json", import.meta.url), "utf8"));

function unpackBits(b64, length) {
  const bytes = Buffer.from(b64, "base64");
  const mask = new Uint8Array(length);
  for (let i = 0; i < length; i++) mask[i] = (bytes[i >> 3] >> (7 - (i & 7))) & 1;
  return mask;
}

test("fixtures cover a useful spread of cases", () => {
  assert.ok(fixtures.length >= 10);
  assert.ok(fixtures.some((f) => f.height * f.width > 100000));
});

for (const f of fixtures) {
  const mask = unpackBits(f.bits_b64, f.height * f.width);
  test(`JS decode of the pycocotools string equals the mask: ${f.name}`, () => {
    const decoded = decodeRle({ size: [f.height, f.width], counts: f.counts });
    assert.equal(decoded.length, mask.length);
    assert.deepEqual(decoded, mask);
  });
  test(`JS encode equals the pycocotools string: ${f.name}`, () => {
    const rle = encodeRle(mask, f.height, f.width);
    assert.deepEqual(rle.size, [f.height, f.width]);
    assert.equal(rle.counts, f.counts);
  });
  test(`area and bbox agree with pycocotools: ${f.name}`, () => {
    assert.equal(rleArea({ size: [f.height, f.width], counts: f.counts }), f.area);
    assert.deepEqual(maskBbox(mask, f.height, f.width), f.bbox);
    const [x, y, w, h] = f.bbox;
    const bounds = rleBounds({ size: [f.height, f.width], counts: f.counts });
    assert.deepEqual(bounds, f.area ? [x, y, x + w - 1, y + h - 1] : null);
  });
}

test("counts run down columns and start with zeros", () => {
  // 2x3 row-major:  1 0 1
  //                 1 1 0   column-major: 1 1 | 0 1 | 1 0
  const mask = Uint8Array.from([1, 0, 1, 1, 1, 0]);
  assert.deepEqual(maskToCounts(mask, 2, 3), [0, 2, 1, 2, 1]);
});

test("string counts round-trip large and negative deltas", () => {
  const counts = [0, 5_000_000, 1, 3, 99_999_999, 2, 7];
  assert.deepEqual(stringToCounts(countsToString(counts)), counts);
});

test("uncompressed list counts decode too", () => {
  assert.deepEqual(decodeRle({ size: [2, 2], counts: [1, 2, 1] }), Uint8Array.from([0, 1, 1, 0]));
});

test("bad input is rejected with a reason", () => {
  assert.throws(() => decodeRle({ size: [2, 2], counts: [1, 2] }), /add up to 3 pixels, the size says 4/);
  assert.throws(() => decodeRle({ size: [2, 2], counts: [9] }), /exceed/);
  assert.throws(() => decodeRle({ counts: "" }), /size/);
  assert.throws(() => stringToCounts("0~"), /invalid character/);
  assert.throws(() => stringToCounts("P"), /ends inside a number/);
  assert.throws(() => encodeRle(new Uint8Array(5), 2, 3), /expected 2x3=6/);
});

/** The definition, written the slow obvious way: walk the mask in column-major order. */
function naiveCounts(mask, height, width) {
  const counts = [];
  let current = 0;
  let run = 0;
  for (let x = 0; x < width; x++) {
    for (let y = 0; y < height; y++) {
      const v = mask[y * width + x] ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return counts;
}

test("random masks of many shapes round-trip and match the column-major definition", () => {
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let trial = 0; trial < 200; trial++) {
    const height = 1 + Math.floor(random() * 23);
    const width = 1 + Math.floor(random() * 23);
    const density = random();
    const mask = new Uint8Array(height * width);
    for (let i = 0; i < mask.length; i++) mask[i] = random() < density ? 1 : 0;
    const counts = maskToCounts(mask, height, width);
    assert.deepEqual(counts, naiveCounts(mask, height, width), `${height}x${width}`);
    assert.deepEqual(decodeRle(encodeRle(mask, height, width)), mask, `${height}x${width}`);
  }
});

test("masks with values other than 0/1 count as foreground; empty runs decode as nothing", () => {
  const mask = Uint8Array.from([0, 255, 7, 0, 1, 1, 0, 0]); // 2x4
  assert.deepEqual(maskToCounts(mask, 2, 4), naiveCounts(mask, 2, 4));
  assert.deepEqual(decodeRle({ size: [2, 2], counts: [1, 0, 0, 2, 1] }), Uint8Array.from([0, 1, 1, 0]));
});

test("a mask that is a view into a larger buffer encodes the same", () => {
  const backing = new Uint8Array(3 + 8 * 4);
  const mask = backing.subarray(3); // unaligned view: no 4-byte shortcut
  mask.set([1, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 0, 0]);
  assert.deepEqual(maskToCounts(mask, 8, 4), naiveCounts(mask, 8, 4));
});
