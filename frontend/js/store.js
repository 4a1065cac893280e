// The page's one state model: immutable plain objects held in a Store, replaced (never mutated) by
// pure functions, with listeners told of every change. Two stores use it: the undoable draft
// (History, below) and the image's masks (masks_state.js), which must not be undone by Ctrl+Z.
//
// The draft is the mask being made: prompts, model candidates, brush edits. Every user step commits
// a new state and pushes the old one on the undo stack, so Ctrl+Z walks back across prompts and
// brush strokes alike. Masks inside the state are COCO RLE objects (compact), never full-size pixel
// buffers, so a long history of a 12-megapixel image stays small. Answers from the model arrive
// after the click that asked for them: `patchWhere` fills them into whichever history entry made
// the request, so undo/redo replays the prompt together with its answer.

/** An immutable state and its listeners: `set` replaces the state (frozen), `update` maps it. */
export class Store {
  constructor(initial) {
    this._present = Object.freeze(initial);
    this._listeners = new Set();
  }

  get state() {
    return this._present;
  }

  subscribe(listener) {
    this._listeners.add(listener);
    return () => this._listeners.delete(listener);
  }

  /** Replace the state; listeners hear of it only when it is a different object. */
  set(state) {
    if (state !== this._present) this._set(Object.freeze(state));
    return this._present;
  }

  /** `fn(state) → state`: a pure step on the present state. */
  update(fn, ...args) {
    return this.set(fn(this._present, ...args));
  }

  _set(state) {
    const previous = this._present;
    this._present = state;
    for (const listener of this._listeners) listener(state, previous);
  }
}

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

/** The undoable draft: a Store whose every `commit` can be undone and redone. */
export class History extends Store {
  constructor(initial = EMPTY_DRAFT, { limit = 300 } = {}) {
    super(initial);
    this._past = [];
    this._future = [];
    this._limit = limit;
  }

  get canUndo() {
    return this._past.length > 0;
  }

  get canRedo() {
    return this._future.length > 0;
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

  /** Outside the undo stack, `set` is a reset: nothing to undo into. */
  set(state) {
    this.reset(state);
    return this._present;
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
