// The side bar's view of the image's masks: one list item per mask (label, source, score, author,
// status, review note, save state) and the count of proposals left. Draws a masks_state state.

import { labelById, listedMasks, maskRgb, proposalsLeft } from "./masks_state.js";
import { maskAuthor } from "./masklist.js";
import { $, span } from "./page.js";
import { isProposal } from "./proposals.js";
import { keptText, suggestionText } from "./suggestions.js";

/**
 * Draw the list. `labels`: the project's; `me`: the page's user (names their own masks);
 * `onSelect(key)` on click, `onEdit(key)` on double-click.
 */
export function renderMaskList(state, { labels, me, onSelect, onEdit, suggestionsOf = () => null }) {
  const list = $("mask-list");
  list.replaceChildren();
  const shown = listedMasks(state);
  $("mask-count").textContent = String(shown.length);
  shown.forEach((m, i) => {
    const item = document.createElement("li");
    item.dataset.testid = "mask-item";
    item.dataset.maskId = m.id ?? "";
    item.dataset.key = m.key;
    item.dataset.source = m.source ?? "";
    item.dataset.status = m.status ?? "";
    item.dataset.pending = String(Boolean(m.pending));
    item.className = "mask-item" + (m.key === state.selectedKey ? " selected" : "") +
      (m.status === "rejected" ? " rejected" : "") + (isProposal(m) ? " proposed" : "");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${maskRgb(labels, m, i).join(",")})`;
    const label = labelById(labels, m.label);
    const score = m.predicted_iou != null ? Number(m.predicted_iou).toFixed(2) : "–";
    item.append(swatch, span("mask-label", label ? label.name : "(no label)", "mask-label"),
      span(`badge source-${m.source}`, m.source ?? "?", "mask-source"),
      span("mask-score", score, "mask-score"),
      span("mask-author", maskAuthor(m, me), "mask-author"));
    if (m.status && m.status !== "accepted") item.append(span(`badge status status-${m.status}`, m.status, "mask-status"));
    const kept = keptText(m, (id) => labelById(labels, id)?.name);
    if (kept) item.append(span(`badge suggestion ${m.label === m.suggested_label ? "kept" : "changed"}`, kept, "mask-suggestion"));
    else if (isProposal(m) && suggestionsOf(m)?.labels?.length) {
      item.append(span("mask-suggestion muted", `suggests ${suggestionText(suggestionsOf(m))}`, "mask-suggestion"));
    }
    if (m.review_note) item.append(span("mask-note", `Review: ${m.review_note}`, "mask-note"));
    if (m.pending) item.append(span("badge pending", m.opStatus === "conflict" ? "conflict" : "saving…", "mask-pending"));
    item.addEventListener("click", () => onSelect(m.key));
    item.addEventListener("dblclick", () => onEdit(m.key));
    list.append(item);
    if (m.key === state.selectedKey) item.scrollIntoView?.({ block: "nearest" });
  });
  renderProposalPanel(state);
}

/** How many proposals are left on this image (shown once the image had any). */
export function renderProposalPanel(state) {
  const left = proposalsLeft(state);
  const panel = $("proposal-panel");
  panel.hidden = !(left || state.hadProposals);
  panel.dataset.left = String(left);
  $("proposal-count").textContent = left
    ? `${left} proposal${left === 1 ? "" : "s"} left on this image`
    : "All proposals on this image reviewed";
}
