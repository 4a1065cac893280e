// The review page's picture: every mask of the image tinted over it, outlines opaque, rejected
// masks hatched red so the reviewer sees at a glance what was sent back. Pure functions, no DOM.
import { parseColor } from "./maskops.js";

export const REJECTED_RGB = [229, 57, 53];
export const DEFAULT_RGB = [255, 204, 0];

/** The colour a mask is drawn in: red when rejected, else its label's colour (amber without one). */
export function reviewColor(mask) {
  if (mask.status === "rejected") return REJECTED_RGB;
  try {
    return parseColor(mask.color);
  } catch {
    return DEFAULT_RGB;
  }
}

/**
 * Blend `masks` ({bits, status, color}: bits a row-major 0/1 mask of width × height) into `rgba`
 * (ImageData.data layout) in place: fill at 40 %, edge pixels (a 4-neighbour outside the mask or
 * the image border) and the hatch lines of a rejected mask at 95 %.
 */
export function paintReviewMasks(rgba, width, height, masks) {
  for (const m of masks) {
    const [r, g, b] = reviewColor(m);
    const bits = m.bits;
    const rejected = m.status === "rejected";
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!bits[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !bits[i - 1] || !bits[i + 1] || !bits[i - width] || !bits[i + width];
        const hatch = rejected && (x + y) % 8 < 2;
        const alpha = edge || hatch ? 0.95 : 0.4;
        const o = i * 4;
        rgba[o] = rgba[o] * (1 - alpha) + r * alpha;
        rgba[o + 1] = rgba[o + 1] * (1 - alpha) + g * alpha;
        rgba[o + 2] = rgba[o + 2] * (1 - alpha) + b * alpha;
      }
    }
  }
  return rgba;
}

/** The topmost mask (drawn last) that covers image pixel (x, y), or undefined. */
export function maskAt(masks, width, height, x, y) {
  if (x < 0 || y < 0 || x >= width || y >= height) return undefined;
  return masks.findLast((m) => m.bits[y * width + x]);
}
