// COCO run-length encoding, byte-for-byte compatible with pycocotools.
//
// Masks in the browser are row-major Uint8Array (index y * width + x, value 0 or 1), the layout
// of ImageData and canvas. COCO RLE runs down columns (Fortran order), starts with a run of
// zeros (possibly empty) and stores the counts as a string: each count (from the fourth on, the
// difference to the count two places back) is written in 5-bit groups, least significant first,
// with bit 0x20 meaning "more groups follow" and 0x10 of the last group carrying the sign, each
// group offset by 48 into printable ASCII. The arithmetic below uses plain Numbers (no 32-bit
// bitwise shifts) so counts of images up to 2^53 pixels stay exact.

const TILE = 32;

/** Row-major HxW → column-major (or back, with the sizes swapped), tile by tile to stay in cache. */
function transpose(source, rows, cols) {
  const out = new Uint8Array(source.length);
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = source[row + c];
      }
    }
  }
  return out;
}

/**
 * Run lengths (column-major, starting with zeros) of a row-major 0/1 mask.
 *
 * One cache-friendly pass in row-major order finds where the column-major stream changes value:
 * at (x, y > 0) when the pixel differs from the one above it, at (x, 0) when it differs from the
 * bottom pixel of the previous column. A counting sort by column puts those change positions in
 * stream order; the runs are their differences.
 */
export function maskToCounts(mask, height, width) {
  checkSize(height, width);
  if (!mask || mask.length !== height * width) {
    throw new RangeError(`mask has ${mask ? mask.length : 0} pixels, expected ${height}x${width}=${height * width}`);
  }
  let changes = new Int32Array(1024); // pairs (x, y), in row-major order
  let n = 0;
  const push = (x, y) => {
    if (n * 2 + 2 > changes.length) {
      const grown = new Int32Array(changes.length * 2);
      grown.set(changes);
      changes = grown;
    }
    changes[n * 2] = x;
    changes[n * 2 + 1] = y;
    n++;
  };
  const last = (height - 1) * width;
  for (let x = 0; x < width; x++) {
    const before = x === 0 ? 0 : mask[last + x - 1] ? 1 : 0;
    if ((mask[x] ? 1 : 0) !== before) push(x, 0);
  }
  // Rows are mostly equal to the row above: compare four pixels at a time where rows are aligned.
  const words = width % 4 === 0 && mask.byteOffset % 4 === 0 && mask.BYTES_PER_ELEMENT === 1
    ? new Uint32Array(mask.buffer, mask.byteOffset, mask.length / 4) : null;
  const wordsPerRow = width / 4;
  for (let y = 1; y < height; y++) {
    const row = y * width;
    const above = row - width;
    if (words) {
      const rowWord = y * wordsPerRow;
      for (let k = 0; k < wordsPerRow; k++) {
        if (words[rowWord + k] === words[rowWord - wordsPerRow + k]) continue;
        for (let x = k * 4; x < k * 4 + 4; x++) {
          if ((mask[row + x] ? 1 : 0) !== (mask[above + x] ? 1 : 0)) push(x, y);
        }
      }
    } else {
      for (let x = 0; x < width; x++) {
        if (mask[row + x] !== mask[above + x] && (mask[row + x] ? 1 : 0) !== (mask[above + x] ? 1 : 0)) push(x, y);
      }
    }
  }
  // Counting sort by column; rows stay in increasing order within a column.
  const perColumn = new Int32Array(width + 1);
  for (let i = 0; i < n; i++) perColumn[changes[i * 2] + 1]++;
  for (let x = 0; x < width; x++) perColumn[x + 1] += perColumn[x];
  const positions = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = changes[i * 2];
    positions[perColumn[x]++] = x * height + changes[i * 2 + 1];
  }
  const counts = new Array(n + 1);
  let previous = 0;
  for (let i = 0; i < n; i++) {
    counts[i] = positions[i] - previous;
    previous = positions[i];
  }
  counts[n] = height * width - previous;
  return counts;
}

/**
 * Row-major Uint8Array (0/1) from column-major run lengths.
 *
 * The inverse of maskToCounts' trick: mark where the stream changes value inside a column (y > 0),
 * set row 0 from the run covering each column's first pixel, then fill each row as the row above
 * XOR its change marks, four pixels at a time where rows are aligned.
 */
