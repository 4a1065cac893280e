import { test } from "node:test";
import assert from "node:assert/strict";
import { KEY_BINDINGS, actionForEvent, comboFromEvent, helpRows } from "../js/keymap.js";
import { MaskEffort } from "../js/effort.js";

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, metaKey: false, altKey: false, shiftKey: false, ...mods });

test("the required shortcuts are bound", () => {
  assert.equal(actionForEvent(key("z", { ctrlKey: true })), "undo");
  assert.equal(actionForEvent(key("Z", { ctrlKey: true, shiftKey: true })), "redo");
  assert.equal(actionForEvent(key("z", { metaKey: true })), "undo");
  assert.equal(actionForEvent(key("Enter")), "accept");
  assert.equal(actionForEvent(key("Tab")), "cycleNext");
  assert.equal(actionForEvent(key("Tab", { shiftKey: true })), "cyclePrev");
  assert.equal(actionForEvent(key("Delete")), "delete");
  assert.equal(actionForEvent(key("H", { shiftKey: true })), null); // Shift+H is not H
  assert.equal(actionForEvent(key("h")), "toggleHidden");
  assert.equal(actionForEvent(key("ArrowRight")), "nextImage");
  assert.equal(actionForEvent(key("p")), "prevImage");
  assert.equal(actionForEvent(key("?", { shiftKey: true })), "help");
  assert.equal(actionForEvent(key("[")), "brushSmaller");
  assert.equal(actionForEvent(key("]")), "brushLarger");
  assert.equal(actionForEvent(key("7")), "pickLabel");
  assert.equal(actionForEvent(key("a")), "acceptProposal");
  assert.equal(actionForEvent(key("x")), "reject");
  assert.equal(actionForEvent(key("m")), "editSelected");
  assert.equal(actionForEvent(key("j")), "nextProposal");
  assert.equal(actionForEvent(key("ArrowDown")), "nextProposal");
  assert.equal(actionForEvent(key("k")), "prevProposal");
  assert.equal(actionForEvent(key("ArrowUp")), "prevProposal");
  assert.equal(actionForEvent(key("A", { shiftKey: true })), null);
  assert.equal(comboFromEvent(key(" ")), "Space");
});

test("no key is bound twice, and the help lists every binding", () => {
  const all = KEY_BINDINGS.flatMap((b) => b.keys);
  assert.equal(new Set(all).size, all.length);
  const helpText = helpRows().map((r) => r.join(" ")).join("\n");
  for (const b of KEY_BINDINGS) assert.ok(helpText.includes(b.display ?? b.keys.join(" / ")), b.action);
  assert.match(helpText, /Right click/);
});

test("effort counts clicks and visible time from the first prompt", () => {
  let t = 1000;
  const effort = new MaskEffort(() => t);
  t += 5000;
  assert.equal(effort.seconds, 0); // nothing before the first prompt
  effort.click();
  t += 4000;
  effort.click();
  effort.pause(); // tab hidden
  t += 60000;
  effort.resume();
  t += 2000;
  assert.equal(effort.clicks, 2);
  assert.equal(effort.seconds, 6);
  assert.equal(effort.overHint(5), true);
  assert.equal(effort.overHint(30), false);
  effort.reset();
  assert.equal(effort.overHint(5), false);
});

test("a proposal's decision time runs from begin() without counting a click", () => {
  let t = 0;
  const effort = new MaskEffort(() => t);
  effort.begin(); // the proposal is selected
  t += 3000;
  assert.equal(effort.clicks, 0);
  assert.equal(effort.seconds, 3);
  effort.click(); // fixing it: a stroke counts, the clock does not restart
  effort.begin();
  t += 1000;
  assert.equal(effort.clicks, 1);
  assert.equal(effort.seconds, 4);
});
