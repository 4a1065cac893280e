// The page's controllers, the parts without a DOM: the predict request and answer, pointer modes,
// label search, what accepting a mask saves, "press again" confirmations, the pending indicator.
import { test } from "node:test";
import assert from "node:assert/strict";

import { labelForKey, matchLabels } from "../js/label_picker.js";
import { baseMaskOf, describeDraft, newLocalId, saveBody } from "../js/mask_editor.js";
import { DoublePress } from "../js/notices.js";
import { clampRadius, pointerMode } from "../js/pointer.js";
import { effortFigures } from "../js/effort.js";
import { round2 } from "../js/geometry.js";
import { predictBody, readCandidates } from "../js/predict.js";
import { decodeRle, encodeRle } from "../js/rle.js";
import { pendingSummary } from "../js/save_queue.js";
import { EMPTY_DRAFT } from "../js/store.js";

const draft = (changes) => ({ ...EMPTY_DRAFT, ...changes });

test("the first click asks for several candidates; later rounds refine the previous answer", () => {
  const first = predictBody(draft({ points: [{ x: 1.234, y: 5.678, label: 1 }] }), EMPTY_DRAFT);
  assert.deepEqual(first, { points: [[1.23, 5.68]], labels: [1], box: null, mask_input: null, mask_index: null,
    multimask: true });
  const previous = draft({ points: [{ x: 1, y: 1, label: 1 }], candidates: [{}, {}, {}], candidateIndex: 2,
    logitsHandle: "h1" });
  const second = predictBody(draft({ points: [...previous.points, { x: 4, y: 4, label: 0 }] }), previous);
  assert.deepEqual([second.labels, second.mask_input, second.mask_index, second.multimask], [[1, 0], "h1", 2, false]);
  const box = predictBody(draft({ box: [0.001, 2, 10.555, 20] }), EMPTY_DRAFT);
  assert.deepEqual([box.box, box.multimask], [[0, 2, 10.56, 20], true]);
});

test("the first click on a stored mask sends that mask as the prompt, not after brush edits", () => {
  const stored = draft({ baseMask: { id: 42, rle: null } });
  assert.equal(predictBody(draft({ points: [{ x: 1, y: 1, label: 1 }] }), stored).mask_input, "mask:42");
  assert.equal(predictBody(draft({ points: [{ x: 1, y: 1, label: 1 }] }), stored).multimask, false);
  const brushed = draft({ baseMask: { id: 42 }, edited: { size: [1, 1], counts: "01" } });
  assert.equal(predictBody(draft({ points: [{ x: 1, y: 1, label: 1 }] }), brushed).mask_input, null);
});

test("the best-scored candidate is shown first; a mask of another size is refused", () => {
  const rle = { size: [2, 3], counts: "6" };
  const { candidates, best } = readCandidates({ masks: [{ segmentation: rle, score: 0.2 },
    { segmentation: rle, score: 0.9 }, { segmentation: rle }] }, 3, 2);
  assert.equal(best, 1);
  assert.deepEqual(candidates.map((c) => c.score), [0.2, 0.9, null]);
  assert.deepEqual(readCandidates({}, 3, 2), { candidates: [], best: 0 });
  assert.throws(() => readCandidates({ masks: [{ segmentation: rle }] }, 2, 3), /mask for a 3×2 image/);
  assert.equal(round2(1.005), 1);
});

test("a press starts pan, select, brush, scribble or prompt depending on buttons, keys and tool", () => {
  assert.equal(pointerMode({ button: 1 }, "prompt", false), "pan");
  assert.equal(pointerMode({ button: 0 }, "brush", true), "pan");
  assert.equal(pointerMode({ button: 0, altKey: true }, "brush", false), "select");
  assert.equal(pointerMode({ button: 0 }, "eraser", false), "brush");
  assert.equal(pointerMode({ button: 2 }, "brush", false), null);
  assert.equal(pointerMode({ button: 2 }, "scribble", false), "scribble");
  assert.equal(pointerMode({ button: 2 }, "prompt", false), "prompt");
  assert.deepEqual([clampRadius(0.2), clampRadius(12.345), clampRadius(1e6)], [1, 12.3, 400]);
});

test("label search matches names case-insensitively; keys 1-9 name labels by position", () => {
  const labels = [{ id: 1, name: "Cat" }, { id: 2, name: "dog" }, { id: 3, name: "hotdog" }];
  assert.deepEqual(matchLabels(labels, " DOG ").map((l) => l.id), [2, 3]);
  assert.equal(matchLabels(labels, "").length, 3);
  assert.equal(matchLabels(labels, undefined).length, 3);
  assert.equal(labelForKey(labels, "2").id, 2);
  assert.equal(labelForKey(labels, "4"), null);
  assert.equal(labelForKey(labels, "0"), null);
  assert.equal(labelForKey(labels, "a"), null);
});

