// Reviewing the model's proposals on the page: the selection walks them in reading order (J / K),
// each decision (accept as it is, accept with a label key, reject, fix) is timed from the moment
// the proposal was selected, and the selection moves on after it.

import { MaskEffort, effortFigures } from "./effort.js";
import { findMask, isSelectedProposal, patchMask, select, selectedMask } from "./masks_state.js";
import { isProposal, nextProposalKey, quickLabel } from "./proposals.js";
import { draftHasWork } from "./store.js";
import { suggestionFields } from "./suggestions.js";

export class ProposalReview {
  /** `page`: the annotation page (masks store, history, queue, picker, notices, editor). */
  constructor(page) {
    this.page = page;
    this.decision = new MaskEffort(); // the selected proposal: time from selection to decision
  }

  startClock() {
    this.decision = new MaskEffort();
    this.decision.begin();
  }

  /** The decision clock, handed over to the draft when the annotator starts fixing the proposal. */
  takeClock(key) {
    if (key !== this.page.maskStore.state.selectedKey) this.startClock();
    const effort = this.decision;
    this.decision = new MaskEffort();
    return effort;
  }

  /** Select a proposal (never toggles it off) and start timing the decision on it. */
  selectProposal(key) {
    this.page.maskStore.update(select, key);
    this.startClock();
  }

  /** J / K: the next or previous proposal in reading order, from the selection. */
  move(step) {
    const { masks, selectedKey } = this.page.maskStore.state;
    const key = nextProposalKey(masks, selectedKey, step);
    if (!key) {
      this.page.notices.flash("No proposals left on this image.");
      return;
    }
    this.selectProposal(key);
  }

  /** After a decision on `decidedKey`: on to the next proposal, or say that the image is done. */
  advanceFrom(decidedKey) {
    const state = this.page.maskStore.state;
    const key = nextProposalKey(state.masks, decidedKey, 1);
    if (key) return this.selectProposal(key);
    this.page.maskStore.update(select, null);
    if (state.hadProposals) this.page.notices.flash("All proposals on this image reviewed: add what is missing, then N.");
  }

  /**
   * Accept a proposal exactly as the model proposed it: only status and label change, so the
   * pre-fill report counts it as kept. Without `labelId`, the fastest label that is safe (see
   * quickLabel); the picker opens only when there is nothing to go on.
   */
  accept(labelId = undefined, key = this.page.maskStore.state.selectedKey) {
    const { maskStore, picker, notices } = this.page;
    const m = findMask(maskStore.state, key);
    if (!isProposal(m) || m.id == null) {
      notices.flash("Select a proposed mask first (J / K).");
      return;
    }
    if (labelId === undefined) {
      const choice = quickLabel(m, picker.lastLabelId, this.page.labels);
      if (!choice) return picker.open({ proposalKey: m.key });
      labelId = choice.label;
    }
    const body = { status: "accepted", label: labelId, ...effortFigures(this.decision),
      ...suggestionFields(this.page.suggestions?.forMask(m)) };
    maskStore.update(patchMask, m.key, { ...body, pending: true, opStatus: "pending" });
    this.page.queue.enqueue({ kind: "update", imageId: this.page.imageId, maskId: m.id, body: { ...body, version: m.version } });
    picker.remember(labelId);
    const label = this.page.labelById(labelId);
    notices.flash(`Proposal #${m.id} accepted${label ? ` as ${label.name}` : ""}.`);
    this.advanceFrom(m.key);
  }

  /** A: accept the proposal being fixed, else the selected proposal; a new mask goes to the picker. */
  quickAccept() {
    const d = this.page.history.state;
    if (d.baseMask?.status === "proposed") {
      const choice = quickLabel(d.baseMask, this.page.picker.lastLabelId, this.page.labels);
      return choice ? this.page.editor.accept(choice.label) : this.page.openPicker();
    }
    if (draftHasWork(d) || d.baseMask) return this.page.openPicker();
    return this.accept();
  }

  /** 1–9 outside the picker: accept the proposal being fixed, or the selected one, with that label. */
  acceptWithLabelKey(event) {
    const label = this.page.labels[Number(event?.key) - 1];
    const d = this.page.history.state;
    const fixing = d.baseMask?.status === "proposed";
    const reviewing = !draftHasWork(d) && !d.baseMask && isSelectedProposal(this.page.maskStore.state);
    if (!label || !(fixing || reviewing)) {
      this.page.notices.flash(label ? "Press Enter first, then a number to choose the label." : `There is no label ${event?.key}.`);
      return;
    }
    if (fixing) this.page.editor.accept(label.id);
    else this.accept(label.id);
  }

  /** X: reject the selected mask (a proposal, or a saved mask the annotator disagrees with). */
  rejectSelected() {
    const { maskStore, notices } = this.page;
    const m = selectedMask(maskStore.state);
    if (!m || m.id == null) {
      notices.flash("Select a saved proposed mask to reject it.");
      return;
    }
    const proposal = isProposal(m);
    // The decision's time and clicks are the mask's effort only for a proposal: a saved mask
    // rejected later keeps the effort of whoever drew it.
    const body = { status: "rejected", ...(proposal ? effortFigures(this.decision) : {}) };
    maskStore.update(patchMask, m.key, { ...body, pending: true, opStatus: "pending" });
    this.page.queue.enqueue({ kind: "update", imageId: this.page.imageId, maskId: m.id, body: { ...body, version: m.version } });
    if (proposal) {
      notices.flash(`Proposal #${m.id} rejected.`);
      this.advanceFrom(m.key);
    }
  }
}
