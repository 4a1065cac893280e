// The save queue on the page: the pending indicator, the panel of waiting saves (retry, discard),
// and the conflict banner that offers a reload of the image.

import { $, span } from "./page.js";
import { pendingSummary } from "./save_queue.js";

/** Draw the queue's `items`; `discard(opId)` drops one, `reload()` reloads the page. */
export function renderPendingPanel(items, { discard, reload }) {
  const summary = pendingSummary(items);
  const indicator = $("pending-indicator");
  indicator.dataset.count = String(items.length);
  indicator.dataset.state = summary.state;
  indicator.textContent = summary.text;
  const list = $("pending-list");
  list.replaceChildren();
  for (const op of items) {
    const li = document.createElement("li");
    li.dataset.testid = "pending-item";
    li.dataset.status = op.status;
    li.append(span("", `${op.kind} ${op.maskId ? "#" + op.maskId : ""} (image ${op.imageId}) — ${op.status}` +
      (op.lastError ? `: ${op.lastError}` : "")));
    if (op.status === "conflict" || op.status === "failed") {
      li.append(button("Discard my change", "discard-save", () => discard(op.opId)));
    }
    list.append(li);
  }
  const conflict = items.find((o) => o.status === "conflict");
  const notice = $("conflict-notice");
  notice.hidden = !conflict;
  if (conflict) {
    notice.replaceChildren(span("", conflict.lastError + " "), button("Reload image", "conflict-reload", reload), " ",
      button("Discard my change", "conflict-discard", () => discard(conflict.opId)));
  }
}

/** The indicator opens the panel; "Retry now" sends everything again. */
export function bindPendingPanel(queue) {
  $("pending-indicator").addEventListener("click", () => {
    const panel = $("pending-panel");
    panel.hidden = !panel.hidden;
  });
  $("retry-saves").addEventListener("click", () => queue.retryNow());
}

function button(text, testid, onClick) {
  const node = document.createElement("button");
  node.textContent = text;
  node.dataset.testid = testid;
  node.addEventListener("click", onClick);
  return node;
}
