import { test } from "node:test";
import assert from "node:assert/strict";
import { EMPTY_DRAFT, History, currentDraftRle, cycleIndex, draftHasWork } from "../js/store.js";

const rle = (counts) => ({ size: [1, 3], counts });

test("undo and redo walk across prompts and edits", () => {
  const h = new History();
  h.commit({ points: [{ x: 1, y: 1, label: 1 }], requestId: 1 });
  h.commit({ points: [...h.state.points, { x: 2, y: 2, label: 0 }], requestId: 2 });
  h.commit({ edited: rle("012") });
  assert.equal(h.state.points.length, 2);
  assert.ok(h.undo());
  assert.equal(h.state.edited, null);
  assert.ok(h.undo());
  assert.equal(h.state.points.length, 1);
  assert.ok(h.redo());
  assert.equal(h.state.points.length, 2);
  assert.ok(h.redo());
  assert.deepEqual(h.state.edited, rle("012"));
  assert.equal(h.redo(), false);
});

test("a new step after undo drops the redo branch", () => {
  const h = new History();
  h.commit({ box: [0, 0, 1, 1] });
  h.undo();
  assert.ok(h.canRedo);
  h.commit({ points: [{ x: 0, y: 0, label: 1 }] });
  assert.equal(h.canRedo, false);
  assert.equal(h.state.box, null);
});

test("a late model answer lands in the entry that asked for it, also after undo", () => {
  const h = new History();
  h.commit({ points: [{ x: 1, y: 1, label: 1 }], requestId: 7 });
  h.commit({ points: [{ x: 1, y: 1, label: 1 }, { x: 5, y: 5, label: 1 }], requestId: 8 });
  h.undo(); // back at request 7, request 8's state is in the future
  h.patchWhere((s) => s.requestId === 8, { candidates: [{ rle: rle("03"), score: 0.9 }], logitsHandle: "h8" });
  assert.equal(h.state.candidates.length, 0);
  h.redo();
  assert.equal(h.state.logitsHandle, "h8");
  assert.equal(h.state.candidates[0].score, 0.9);
});

test("states are immutable and listeners hear every change", () => {
  const h = new History();
  const seen = [];
  h.subscribe((s) => seen.push(s.points.length));
  h.commit({ points: [{ x: 1, y: 1, label: 1 }] });
  h.undo();
  h.redo();
  h.reset();
  assert.deepEqual(seen, [1, 0, 1, 0]);
  assert.throws(() => {
    "use strict";
    h.state.points = [];
  });
  assert.equal(h.canUndo, false);
});

test("history length is bounded", () => {
  const h = new History(EMPTY_DRAFT, { limit: 5 });
  for (let i = 0; i < 20; i++) h.commit({ requestId: i });
  let undos = 0;
  while (h.undo()) undos++;
  assert.equal(undos, 5);
});

test("the shown mask prefers edits, then the selected candidate, then the stored base", () => {
  const base = { ...EMPTY_DRAFT, baseMask: { id: 3, version: 1, rle: rle("3") } };
  assert.deepEqual(currentDraftRle(base), rle("3"));
  const withCandidates = { ...base, candidates: [{ rle: rle("12") }, { rle: rle("21") }], candidateIndex: 1 };
  assert.deepEqual(currentDraftRle(withCandidates), rle("21"));
  assert.deepEqual(currentDraftRle({ ...withCandidates, edited: rle("0111") }), rle("0111"));
  assert.equal(currentDraftRle(EMPTY_DRAFT), null);
  assert.equal(draftHasWork(EMPTY_DRAFT), false);
  assert.equal(draftHasWork(withCandidates), true);
});

test("candidates cycle both ways", () => {
  assert.equal(cycleIndex(2, 3), 0);
  assert.equal(cycleIndex(0, 3, -1), 2);
  assert.equal(cycleIndex(0, 0), 0);
});

test("the draft history is a Store: `set` outside the undo stack starts a fresh history", () => {
  const h = new History();
  h.commit({ box: [0, 0, 1, 1] });
  const seen = [];
  h.subscribe((state) => seen.push(state.box));
  h.set({ ...EMPTY_DRAFT, box: [1, 1, 2, 2] });
  assert.deepEqual(h.state.box, [1, 1, 2, 2]);
  assert.equal(h.canUndo, false);
  assert.deepEqual(seen, [[1, 1, 2, 2]]);
  assert.ok(Object.isFrozen(h.state));
});
