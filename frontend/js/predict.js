// Asking the model: make sure the image's embedding exists (prepare, polled), turn the draft's
// prompts into a predict request, and put the answer into the history entry that asked for it.

import { ApiError, sleep } from "./api.js";
import { round2 } from "./geometry.js";
import { $ } from "./page.js";

/**
 * The predict request for the draft `state`, refining the answer of `previous` (the state before
 * this prompt): its logits handle, or the stored mask it started from on the first click.
 */
export function predictBody(state, previous) {
  const maskInput = previous.logitsHandle ?? (previous.baseMask && !previous.candidates.length && !previous.edited
    ? `mask:${previous.baseMask.id}` : null);
  return {
    points: state.points.map((p) => [round2(p.x), round2(p.y)]),
    labels: state.points.map((p) => p.label),
    box: state.box ? state.box.map(round2) : null,
    mask_input: maskInput,
    mask_index: maskInput && previous.candidates.length ? previous.candidateIndex : null,
    multimask: state.points.length + (state.box ? 1 : 0) === 1 && !maskInput,
  };
}

/**
 * The candidates of a predict answer ({rle, score}) and the index of the best-scored one; throws
 * when a mask does not have the image's size (it would not line up).
 */
export function readCandidates(answer, width, height) {
  const candidates = (answer?.masks ?? []).map((m, i) => ({ rle: m.segmentation, score: m.score ?? null,
    suggestions: answer?.suggestions?.[i] ?? null }));
  for (const c of candidates) {
    if (c.rle?.size?.[0] !== height || c.rle?.size?.[1] !== width) {
      throw new ApiError(`the model answered a ${c.rle?.size} mask for a ${height}×${width} image`);
    }
  }
  let best = 0;
  candidates.forEach((c, i) => {
    if ((c.score ?? 0) > (candidates[best].score ?? 0)) best = i;
  });
  return { candidates, best };
}

export class PredictController {
  /**
   * `history`: the draft store; `size()`: the image's {width, height}; `onPrompt()`: called for each
   * user prompt (effort counting); `isReady()`: the page has started.
   */
  constructor({ api, imageId, history, notices, size, onPrompt = () => {}, isReady = () => true,
    onAnswer = () => {} }) {
    Object.assign(this, { api, imageId, history, notices, size, onPrompt, isReady, onAnswer });
    this.prepared = false;
    this.preparing = false;
    this.inFlight = 0;
    this.seq = 0;
    this.deferred = null; // the `previous` state of a prompt placed before the embedding was ready
    this._preparation = null;
  }

  /** Make sure the image's embedding exists; one polling loop at a time however often it is asked. */
  prepare() {
    if (!this._preparation) {
      this._preparation = this._prepareLoop().finally(() => {
        this._preparation = null;
      });
    }
    return this._preparation;
  }

  async _prepareLoop() {
    this.prepared = false;
    let delay = 500;
    for (let attempt = 0; attempt < 600; attempt++) {
      let answer;
      try {
        answer = await this.api.prepare(this.imageId);
      } catch (error) {
        this.notices.showError(`Could not prepare the image for the model: ${error.message}`);
        answer = { state: "preparing" };
      }
      if (answer?.state === "ready") break;
      this.setPreparing(true);
      await sleep(delay);
      delay = Math.min(4000, delay * 1.5);
    }
    this.prepared = true;
    this.setPreparing(false);
    if (this.deferred) {
      const previous = this.deferred;
      this.deferred = null;
      this.send(previous);
    }
  }

  setPreparing(on) {
    this.preparing = on;
    $("preparing").hidden = !on;
    if (on) this.notices.setStatus("Preparing image…");
    else if (this.isReady()) this.notices.setStatus("Ready");
  }

  /** A user prompt step: commit it (undoable) and ask the model. */
  addPrompt(changes) {
    const previous = this.history.state;
    const requestId = ++this.seq;
    this.onPrompt();
    this.history.commit({ ...changes, requestId, waiting: true, edited: null });
    this.send(previous);
  }

  async send(previous) {
    const state = this.history.state;
    if (!state.points.length && !state.box) return;
    if (!this.prepared) {
      // Prompts placed before the embedding is ready are sent as soon as it is.
      this.deferred = this.deferred ?? previous;
      this.notices.setStatus(this.preparing ? "Preparing image…" : "Waiting for the model…");
      return;
    }
    const body = predictBody(state, previous);
    // Earlier requests are not aborted: each answer lands in the history entry that asked for it,
    // so undo shows the right mask; only the entry on screen changes what is drawn.
    const requestId = state.requestId;
    this.inFlight++;
    this.notices.setStatus("Thinking…");
    try {
      const answer = await this.api.predict(this.imageId, body);
      if (answer?.state === "preparing") {
        this.deferred = this.deferred ?? previous;
        this.prepared = false;
        this.prepare();
        return;
      }
      const { width, height } = this.size();
      const { candidates, best } = readCandidates(answer, width, height);
      this.onAnswer(answer);
      this.history.patchWhere((s) => s.requestId === requestId, {
        candidates, candidateIndex: best, logitsHandle: answer?.logits_handle ?? null, waiting: false,
      });
      this.notices.setFallback(answer?.fallback ? answer.model || "classic" : null);
      if (this.inFlight === 1) this.notices.setStatus("Ready");
    } catch (error) {
      this.history.patchWhere((s) => s.requestId === requestId, { waiting: false });
      this.notices.showError(`The model did not answer (${error.message}). Your prompt is kept: click again, or Ctrl+Z.`);
      this.notices.setStatus("Model error");
    } finally {
      this.inFlight--;
    }
  }
}
