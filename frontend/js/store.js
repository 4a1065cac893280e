// Undoable state for the mask being made (the "draft"): prompts, model candidates, brush edits.
//
// The state is an immutable plain object; every user step commits a new one and pushes the old
// one on the undo stack, so Ctrl+Z walks back across prompts and brush strokes alike. Masks
// inside the state are COCO RLE objects (compact), never full-size pixel buffers, so a long
// history of a 12-megapixel image stays small. Answers from the model arrive after the click
// that asked for them: `patchWhere` fills them into whichever history entry made the request,
// so undo/redo replays the prompt together with its answer.

export const EMPTY_DRAFT = Object.freeze({
  points: Object.freeze([]), // [{x, y, label: 1|0}] in image pixels
  box: null, // [x0, y0, x1, y1] or null
  candidates: Object.freeze([]), // [{rle, score}] from the model
  candidateIndex: 0,
  logitsHandle: null, // the model's low-res logits of this round, sent back as mask_input
  requestId: 0, // id of the predict request this state waits for (0: none)
  edited: null, // RLE after brush/eraser edits, overrides the selected candidate
  baseMask: null, // {id, version, rle, label, source} when started from a stored mask
});

export class History {
  constructor(initial = EMPTY_DRAFT, { limit = 300 } = {}) {
    this._present = initial;
    this._past = [];
    this._future = [];
    this._limit = limit;
    this._listeners = new Set();
  }

  get state() {
    return this._present;
  }

  get canUndo() {
    return this._past.length > 0;
  }

  get canRedo() {
    return this._future.length > 0;
  }

  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** A user step: the new state becomes present, the old one undoable. */
  commit(changes) {
    const next = Object.freeze({ ...this._present, ...changes });
    this._past.push(this._present);
    if (this._past.length > this._limit) this._past.shift();
    this._future = [];
    this._set(next);
    return next;
  }

  /** Replace the whole history (new image, mask saved): nothing to undo into. */
  reset(state = EMPTY_DRAFT) {
    this._past = [];
    this._future = [];
    this._set(Object.freeze({ ...state }));
  }

  undo() {
    if (!this._past.length) return false;
    this._future.push(this._present);
    this._set(this._past.pop());
    return true;
  }

  redo() {
    if (!this._future.length) return false;
    this._past.push(this._present);
    this._set(this._future.pop());
    return true;
  }

  /** Apply `changes` to every state (past, present, future) for which `predicate` holds. */
  patchWhere(predicate, changes) {
    const patch = (s) => (predicate(s) ? Object.freeze({ ...s, ...changes }) : s);
    this._past = this._past.map(patch);
    this._future = this._future.map(patch);
    const next = patch(this._present);
    if (next !== this._present) this._set(next);
  }

  _set(state) {
    const previous = this._present;
    this._present = state;
    for (const listener of this._listeners) listener(state, previous);
  }
}

/** The mask the draft currently shows: edits first, else the selected candidate, else the base mask. */
export function currentDraftRle(draft) {
  if (draft.edited) return draft.edited;
  const candidate = draft.candidates[draft.candidateIndex];
  if (candidate) return candidate.rle;
  return draft.baseMask ? draft.baseMask.rle : null;
}

/** True when the draft holds anything the annotator would lose by discarding it. */
export function draftHasWork(draft) {
  return draft.points.length > 0 || draft.box !== null || draft.edited !== null || draft.candidates.length > 0;
}

/** Next candidate index when cycling (Tab forward, Shift+Tab back). */
export function cycleIndex(index, count, step = 1) {
  if (count <= 0) return 0;
  return (((index + step) % count) + count) % count;
}
