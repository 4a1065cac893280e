// The label picker: opens on accept, 1–9 or type to search, ↑/↓, Enter; Esc cancels. It also
// remembers the label used last on this page (the one-key accept of a proposal reuses it).

import { paletteColor } from "./maskops.js";
import { $, span } from "./page.js";
import { cycleIndex } from "./store.js";

/** The labels whose name contains `query` (case-insensitive; all of them for an empty query). */
export function matchLabels(labels, query) {
  const q = String(query ?? "").trim().toLowerCase();
  return labels.filter((l) => !q || l.name.toLowerCase().includes(q));
}

/** The label a key 1–9 names (its place in the project's list), or null. */
export function labelForKey(labels, key) {
  return /^[1-9]$/.test(String(key)) ? labels[Number(key) - 1] ?? null : null;
}

export class LabelPicker {
  /**
   * `labels()`: the project's labels; `onPick(labelId, target)`: a label (or null: the project has
   * none) was chosen for `target` (null: the current mask; {proposalKey}: a proposal as it is).
   */
  constructor({ labels, onPick, focusCanvas }) {
    this.labels = labels;
    this.onPick = onPick;
    this.focusCanvas = focusCanvas;
    this.isOpen = false;
    this.index = 0;
    this.target = null;
    this.lastLabelId = null;
  }

  bind() {
    const search = $("label-search");
    search.addEventListener("input", () => {
      this.index = 0;
      this.render();
    });
    search.addEventListener("keydown", (e) => {
      e.stopPropagation();
      this.onKey(e);
    });
    // A click on the dimmed backdrop closes the dialog.
    $("label-picker").addEventListener("click", (e) => e.target === e.currentTarget && this.close());
  }

  /** The label chosen last on this page, the picker's first highlight and the quick accept's choice. */
  remember(labelId) {
    if (labelId != null) this.lastLabelId = labelId;
  }

  /** Open for `target`; `preferredId` (the top label suggestion) is highlighted first, else the last used. */
  open(target = null, preferredId = null) {
    this.target = target;
    const labels = this.labels();
    if (!labels.length) {
      this.pick(null);
      return;
    }
    this.isOpen = true;
    $("label-picker").hidden = false;
    const search = $("label-search");
    search.value = "";
    const first = labels.some((l) => l.id === preferredId) ? preferredId : this.lastLabelId;
    this.index = Math.max(0, labels.findIndex((l) => l.id === first));
    this.render();
    search.focus();
  }

  close() {
    this.isOpen = false;
    $("label-picker").hidden = true;
    this.focusCanvas();
  }

  matches() {
    return matchLabels(this.labels(), $("label-search").value);
  }

  render() {
    const labels = this.labels();
    const list = $("label-options");
    list.replaceChildren();
    const matches = this.matches();
    this.index = Math.min(this.index, Math.max(0, matches.length - 1));
    matches.forEach((label, i) => {
      const item = document.createElement("li");
      item.dataset.testid = "label-option";
      item.dataset.labelId = label.id;
      item.className = i === this.index ? "active" : "";
      const number = labels.indexOf(label) + 1;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = label.color ?? paletteColor(number - 1);
      item.append(span("key", number <= 9 ? String(number) : ""), swatch, span("", label.name));
      item.addEventListener("click", () => this.pick(label.id));
      list.append(item);
    });
  }

  pick(labelId) {
    const target = this.target;
    this.target = null;
    if (this.isOpen) this.close();
    this.onPick(labelId, target);
  }

  onKey(event) {
    if (event.key === "Escape") {
      this.close();
    } else if (event.key === "Enter") {
      const match = this.matches()[this.index];
      if (match) this.pick(match.id);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      this.index = cycleIndex(this.index, this.matches().length, event.key === "ArrowDown" ? 1 : -1);
      this.render();
    } else if (/^[1-9]$/.test(event.key) && !$("label-search").value) {
      const label = labelForKey(this.labels(), event.key);
      if (label) this.pick(label.id);
    } else {
      return;
    }
    event.preventDefault();
  }
}
