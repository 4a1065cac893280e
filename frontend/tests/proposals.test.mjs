import { test } from "node:test";
import assert from "node:assert/strict";
import { compareReadingOrder, isProposal, nextProposalKey, proposalCount, proposalOrder, quickLabel }
  from "../js/proposals.js";

const rle = { size: [10, 10], counts: "0" };
// id, [x, y] of the box's top-left corner, status
const mask = (id, x, y, status = "proposed", extra = {}) =>
  ({ id, key: `id:${id}`, bbox: [x, y, 5, 5], status, segmentation: rle, ...extra });

test("a proposal is a proposed mask still on the page", () => {
  assert.equal(isProposal(mask(1, 0, 0)), true);
  assert.equal(isProposal(mask(1, 0, 0, "accepted")), false);
  assert.equal(isProposal(mask(1, 0, 0, "rejected")), false);
  assert.equal(isProposal(mask(1, 0, 0, "proposed", { pendingDelete: true })), false);
  assert.equal(isProposal(mask(1, 0, 0, "proposed", { segmentation: null })), false);
  assert.equal(isProposal(null), false);
  assert.equal(proposalCount([mask(1, 0, 0), mask(2, 0, 0, "accepted"), mask(3, 9, 9)]), 2);
});

test("proposals are walked top to bottom, then left to right, then by id", () => {
  const masks = [mask(1, 50, 40), mask(2, 10, 40), mask(3, 90, 5), mask(4, 10, 40), mask(5, 0, 0, "accepted"),
    { ...mask(6, 0, 0), bbox: undefined }];
  assert.deepEqual(proposalOrder(masks).map((m) => m.id), [3, 2, 4, 1, 6]);
  assert.ok(compareReadingOrder(mask(1, 0, 1), mask(2, 99, 0)) > 0);
});

test("next and previous wrap around and skip decided masks", () => {
  const masks = [mask(1, 0, 30), mask(2, 0, 10), mask(3, 0, 20), mask(4, 0, 25, "accepted")];
  // reading order: 2 (y 10), 3 (y 20), [4 accepted, y 25], 1 (y 30)
  assert.equal(nextProposalKey(masks, null, 1), "id:2");
  assert.equal(nextProposalKey(masks, null, -1), "id:1");
  assert.equal(nextProposalKey(masks, "id:2", 1), "id:3");
  assert.equal(nextProposalKey(masks, "id:3", 1), "id:1"); // skips the accepted one
  assert.equal(nextProposalKey(masks, "id:1", 1), "id:2"); // wraps
  assert.equal(nextProposalKey(masks, "id:2", -1), "id:1"); // wraps backwards
  assert.equal(nextProposalKey(masks, "id:404", 1), "id:2"); // unknown key: from the start
});

test("after a decision the walk goes on from the decided mask, not from the start", () => {
  const masks = [mask(1, 0, 10), mask(2, 0, 20), mask(3, 0, 30)];
  masks[1].status = "accepted"; // the annotator just accepted #2
  assert.equal(nextProposalKey(masks, "id:2", 1), "id:3");
  masks[2].status = "rejected"; // then rejected #3: back round to #1
  assert.equal(nextProposalKey(masks, "id:3", 1), "id:1");
  masks[0].status = "accepted";
  assert.equal(nextProposalKey(masks, "id:1", 1), null); // none left
  assert.equal(nextProposalKey([], null, 1), null);
});

test("the only proposal left is its own next", () => {
  const masks = [mask(1, 0, 10), mask(2, 0, 20, "accepted")];
  assert.equal(nextProposalKey(masks, "id:1", 1), "id:1");
  assert.equal(nextProposalKey(masks, "id:2", -1), "id:1");
});

test("the one-key accept label: own label, last used, the only one, else ask", () => {
  const labels = [{ id: 7, name: "cat" }, { id: 8, name: "dog" }];
  assert.deepEqual(quickLabel({ label: 8 }, 7, labels), { label: 8 });
  assert.deepEqual(quickLabel({ label: { id: 8, name: "dog" } }, null, labels), { label: 8 });
  assert.deepEqual(quickLabel({ label: null }, 7, labels), { label: 7 });
  assert.equal(quickLabel({ label: null }, 99, labels), null); // a stale last label is not used
  assert.equal(quickLabel({ label: null }, null, labels), null); // two labels, nothing to go on: ask
  assert.deepEqual(quickLabel({ label: null }, null, [labels[0]]), { label: 7 });
  assert.deepEqual(quickLabel({ label: null }, null, []), { label: null }); // a project without labels
});
