// The review page (annotation/review.html): draws the image with its masks and highlights, in the
// list, the mask under the pointer. Shares the RLE decoder and colours with the annotation page.
import { decodeRle } from "./rle.js";
import { maskAt, paintReviewMasks } from "./review_overlay.js";

const data = JSON.parse(document.getElementById("review-data").textContent);
const canvas = document.querySelector('[data-testid="review-canvas"]');

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
  paintReviewMasks(pixels.data, width, height, decoded);
  ctx.putImageData(pixels, 0, 0);
  canvas.addEventListener("pointermove", (event) => {
    const rect = canvas.getBoundingClientRect();
    const x = Math.floor(((event.clientX - rect.left) / rect.width) * width);
    const y = Math.floor(((event.clientY - rect.top) / rect.height) * height);
    const hit = maskAt(decoded, width, height, x, y);
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