test("accepting saves the shown mask with its box, area, effort, positive points and model score", () => {
  const bits = new Uint8Array([0, 1, 1, 0, 1, 1]); // 2 rows × 3 columns
  const rle = encodeRle(bits, 2, 3);
  const effort = { seconds: 12.34, clicks: 3 };
  const d = draft({ points: [{ x: 1.111, y: 0.5, label: 1 }, { x: 0, y: 0, label: 0 }],
    candidates: [{ rle, score: 0.87 }], candidateIndex: 0 });
  const body = saveBody(d, 5, effort, decodeRle);
  assert.deepEqual(body.segmentation, { size: [2, 3], counts: rle.counts });
  assert.deepEqual([body.bbox, body.area, body.label, body.status], [[1, 0, 2, 2], 4, 5, "accepted"]);
  assert.deepEqual([body.seconds, body.clicks, body.point_coords, body.predicted_iou], [12.3, 3, [[1.11, 0.5]], 0.87]);
  const brushed = saveBody({ ...d, edited: rle }, 5, effort, decodeRle);
  assert.equal(brushed.predicted_iou, undefined, "after brush edits the score is not the mask's any more");
  const edit = saveBody(draft({ baseMask: { rle, id: 1 }, edited: rle }), null, effort, decodeRle);
  assert.equal("point_coords" in edit, false, "a brush-only edit keeps the stored prompt points");
  assert.equal(saveBody(EMPTY_DRAFT, 5, effort, decodeRle), null);
  assert.equal(saveBody(draft({ edited: encodeRle(new Uint8Array(6), 2, 3) }), 5, effort, decodeRle), null);
  assert.deepEqual(effortFigures({ seconds: 1.25, clicks: 0 }), { seconds: 1.3, clicks: 0 });
});

test("starting from a stored mask remembers what editing it needs; local ids are unique", () => {
  const m = { id: 3, key: "id:3", version: 2, segmentation: { size: [1, 1], counts: "01" }, label: 1,
    source: "auto", status: "proposed", bbox: [0, 0, 1, 1] };
  assert.deepEqual(baseMaskOf(m), { id: 3, localId: null, key: "id:3", version: 2, rle: m.segmentation, label: 1,
    source: "auto", status: "proposed" });
  assert.notEqual(newLocalId(), newLocalId());
});

test("an action that loses work runs on the second press within the window, not on a late one", () => {
  let now = 0;
  const said = [];
  const confirm = new DoublePress({ say: (text) => said.push(text), windowMs: 3000, now: () => now });
  assert.equal(confirm.confirmed("next", "press again"), false);
  now = 1000;
  assert.equal(confirm.confirmed("next", "press again"), true);
  assert.equal(confirm.confirmed("next", "press again"), false, "a third press starts over");
  now = 5000;
  assert.equal(confirm.confirmed("next", "press again"), false, "too late");
  assert.equal(confirm.confirmed("delete", "delete?"), false, "another action does not confirm this one");
  assert.deepEqual(said, ["press again", "press again", "press again", "delete?"]);
});

test("the pending indicator: conflicts before failures before waiting saves", () => {
  assert.deepEqual(pendingSummary([]), { conflicts: 0, failed: 0, waiting: 0, state: "saved", text: "All saved" });
  const items = [{ status: "conflict" }, { status: "conflict" }, { status: "failed" }, { status: "sending" }];
  assert.deepEqual(pendingSummary(items), { conflicts: 2, failed: 1, waiting: 1, state: "conflict",
    text: "2 conflicts · 1 failed · 1 pending" });
  assert.equal(pendingSummary([{ status: "failed" }, { status: "pending" }]).state, "failed");
  assert.equal(pendingSummary([{ status: "pending" }]).state, "pending");
});

test("the stored-mask layer is repainted only when what it shows changed", async () => {
  const { sameLayers } = await import("../js/canvas_view.js");
  const mask = new Uint8Array(4);
  const bounds = [0, 0, 1, 1];
  const layer = { mask, rgb: [1, 2, 3], selected: false, proposed: true, bounds };
  assert.ok(sameLayers([layer], [{ ...layer, rgb: [1, 2, 3] }]), "a new colour array with the same colour");
  assert.ok(!sameLayers([layer], [{ ...layer, selected: true }]));
  assert.ok(!sameLayers([layer], [{ ...layer, mask: new Uint8Array(4) }]), "another mask");
  assert.ok(!sameLayers([layer], [{ ...layer, rgb: [3, 2, 1] }]));
  assert.ok(!sameLayers([layer], [layer, layer]));
  assert.ok(sameLayers([], []));
});

test("the side bar describes the current mask: source, wait, candidates, score, edits, area", () => {
  assert.equal(describeDraft(EMPTY_DRAFT), "No current mask: click on an object.");
  const rle = encodeRle(new Uint8Array([1, 1, 0, 1, 0, 0]), 2, 3);
  const d = draft({ candidates: [{ rle, score: 0.5 }, { rle, score: 0.91234 }], candidateIndex: 1 });
  assert.equal(describeDraft(d), "candidate 2/2 (Tab) · score 0.912 · 3 px");
  assert.equal(describeDraft({ ...d, edited: rle, waiting: true, baseMask: { id: null, rle } }),
    "editing mask #(unsaved) · waiting for the model… · candidate 2/2 (Tab) · edited with brush · 3 px");
});
