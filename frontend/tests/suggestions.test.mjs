import assert from "node:assert/strict";
import { test } from "node:test";

import { keptText, suggestionFields, suggestionText, topSuggestion } from "../js/suggestions.js";

const confident = { unknown: false, labels: [{ id: 3, name: "tomato", probability: 0.8123 }, { id: 4, name: "leaf", probability: 0.1 }] };
const unsure = { unknown: true, labels: [{ id: 3, name: "tomato", probability: 0.31 }] };

test("only a confident top suggestion is pre-selected", () => {
  assert.equal(topSuggestion(confident).id, 3);
  assert.equal(topSuggestion(unsure), null);
  assert.equal(topSuggestion(null), null);
  assert.equal(topSuggestion({ unknown: false, labels: [] }), null);
});

test("a saved mask records the pre-selected suggestion and its probability", () => {
  assert.deepEqual(suggestionFields(confident), { suggested_label: 3, suggestion_probability: 0.8123 });
  assert.deepEqual(suggestionFields(unsure), {});
  assert.deepEqual(suggestionFields(undefined), {});
});

test("suggestion text shows names with rounded percentages", () => {
  assert.equal(suggestionText(confident), "tomato 81 % · leaf 10 %");
  assert.equal(suggestionText(null), "");
});

test("the mask list says whether a suggestion was kept", () => {
  const names = (id) => ({ 3: "tomato", 4: "leaf" })[id];
  assert.equal(keptText({ label: 3, suggested_label: 3 }, names), "suggested tomato · kept");
  assert.equal(keptText({ label: 4, suggested_label: 3 }, names), "suggested tomato · changed");
  assert.equal(keptText({ label: 4, suggested_label: 9 }, names), "suggested a deleted label · changed");
  assert.equal(keptText({ label: 4, suggested_label: null }, names), "");
});
