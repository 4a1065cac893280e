// window.maskmill: read-only views of the page's state for browser tests and debugging. Nothing
// here changes the page; every value is a copy.

import { canvasToClient, canvasToImage, clientToCanvas, imageToCanvas } from "./geometry.js";
import { listedMasks, proposalsLeft, selectedMask } from "./masks_state.js";
import { isProposal } from "./proposals.js";
import { currentDraftRle } from "./store.js";

const copy = (value) => JSON.parse(JSON.stringify(value));

/** The hooks for `page` (an AnnotationPage), frozen. */
export function testHooks(page) {
  const rectOf = () => page.canvas.getBoundingClientRect();
  return Object.freeze({
    version: 1,
    get ready() {
      return page.ready;
    },
    currentMaskRle() {
      const rle = currentDraftRle(page.history.state);
      return rle ? { size: [...rle.size], counts: rle.counts } : null;
    },
    view() {
      const v = page.view.view;
      return v ? { scale: v.scale, tx: v.tx, ty: v.ty, dpr: page.view.dpr } : null;
    },
    imageToClient(x, y) {
      return canvasToClient(imageToCanvas({ x, y }, page.view.view), rectOf());
    },
    clientToImage(x, y) {
      return canvasToImage(clientToCanvas(x, y, rectOf()), page.view.view);
    },
    draft() {
      const d = page.history.state;
      return copy({ points: d.points, box: d.box, candidateIndex: d.candidateIndex,
        candidateCount: d.candidates.length, scores: d.candidates.map((c) => c.score), logitsHandle: d.logitsHandle,
        waiting: d.waiting, edited: Boolean(d.edited), baseMaskId: d.baseMask?.id ?? null,
        canUndo: page.history.canUndo, canRedo: page.history.canRedo });
    },
    masks() {
      return copy(listedMasks(page.maskStore.state).map((m) => ({
        id: m.id, label: m.label, source: m.source, status: m.status, pending: m.pending,
        segmentation: m.segmentation })));
    },
    pendingSaves() {
      return page.queue.items;
    },
    selected() {
      const m = selectedMask(page.maskStore.state);
      return m ? { id: m.id, status: m.status, proposed: isProposal(m) } : null;
    },
    proposalsLeft() {
      return proposalsLeft(page.maskStore.state);
    },
    effort() {
      return { seconds: page.effort.seconds, clicks: page.effort.clicks };
    },
    tool() {
      return page.pointer.tool;
    },
    brushRadius() {
      return page.pointer.brushRadius;
    },
    preparing() {
      return page.predictor.preparing;
    },
    fallback() {
      return page.notices.fallback;
    },
    lease() {
      const lease = page.lease;
      return lease ? { beats: lease.beats, lost: lease.lost, intervalMs: lease.intervalMs } : null;
    },
  });
}
