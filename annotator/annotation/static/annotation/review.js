// Review page: draws the image with its masks (fill + outline, rejected ones hatched red) and
// highlights the mask under the pointer in the list. Reuses the annotation page's RLE decoder.
import { decodeRle } from "../maskmill/js/rle.js";

const data = JSON.parse(document.getElementById("review-data").textContent);
const canvas = document.querySelector('[data-testid="review-canvas"]');

function rgb(hex) {
  const m = /^#?([0-9a-f]{6})$/i.exec(hex || "");
  const n = m ? parseInt(m[1], 16) : 0xffcc00;
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

async function main() {
  const { id, width, height } = data.image;
  const image = new Image();
  image.src = `/api/images/${id}/file`;
  await image.decode();
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, width, height);
  const pixels = ctx.getImageData(0, 0, width, height);
  const decoded = data.masks.map((m) => ({ ...m, bits: decodeRle(m.segmentation) }));
  for (const m of decoded) {
    const [r, g, b] = m.status === "rejected" ? [229, 57, 53] : rgb(m.color);
    const bits = m.bits;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const i = y * width + x;
        if (!bits[i]) continue;
        const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
          !bits[i - 1] || !bits[i + 1] || !bits[i - width] || !bits[i + width];
        const hatch = m.status === "rejected" && (x + y) % 8 < 2;
        const alpha = edge || hatch ? 0.95 : 0.4;
        const o = i * 4;
        pixels.data[o] = pixels.data[o] * (1 - alpha) + r * alpha;
        pixels.data[o + 1] = pixels.data[o + 1] * (1 - alpha) + g * alpha;
        pixels.data[o + 2] = pixels.data[o + 2] * (1 - alpha) + b * alpha;
      }
    }
  }
  ctx.putImageData(pixels, 0, 0);
  canvas.addEventListener("pointermove", (event) => {
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
    const hit = decoded.findLast((m) => m.bits[y * width + x]);
    for (const item of document.querySelectorAll('[data-testid="review-mask"]')) {
      item.classList.toggle("hover", hit != null && item.dataset.maskId === String(hit.id));
    }
  });
  document.body.dataset.reviewReady = "true";
}

if (data.image) main().catch((error) => {
  console.error(error);
  document.body.dataset.reviewReady = "error";
});
