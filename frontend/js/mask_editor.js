// The current mask's life: start it from a stored mask (M, double-click), accept it (a new mask or
// an edit of the stored one, through the save queue), discard it, or delete the selected mask.

import { EMPTY_DRAFT, currentDraftRle, draftHasWork } from "./store.js";
import { addMask, deleteMask, findMask, patchMask, selectedMask, select } from "./masks_state.js";
import { MaskEffort, effortFigures } from "./effort.js";
import { round2 } from "./geometry.js";
import { isProposal } from "./proposals.js";
import { maskBbox, rleArea } from "./rle.js";
import { suggestionFields } from "./suggestions.js";

/**
 * What accepting the draft saves: the shown mask (RLE, bbox, area), label, effort, the positive
 * prompt points, and the model's score when the mask is a candidate as the model gave it. `decode`
 * turns the RLE into pixels (for the box). Null when the draft shows no mask or an empty one.
 */
export function saveBody(draft, labelId, effort, decode) {
  const rle = currentDraftRle(draft);
  if (!rle || rleArea(rle) === 0) return null;
  const [h, w] = rle.size;
  const body = {
    segmentation: { size: rle.size, counts: rle.counts },
    bbox: maskBbox(decode(rle), h, w),
    area: rleArea(rle),
    label: labelId,
    status: "accepted",
    ...effortFigures(effort),
    point_coords: draft.points.filter((p) => p.label === 1).map((p) => [round2(p.x), round2(p.y)]),
  };
  // An edit made with the brush or eraser only keeps the stored mask's prompt points (the
  // generator's point of a proposal) instead of blanking them.
  if (draft.baseMask && !body.point_coords.length) delete body.point_coords;
  const candidate = draft.candidates[draft.candidateIndex];
  if (candidate && !draft.edited && candidate.score != null) body.predicted_iou = candidate.score;
  // The label the page pre-selected (kept or not: a data-engine metric).
  if (candidate && !draft.edited) Object.assign(body, suggestionFields(candidate.suggestions));
  return body;
}

/** The draft's `baseMask` for a stored mask: what editing it needs to know. */
export function baseMaskOf(m) {
  return { id: m.id, localId: m.localId ?? null, key: m.key, version: m.version, rle: m.segmentation,
    label: m.label, source: m.source, status: m.status };
}

/** What the side bar says about the current mask. */
export function describeDraft(d) {
  const rle = currentDraftRle(d);
  const cand = d.candidates[d.candidateIndex];
  const parts = [];
  if (d.baseMask) parts.push(`editing mask #${d.baseMask.id ?? "(unsaved)"}`);
  if (d.waiting) parts.push("waiting for the model…");
  if (d.candidates.length > 1) parts.push(`candidate ${d.candidateIndex + 1}/${d.candidates.length} (Tab)`);
  if (cand?.score != null && !d.edited) parts.push(`score ${cand.score.toFixed(3)}`);
  if (d.edited) parts.push("edited with brush");
  if (rle) parts.push(`${rleArea(rle)} px`);
  return parts.length ? parts.join(" · ") : "No current mask: click on an object.";
}

export function newLocalId() {
  return `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

export class MaskEditor {
  /** `page`: the annotation page (history, masks store, queue, review, picker, notices, effort). */
  constructor(page) {
    this.page = page;
  }

  /** Start the draft from a stored mask: brush it, or click to refine with it as the mask prompt. */
  editMask(key) {
    const page = this.page;
    const m = findMask(page.maskStore.state, key);
    if (!m) return;
    const proposal = isProposal(m);
    if (proposal) {
      // Fixing a proposal: its decision clock goes on (time since it was selected), clicks add up.
      page.effort = page.review.takeClock(m.key);
    } else {
      page.effort.reset();
    }
    page.history.commit({ ...EMPTY_DRAFT, baseMask: baseMaskOf(m) });
    page.picker.remember(m.label);
    page.maskStore.update(select, null);
    page.notices.flash(proposal
      ? `Fixing proposal #${m.id}: click to refine, E to erase, B to paint, then A (or Enter) to accept it.`
      : `Editing mask ${m.id ? "#" + m.id : "(unsaved)"}: click to refine, brush to fix, Enter to save.`);
  }

  /** Save the current mask with `labelId`: an edit of its stored mask, or a new manual mask. */
  accept(labelId) {
    const page = this.page;
    const d = page.history.state;
    const body = saveBody(d, labelId, page.effort, (rle) => page.decode(rle));
    if (!body) {
      page.notices.flash("Nothing to accept: the current mask is empty.");
      return;
    }
    if (d.baseMask) {
      page.maskStore.update(patchMask, d.baseMask.key, { ...body, pending: true, opStatus: "pending" });
      page.queue.enqueue({ kind: "update", imageId: page.imageId, maskId: d.baseMask.id ?? undefined,
        localId: d.baseMask.id == null ? d.baseMask.localId : undefined, body: { ...body, version: d.baseMask.version } });
    } else {
      const localId = newLocalId();
      const create = { ...body, source: "manual" };
      page.maskStore.update(addMask, { ...create, id: null, key: `local:${localId}`, localId, pending: true,
        opStatus: "pending", annotator_name: page.config.user?.username ?? null });
      page.queue.enqueue({ kind: "create", imageId: page.imageId, localId, body: create });
    }
    page.picker.remember(labelId);
    page.history.reset(EMPTY_DRAFT);
    page.effort = new MaskEffort();
    if (d.baseMask?.status === "proposed") {
      page.notices.flash(`Proposal #${d.baseMask.id} fixed and accepted.`);
      page.review.advanceFrom(d.baseMask.key);
      return;
    }
    page.notices.flash("Mask accepted; the indicator at the top shows when it is stored.");
  }

  /** Esc: discard the current mask (undoable). */
  cancelDraft() {
    const page = this.page;
    if (!draftHasWork(page.history.state) && !page.history.state.baseMask) return;
    page.history.commit({ ...EMPTY_DRAFT });
    page.effort = new MaskEffort();
    page.notices.flash("Current mask discarded (Ctrl+Z brings it back)");
  }

  /** Del (twice): delete the selected mask; a proposal is rejected instead, a draft discarded. */
  deleteSelected() {
    const page = this.page;
    const m = selectedMask(page.maskStore.state);
    if (!m) {
      if (draftHasWork(page.history.state)) this.cancelDraft();
      else page.notices.flash("Select a mask in the list first (click it, or Alt+click it on the image).");
      return;
    }
    if (isProposal(m)) {
      // Rejected rather than deleted, so the pre-fill report still counts what the model proposed.
      page.notices.flash("Proposals are rejected (X), not deleted.");
      return page.review.rejectSelected();
    }
    if (!page.confirm.confirmed("delete", `Press Del again to delete mask ${m.id ? "#" + m.id : "(unsaved)"}.`)) return;
    page.maskStore.update(deleteMask, m.key);
    page.queue.enqueue({ kind: "delete", imageId: page.imageId, maskId: m.id ?? undefined,
      localId: m.id == null ? m.localId : undefined, version: m.version });
    page.notices.flash("Mask deleted");
  }
}
