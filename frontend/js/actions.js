// What keys and buttons do: the key handler (keymap.js names the action of each key) and the one
// switch from an action's name to the controller that carries it out; the help overlay.

import { zoomAt } from "./geometry.js";
import { actionForEvent, helpRows } from "./keymap.js";
import { isSelectedProposal } from "./masks_state.js";
import { $, kbd } from "./page.js";
import { cycleIndex, draftHasWork } from "./store.js";

export class Actions {
  /** `page`: the annotation page and its controllers. */
  constructor(page) {
    this.page = page;
  }

  onKey(event) {
    const page = this.page;
    if (page.picker.isOpen) return page.picker.onKey(event);
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
    if (event.key === " ") {
      page.pointer.holdSpace();
      event.preventDefault();
      return;
    }
    const action = actionForEvent(event);
    if (!action) return;
    if (!$("help-overlay").hidden && action !== "help" && action !== "cancel") return;
    event.preventDefault();
    this.run(action, event);
  }

  run(action, event = null) {
    const page = this.page;
    const d = page.history.state;
    const { selectedKey } = page.maskStore.state;
    const center = { x: page.view.cssWidth / 2, y: page.view.cssHeight / 2 };
    const tools = page.pointer;
    switch (action) {
      case "accept":
        // Enter on a selected proposal (no current mask): accept it as it is, choosing the label.
        // A confident label suggestion is pre-selected: Enter accepts mask and label in one key.
        if (page.suggestions.acceptTop()) return undefined;
        if (!draftHasWork(d) && !d.baseMask && isSelectedProposal(page.maskStore.state)) {
          return page.openPicker({ proposalKey: selectedKey });
        }
        return page.openPicker();
      case "pickLabel": return page.review.acceptWithLabelKey(event);
      case "acceptProposal": return page.review.quickAccept();
      case "nextProposal": return page.review.move(1);
      case "prevProposal": return page.review.move(-1);
      case "cycleNext":
      case "cyclePrev":
        if (d.candidates.length > 1) {
          page.history.commit({ candidateIndex: cycleIndex(d.candidateIndex, d.candidates.length,
            action === "cycleNext" ? 1 : -1), edited: null });
        }
        return;
      case "undo": return page.history.undo();
      case "redo": return page.history.redo();
      case "cancel":
        if (!$("help-overlay").hidden) return this.toggleHelp(false);
        if (selectedKey) return page.select(selectedKey);
        return page.editor.cancelDraft();
      case "delete": return page.editor.deleteSelected();
      case "reject": return page.review.rejectSelected();
      case "editSelected":
        if (selectedKey) page.editor.editMask(selectedKey);
        else page.notices.flash("Select a mask in the list first.");
        return;
      case "toggleHidden": return this.toggleHidden();
      case "toolPrompt": return tools.setTool("prompt");
      case "toolScribble": return tools.setTool("scribble");
      case "toolBrush": return tools.setTool("brush");
      case "toolEraser": return tools.setTool("eraser");
      case "brushSmaller": return tools.setBrushRadius(tools.brushRadius / 1.25);
      case "brushLarger": return tools.setBrushRadius(tools.brushRadius * 1.25);
      case "zoomIn": return page.view.setView(zoomAt(page.view.view, center, 1.25));
      case "zoomOut": return page.view.setView(zoomAt(page.view.view, center, 0.8));
      case "zoomFit": return page.view.fit();
      case "nextImage": return page.navigate(page.config.nextImageUrl, "next");
      case "prevImage": return page.navigate(page.config.prevImageUrl, "previous");
      case "help": return this.toggleHelp();
      default: return undefined;
    }
  }

  /** H: hide or show every mask on the image. */
  toggleHidden() {
    const page = this.page;
    page.hidden = !page.hidden;
    page.view.setHidden(page.hidden);
    $("toggle-hidden").setAttribute("aria-pressed", String(page.hidden));
  }

  toggleHelp(show) {
    const overlay = $("help-overlay");
    overlay.hidden = show === undefined ? !overlay.hidden : !show;
  }

  /** The help overlay lists every key binding; a click on its dimmed backdrop closes it. */
  bindHelp() {
    $("help-overlay").addEventListener("click", (e) => e.target === e.currentTarget && this.toggleHelp(false));
    const help = $("help-list");
    for (const [keys, text] of helpRows()) {
      const row = document.createElement("tr");
      const k = document.createElement("td");
      k.append(...keys.split(" / ").flatMap((part, i) => [i ? " / " : "", kbd(part)]));
      const t = document.createElement("td");
      t.textContent = text;
      row.append(k, t);
      help.append(row);
    }
  }
}
