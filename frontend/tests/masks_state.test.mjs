// The image's masks as pure state: server records, the save queue's waiting ops laid over them,
// optimistic changes, saves confirmed by the server, and what is drawn and listed.
import { test } from "node:test";
import assert from "node:assert/strict";

import { EMPTY_MASKS, addMask, applyPendingOps, applySaved, deleteMask, findMask, fromServer, labelById, listedMasks,
  maskRgb, openImage, patchMask, proposalsLeft, reflectQueue, select, selectedMask, visibleMasks }
  from "../js/masks_state.js";
import { Store } from "../js/store.js";

const seg = (counts = "11") => ({ size: [2, 2], counts });
const record = (id, extra = {}) => ({ id, version: 1, status: "accepted", source: "manual", label: null,
  segmentation: seg(), bbox: [0, 0, 1, 1], ...extra });

test("server records get keys and are frozen; changes never touch the old state", () => {
  const state = fromServer([record(1), record(2)]);
  assert.deepEqual(state.masks.map((m) => m.key), ["id:1", "id:2"]);
  assert.ok(Object.isFrozen(state) && Object.isFrozen(state.masks) && Object.isFrozen(state.masks[0]));
  const next = patchMask(state, "id:1", { status: "rejected" });
  assert.equal(state.masks[0].status, "accepted");
  assert.equal(next.masks[0].status, "rejected");
  assert.equal(next.masks[1], state.masks[1], "untouched records are shared");
  assert.equal(next.masks[0].segmentation, state.masks[0].segmentation, "the RLE object survives (decode cache)");
  assert.equal(patchMask(state, "id:9", { status: "x" }), state, "an unknown key changes nothing");
});

test("the queue's waiting ops for this image are laid over the server's records", () => {
  const ops = [
    { kind: "create", imageId: 5, localId: "a", body: { segmentation: seg(), label: 3 }, status: "pending", lastError: null },
    { kind: "update", imageId: 5, maskId: 1, body: { label: 4 }, status: "conflict", lastError: "changed" },
    { kind: "delete", imageId: 5, maskId: 2, version: 1, status: "pending" },
    { kind: "update", imageId: 6, maskId: 1, body: { label: 9 }, status: "pending" },
  ];
  const state = applyPendingOps(fromServer([record(1), record(2)]), ops, 5, "alice");
  const [one, two, local] = state.masks;
  assert.deepEqual([one.label, one.pending, one.opStatus, one.opError], [4, true, "conflict", "changed"]);
  assert.deepEqual([two.pendingDelete, two.pending], [true, true]);
  assert.deepEqual([local.key, local.id, local.annotator_name, local.pending], ["local:a", null, "alice", true]);
  assert.deepEqual(listedMasks(state).map((m) => m.key), ["id:1", "local:a"]);
});

test("an image opened with proposals keeps its panel; one whose proposals were all decided offline does not", () => {
  const proposal = record(1, { status: "proposed" });
  assert.equal(openImage([proposal], [], 5).hadProposals, true);
  const decided = [{ kind: "update", imageId: 5, maskId: 1, body: { status: "accepted" }, status: "pending" }];
  assert.equal(openImage([proposal], decided, 5).hadProposals, false);
  assert.equal(proposalsLeft(openImage([proposal], [], 5)), 1);
});

test("a confirmed save turns the local mask into the server's record and keeps the selection on it", () => {
  let state = addMask(EMPTY_MASKS, { key: "local:a", localId: "a", id: null, segmentation: seg(), pending: true });
  state = select(state, "local:a");
  const saved = applySaved(state, { kind: "create", localId: "a" }, { id: 7, version: 1 });
  assert.equal(saved.masks[0].key, "id:7");
  assert.equal(saved.masks[0].pending, false);
  assert.equal(saved.masks[0].localId, "a", "later ops still find it by local id");
  assert.equal(saved.selectedKey, "id:7");
  const deleted = applySaved(saved, { kind: "delete", maskId: 7 }, null);
  assert.equal(deleted.masks.length, 0);
  assert.equal(applySaved(saved, { kind: "update", maskId: 99 }, { id: 99 }), saved);
});

test("deleting a saved mask waits for the server; an unsaved one is gone at once; the selection goes", () => {
  let state = addMask(fromServer([record(1)]), { key: "local:a", localId: "a", id: null, segmentation: seg() });
  state = select(state, "id:1");
  const one = deleteMask(state, "id:1");
  assert.equal(one.selectedKey, null);
  assert.equal(findMask(one, "id:1").pendingDelete, true);
  assert.deepEqual(visibleMasks(one).map((m) => m.key), ["local:a"]);
  const local = deleteMask(state, "local:a");
  assert.equal(findMask(local, "local:a"), null);
  assert.equal(local.selectedKey, "id:1");
});

test("the queue's state is reflected on the records, and nothing changes when it already is", () => {
  const state = fromServer([record(1), record(2)]);
  const items = [{ maskId: 2, status: "failed" }];
  const next = reflectQueue(state, items);
  assert.deepEqual(next.masks.map((m) => [m.pending, m.opStatus]), [[false, undefined], [true, "failed"]]);
  assert.equal(reflectQueue(next, items), next);
  assert.equal(reflectQueue(next, []).masks[1].pending, false);
});

test("selection toggles only when asked to; rejected masks are drawn only while selected", () => {
  const state = fromServer([record(1, { status: "rejected" }), record(2)]);
  assert.deepEqual(visibleMasks(state).map((m) => m.id), [2]);
  const selected = select(state, "id:1", { toggle: true });
  assert.equal(selectedMask(selected).id, 1);
  assert.deepEqual(visibleMasks(selected).map((m) => m.id), [1, 2]);
  assert.deepEqual(visibleMasks(selected, "id:2").map((m) => m.id), [1], "the mask being edited is the draft's");
  assert.equal(select(selected, "id:1", { toggle: true }).selectedKey, null);
  assert.equal(select(selected, "id:1"), selected, "selecting the selected mask again changes nothing");
});

test("labels are found by id or nested object; colours come from the label, else the palette", () => {
  const labels = [{ id: 1, name: "cat", color: "#ff0000" }, { id: 2, name: "dog", color: "bad" }];
  assert.equal(labelById(labels, 1).name, "cat");
  assert.equal(labelById(labels, "2").name, "dog");
  assert.equal(labelById(labels, { id: 2, name: "dog" }).name, "dog");
  assert.equal(labelById(labels, 3), null);
  assert.deepEqual(maskRgb(labels, { label: 1 }, 0), [255, 0, 0]);
  assert.equal(maskRgb(labels, { label: 2 }, 0).length, 3, "an unreadable colour falls back to the palette");
  assert.deepEqual(maskRgb(labels, { label: null }, 1), maskRgb([], { label: null }, 1));
});

test("a Store tells its listeners of each new state, and of none when nothing changed", () => {
  const store = new Store(fromServer([record(1)]));
  const seen = [];
  store.subscribe((state, previous) => seen.push([state.selectedKey, previous.selectedKey]));
  store.update(select, "id:1");
  store.update(select, "id:1");
  store.update(patchMask, "id:9", {});
  assert.deepEqual(seen, [["id:1", null]]);
  assert.ok(Object.isFrozen(store.state));
});
