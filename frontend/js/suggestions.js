// Label suggestions: the project's label head names the likely labels of the current mask (from the
// predict answer) and of each proposal (GET /api/images/{id}/suggestions). A confident top label is
// pre-selected, so Enter accepts mask and label in one key; "find every <label>" proposes the
// generator's masks of one of the project's labels (not open-vocabulary text).

import { $, span } from "./page.js";
import { findMask } from "./masks_state.js";

/** The pre-selected suggestion of a `{unknown, labels: [{id, name, probability}]}` answer, or null
 * when there is none or the head is not confident (`unknown`). */
export function topSuggestion(suggestions) {
  if (!suggestions || suggestions.unknown) return null;
  return suggestions.labels?.[0] ?? null;
}

/** What a saved mask records about its suggestion: the pre-selected label and its probability. */
export function suggestionFields(suggestions) {
  const top = topSuggestion(suggestions);
  return top ? { suggested_label: top.id, suggestion_probability: top.probability } : {};
}

/** "tomato 82 % · leaf 10 %" (the shown text of a suggestion list). */
export function suggestionText(suggestions) {
  return (suggestions?.labels ?? []).map((s) => `${s.name} ${Math.round(100 * s.probability)} %`).join(" · ");
}

/** What the mask list says about a saved mask's suggestion ("" when none was made). */
export function keptText(mask, labelName) {
  if (mask?.suggested_label == null) return "";
  const name = labelName(mask.suggested_label) ?? "a deleted label";
  return mask.label === mask.suggested_label ? `suggested ${name} · kept` : `suggested ${name} · changed`;
}

export class SuggestionsController {
  /** `page`: the annotation page (api, imageId, history, maskStore, labels, notices, reloadMasks). */
  constructor(page) {
    this.page = page;
    this.byMask = new Map(); // saved mask id → suggestions
    this.reason = null; // why there are none (no head yet, ...)
  }

  /** Suggestions of the current mask (a predict answer's candidate), else of the selected proposal. */
  current() {
    const d = this.page.history.state;
    if (d.candidates.length) return d.edited ? null : d.candidates[d.candidateIndex]?.suggestions ?? null;
    if (d.baseMask?.id != null) return this.byMask.get(d.baseMask.id) ?? null;
    const m = findMask(this.page.maskStore.state, this.page.maskStore.state.selectedKey);
    return m?.id != null ? this.byMask.get(m.id) ?? null : null;
  }

  forMask(mask) {
    return mask?.id != null ? this.byMask.get(mask.id) ?? null : null;
  }

  /** The label the picker highlights first: the top suggestion, confident or not. */
  preferredLabel() {
    return this.current()?.labels?.[0]?.id ?? null;
  }

  noteAnswer(answer) {
    if (answer?.suggestions_unavailable) this.reason = answer.suggestions_unavailable;
    else if (answer?.suggestions) this.reason = null;
  }

  async loadForProposals() {
    try {
      const answer = await this.page.api.request("GET", `/images/${this.page.imageId}/suggestions`);
      this.reason = answer?.available ? null : answer?.reason ?? null;
      for (const [id, s] of Object.entries(answer?.masks ?? {})) this.byMask.set(Number(id), s);
    } catch (error) {
      this.reason = `suggestions could not be loaded (${error.message})`;
    }
    this.render();
  }

  render() {
    const node = $("suggestions");
    if (!node) return;
    const suggestions = this.current();
    node.replaceChildren();
    if (suggestions?.labels?.length) {
      const top = topSuggestion(suggestions);
      suggestions.labels.forEach((s, i) => {
        const chip = span(`chip${top && i === 0 ? " preselected" : ""}`,
          `${s.name} ${Math.round(100 * s.probability)} %`, "suggestion");
        chip.dataset.labelId = s.id;
        chip.title = i === 0 && top ? "Pre-selected: Enter accepts with this label" : "Click to accept with this label";
        chip.addEventListener("click", () => this.acceptWith(s.id));
        node.append(chip);
      });
      node.append(span("muted", top ? " Enter accepts with the first." : " Not sure: Enter opens the picker."));
    } else {
      node.append(span("muted", this.reason ?? "No suggestion for this mask."));
    }
  }

  /** Enter: accept the current mask or the selected proposal with the confident top suggestion;
   * false when there is none (the caller opens the picker). */
  acceptTop() {
    const top = topSuggestion(this.current());
    if (!top || !this.page.labelById(top.id)) return false;
    return this.acceptWith(top.id);
  }

  acceptWith(labelId) {
    const page = this.page;
    const d = page.history.state;
    if (d.candidates.length || d.baseMask) {
      page.editor.accept(labelId);
      return true;
    }
    const key = page.maskStore.state.selectedKey;
    if (key && findMask(page.maskStore.state, key)?.status === "proposed") {
      page.review.accept(labelId, key);
      return true;
    }
    return false;
  }

  bindFind() {
    const form = $("find-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("find-label");
      const label = input.value.trim();
      if (!label) return;
      $("find-result").textContent = "Looking…";
      try {
        const answer = await this.page.api.request("POST", `/images/${this.page.imageId}/find`,
          { body: { label }, retries: 0 });
        $("find-result").textContent = `${answer.proposed.length} ${answer.label.name} mask` +
          `${answer.proposed.length === 1 ? "" : "s"} proposed (of ${answer.candidates} the model found)` +
          (answer.duplicates ? `; ${answer.duplicates} already on the image` : "");
        if (answer.proposed.length) await this.page.reloadMasks();
        await this.loadForProposals();
      } catch (error) {
        const detail = error.body?.label ?? error.body?.detail;
        $("find-result").textContent = Array.isArray(detail) ? detail.join(" ") : detail ?? error.message;
      }
      this.page.canvas.focus();
    });
  }
}
