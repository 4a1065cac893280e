// The side list names who made each mask, never a bare database id.
import { test } from "node:test";
import assert from "node:assert/strict";

import { maskAuthor } from "../js/masklist.js";

test("the annotator's name from the API is what the list shows", () => {
  assert.equal(maskAuthor({ annotator: 7, annotator_name: "alice", source: "manual" }), "alice");
  assert.equal(maskAuthor({ annotator: { id: 7, username: "bob" }, source: "manual" }), "bob");
  assert.equal(maskAuthor({ annotator: "carol", source: "manual" }), "carol");
});

test("masks no person made are the model's", () => {
  assert.equal(maskAuthor({ annotator: null, annotator_name: null, source: "auto" }), "model");
  assert.equal(maskAuthor({ annotator: null, source: "semi" }), "model");
  assert.equal(maskAuthor({ annotator: null, source: "manual" }), "–");
});

test("an id without a name is never shown as a bare number", () => {
  assert.equal(maskAuthor({ annotator: 7, source: "manual" }), "user #7");
  assert.equal(maskAuthor({ annotator: "12", source: "manual" }), "user #12");
  assert.notEqual(maskAuthor({ annotator: 3, annotator_name: "", source: "manual" }), "3");
});

test("the page's own user is named even when the server sent only their id", () => {
  const me = { id: 7, username: "alice" };
  assert.equal(maskAuthor({ annotator: 7, source: "manual" }, me), "alice");
  assert.equal(maskAuthor({ annotator: "7", source: "manual" }, me), "alice");
  assert.equal(maskAuthor({ annotator: 8, source: "manual" }, me), "user #8");
  assert.equal(maskAuthor({ annotator: { id: 9 }, source: "manual" }, me), "user #9");
  assert.equal(maskAuthor({ annotator: null, source: "auto" }, me), "model");
});