export function countsToMask(counts, height, width) {
  checkSize(height, width);
  const total = height * width;
  const mask = new Uint8Array(total);
  let position = 0;
  let column = 0; // next column whose row-0 value is still to be set
  for (let i = 0; i < counts.length; i++) {
    const count = counts[i];
    if (!Number.isInteger(count) || count < 0) throw new RangeError(`RLE count ${count} is not a non-negative integer`);
    if (position + count > total) throw new RangeError(`RLE counts exceed the ${height}x${width} mask size`);
    const end = position + count;
    // Row 0 of each column whose first pixel falls in this run takes the run's value.
    for (; column * height < end; column++) if (i % 2 === 1) mask[column] = 1;
    // The stream changes value where this run starts; inside a column that is a change mark.
    // (An empty run marks its position twice, which cancels, as it should.)
    if (i > 0 && position < total) {
      const x = Math.floor(position / height);
      const y = position - x * height;
      if (y > 0) mask[y * width + x] ^= 1;
    }
    position = end;
  }
  if (position !== total) throw new RangeError(`RLE counts add up to ${position} pixels, the size says ${total}`);
  const aligned = width % 4 === 0;
  const words = aligned ? new Uint32Array(mask.buffer) : null;
  const wordsPerRow = width / 4;
  for (let y = 1; y < height; y++) {
    if (aligned) {
      const row = y * wordsPerRow;
      for (let k = 0; k < wordsPerRow; k++) words[row + k] ^= words[row - wordsPerRow + k];
    } else {
      const row = y * width;
      for (let x = 0; x < width; x++) mask[row + x] ^= mask[row - width + x];
    }
  }
  return mask;
}

/** Counts → pycocotools' compressed string. */
export function countsToString(counts) {
  let out = "";
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = ((x % 32) + 32) % 32; // low five bits, two's complement
      x = Math.floor(x / 32); // arithmetic shift right by 5
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      out += String.fromCharCode(c + 48);
    }
  }
  return out;
}

/** pycocotools' compressed string → counts. */
export function stringToCounts(text) {
  if (typeof text !== "string") throw new TypeError("RLE counts string expected");
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0;
    let scale = 1; // 2 ** (5 * k)
    let more = true;
    while (more) {
      if (p >= text.length) throw new RangeError("RLE counts string ends inside a number");
      const c = text.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new RangeError(`invalid character ${JSON.stringify(text[p])} in RLE counts`);
      x += (c & 0x1f) * scale;
      scale *= 32;
      more = (c & 0x20) !== 0;
      p++;
      if (!more && c & 0x10) x -= scale; // sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

/** Row-major 0/1 mask → {size: [h, w], counts: string} as pycocotools.mask.encode gives it. */
export function encodeRle(mask, height, width) {
  return { size: [height, width], counts: countsToString(maskToCounts(mask, height, width)) };
}

/** COCO RLE (string or uncompressed list counts) → row-major Uint8Array. */
export function decodeRle(rle) {
  const [height, width] = rleSize(rle);
  const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
  if (!Array.isArray(counts)) throw new TypeError("RLE counts must be a string or an array of integers");
  return countsToMask(counts, height, width);
}

/** Number of foreground pixels, without decoding the mask. */
export function rleArea(rle) {
  rleSize(rle);
  const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
  let area = 0;
  for (let i = 1; i < counts.length; i += 2) area += counts[i];
  return area;
}

/** XYWH box of a row-major mask as pycocotools.mask.toBbox (w = x_max - x_min + 1); zeros when empty. */
export function maskBbox(mask, height, width) {
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (mask[row + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  return x1 < 0 ? [0, 0, 0, 0] : [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
}

export function rleSize(rle) {
  if (!rle || typeof rle !== "object" || !Array.isArray(rle.size) || rle.size.length !== 2) {
    throw new TypeError('RLE must be an object {size: [height, width], counts}');
  }
  checkSize(rle.size[0], rle.size[1]);
  return rle.size;
}

function checkSize(height, width) {
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) {
    throw new RangeError(`mask size must be positive integers, got ${height}x${width}`);
  }
}

/**
 * Inclusive pixel bounds [x0, y0, x1, y1] of the foreground, from the runs alone (no decoding), or
 * null for an empty mask. Lets overlays touch only the pixels near each mask.
 */
export function rleBounds(rle) {
  const [height] = rleSize(rle);
  const counts = typeof rle.counts === "string" ? stringToCounts(rle.counts) : rle.counts;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -1;
  let y1 = -1;
  let position = 0;
  for (let i = 0; i < counts.length; i++) {
    const start = position;
    position += counts[i];
    if (i % 2 === 0 || counts[i] === 0) continue;
    const end = position - 1; // last foreground pixel of this run (column-major)
    const firstColumn = Math.floor(start / height);
    const lastColumn = Math.floor(end / height);
    x0 = Math.min(x0, firstColumn);
    x1 = Math.max(x1, lastColumn);
    if (firstColumn === lastColumn) {
      y0 = Math.min(y0, start - firstColumn * height);
      y1 = Math.max(y1, end - firstColumn * height);
    } else {
      // A run that wraps into the next column touches the bottom row of one and the top of the next.
      y0 = 0;
      y1 = height - 1;
    }
  }
  return x1 < 0 ? null : [x0, y0, x1, y1];
}
