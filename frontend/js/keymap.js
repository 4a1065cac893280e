// Every shortcut of the annotation page, in one table: the key handler dispatches from it and the
// help overlay (?) is rendered from it, so the two cannot drift apart.

export const KEY_BINDINGS = Object.freeze([
  { action: "accept", keys: ["Enter"],
    help: "Accept the current mask (or, with none, the selected proposal) with the pre-selected suggested " +
      "label; without a confident suggestion, opens the label picker" },
  { action: "pickLabel", keys: ["1", "2", "3", "4", "5", "6", "7", "8", "9"], display: "1 – 9",
    help: "In the label picker: choose that label and save (or type to search, ↑/↓, Enter). " +
      "On a selected proposal, or one being fixed: accept it with that label" },
  { action: "cycleNext", keys: ["Tab"], help: "Next candidate mask of an ambiguous prompt" },
  { action: "cyclePrev", keys: ["Shift+Tab"], help: "Previous candidate mask" },
  { action: "undo", keys: ["Ctrl+z"], help: "Undo (prompts, boxes, scribbles, brush strokes)" },
  { action: "redo", keys: ["Ctrl+Shift+z", "Ctrl+y"], help: "Redo" },
  { action: "cancel", keys: ["Escape"], help: "Discard the current mask (undoable) / close a dialog" },
  { action: "delete", keys: ["Delete", "Backspace"],
    help: "Delete the selected saved mask (press twice to confirm); a proposal is rejected instead" },
  { action: "nextProposal", keys: ["j", "ArrowDown"], help: "Select the next proposed mask (top to bottom)" },
  { action: "prevProposal", keys: ["k", "ArrowUp"], help: "Select the previous proposed mask" },
  { action: "acceptProposal", keys: ["a"],
    help: "Accept the selected proposed mask as it is (or the one being fixed): its own label, else the last " +
      "used one (the picker only when there is none yet); then the next proposal" },
  { action: "reject", keys: ["x"], help: "Reject the selected proposed (semi/auto) mask; then the next proposal" },
  { action: "editSelected", keys: ["m"],
    help: "Fix the selected proposal, or start from any selected saved mask: refine it with clicks, brush or " +
      "eraser, then A (or Enter) to accept" },
  { action: "toggleHidden", keys: ["h"], help: "Hide / show all masks" },
  { action: "toolPrompt", keys: ["v"], help: "Point & box tool: click = positive, right/Shift+click = negative, drag = box" },
  { action: "toolScribble", keys: ["s"], help: "Scribble tool: draw over the object (right/Shift-drag: background)" },
  { action: "toolBrush", keys: ["b"], help: "Brush: paint onto the current mask" },
  { action: "toolEraser", keys: ["e"], help: "Eraser: remove from the current mask" },
  { action: "brushSmaller", keys: ["["], help: "Smaller brush / eraser" },
  { action: "brushLarger", keys: ["]"], help: "Larger brush / eraser" },
  { action: "zoomIn", keys: ["+", "="], help: "Zoom in" },
  { action: "zoomOut", keys: ["-"], help: "Zoom out" },
  { action: "zoomFit", keys: ["f", "0"], help: "Fit the image to the window" },
  { action: "nextImage", keys: ["n", "ArrowRight"], help: "Next image" },
  { action: "prevImage", keys: ["p", "ArrowLeft"], help: "Previous image" },
  { action: "help", keys: ["?"], help: "Show / hide this help" },
]);

export const MOUSE_BINDINGS = Object.freeze([
  { keys: "Left click", help: "Positive point (object)" },
  { keys: "Right click / Shift+click", help: "Negative point (background)" },
  { keys: "Drag", help: "Box prompt (replaces the previous box)" },
  { keys: "Alt+click", help: "Select the saved mask under the pointer" },
  { keys: "Wheel", help: "Zoom at the pointer" },
  { keys: "Space+drag / middle drag", help: "Pan" },
]);

/**
 * A keyboard event → the combo string used in KEY_BINDINGS ("Ctrl+Shift+z", "?", "ArrowLeft").
 * Cmd counts as Ctrl (macOS). Shift is only named for letters and named keys, since for
 * symbols it is part of the character ("?" is Shift+/ on most layouts).
 */
export function comboFromEvent(event) {
  let key = event.key;
  if (key === " " || key === "Spacebar") key = "Space";
  const isChar = key.length === 1;
  const isLetter = isChar && key.toLowerCase() !== key.toUpperCase();
  if (isLetter) key = key.toLowerCase();
  const parts = [];
  if (event.ctrlKey || event.metaKey) parts.push("Ctrl");
  if (event.altKey) parts.push("Alt");
  if (event.shiftKey && (!isChar || isLetter)) parts.push("Shift");
  parts.push(key);
  return parts.join("+");
}

const BY_COMBO = new Map(KEY_BINDINGS.flatMap((b) => b.keys.map((k) => [k, b.action])));

/** The action bound to an event, or null. */
export function actionForEvent(event) {
  return BY_COMBO.get(comboFromEvent(event)) ?? null;
}

/** Rows for the help overlay: [keys as shown, what they do]. */
export function helpRows() {
  return [
    ...KEY_BINDINGS.map((b) => [b.display ?? b.keys.join(" / "), b.help]),
    ...MOUSE_BINDINGS.map((b) => [b.keys, b.help]),
  ];
}
