// The image's masks as the page knows them: the server's records plus the changes still waiting in
// the save queue (optimistic: shown at once, flagged `pending`). State for a Store (store.js):
// {masks, selectedKey, hadProposals}; every function here is pure and returns a new state (the same
// object when nothing changed), so listeners redraw only on real change. Records are frozen and
// keep their `segmentation` object across changes, so decoded pixels can be cached by it.
//
// A record: the API's mask fields plus `key` ("id:<id>" once saved, "local:<localId>" before),
// `localId` (a mask created on this page), `pending`, `opStatus`, `opError`, `pendingDelete`.

import { isProposal, proposalCount } from "./proposals.js";
import { parseColor, paletteColor } from "./maskops.js";

export const EMPTY_MASKS = Object.freeze({ masks: Object.freeze([]), selectedKey: null, hadProposals: false });

const freezeMasks = (masks) => Object.freeze(masks.map((m) => (Object.isFrozen(m) ? m : Object.freeze(m))));
const withMasks = (state, masks) => Object.freeze({ ...state, masks: freezeMasks(masks) });

/** The server's records, none pending. */
export function fromServer(records) {
  return withMasks(EMPTY_MASKS, records.map((m) => ({ ...m, key: `id:${m.id}`, pending: false })));
}

/**
 * The state an image opens with: the server's records under the queue's waiting ops for it;
 * `hadProposals` remembers that it opened with proposals to review (the panel stays once they are done).
 */
export function openImage(records, ops, imageId, userName = null) {
  const state = applyPendingOps(fromServer(records), ops, imageId, userName);
  return Object.freeze({ ...state, hadProposals: proposalCount(state.masks) > 0 });
}

/** Whether the save-queue op `op` is about the mask `m` (by server id, or by the page's local id). */
export function opTargets(op, m) {
  return (op.maskId != null && m.id === op.maskId) || Boolean(op.localId && m.localId === op.localId);
}

export function findMask(state, key) {
  return key == null ? null : state.masks.find((m) => m.key === key) ?? null;
}

export function selectedMask(state) {
  return findMask(state, state.selectedKey);
}

/** The masks the list shows (a delete waiting for the server is already gone from the page). */
export function listedMasks(state) {
  return state.masks.filter((m) => !m.pendingDelete);
}

/**
 * The masks drawn on the image, bottom to top. Rejected masks stay off it unless selected, so the
 * annotator can look at one to fix it; the mask being edited (`editingKey`) is the draft's to draw.
 */
export function visibleMasks(state, editingKey = null) {
  return state.masks.filter((m) => (m.status !== "rejected" || m.key === state.selectedKey) && !m.pendingDelete &&
    m.key !== editingKey && m.segmentation);
}

/**
 * Lay the save queue's waiting ops for this image over the server's records (a reload, another
 * tab): creates appear as local masks made by `userName`, updates and deletes as pending changes.
 */
export function applyPendingOps(state, ops, imageId, userName = null) {
  const masks = [...state.masks];
  for (const op of ops) {
    if (op.imageId !== imageId) continue;
    if (op.kind === "create") {
      masks.push({ ...op.body, id: null, key: `local:${op.localId}`, localId: op.localId, pending: true,
        annotator_name: userName, opError: op.lastError, opStatus: op.status });
      continue;
    }
    const index = masks.findIndex((m) => opTargets(op, m));
    if (index < 0) continue;
    masks[index] = op.kind === "update"
      ? { ...masks[index], ...op.body, pending: true, opStatus: op.status, opError: op.lastError }
      : { ...masks[index], pendingDelete: true, pending: true };
  }
  return withMasks(state, masks);
}

/** A change the page made (accept, reject, edit): shown at once, pending until the server has it. */
export function patchMask(state, key, changes) {
  const index = state.masks.findIndex((m) => m.key === key);
  if (index < 0) return state;
  const masks = [...state.masks];
  masks[index] = { ...masks[index], ...changes };
  return withMasks(state, masks);
}

export function addMask(state, record) {
  return withMasks(state, [...state.masks, record]);
}

/**
 * Delete a mask on the page: a saved one waits, flagged, for the server; one never saved is gone.
 * The selection goes with it.
 */
export function deleteMask(state, key) {
  const m = findMask(state, key);
  if (!m) return state;
  const masks = m.id == null
    ? state.masks.filter((x) => x !== m)
    : state.masks.map((x) => (x === m ? { ...x, pendingDelete: true, pending: true } : x));
  return Object.freeze({ ...withMasks(state, masks), selectedKey: state.selectedKey === key ? null : state.selectedKey });
}

/** The server confirmed `op` with `data` (the stored record): the local mask becomes that record. */
export function applySaved(state, op, data) {
  const index = state.masks.findIndex((m) => opTargets(op, m));
  if (index < 0) return state;
  if (op.kind === "delete") return withMasks(state, state.masks.filter((_, i) => i !== index));
  if (!data) return state;
  const old = state.masks[index];
  const saved = { ...old, ...data, key: `id:${data.id}`, localId: op.localId ?? old.localId, pending: false };
  const masks = [...state.masks];
  masks[index] = saved;
  return Object.freeze({ ...withMasks(state, masks), selectedKey: state.selectedKey === old.key ? saved.key : state.selectedKey });
}

/** Reflect the queue's ops (`items`) on the records: pending while an op waits, with its status. */
export function reflectQueue(state, items) {
  let changed = false;
  const masks = state.masks.map((m) => {
    const op = items.find((o) => (m.id != null && o.maskId === m.id) || (m.localId && o.localId === m.localId));
    const pending = Boolean(op);
    if (m.pending === pending && m.opStatus === op?.status) return m;
    changed = true;
    return { ...m, pending, opStatus: op?.status };
  });
  return changed ? withMasks(state, masks) : state;
}

/** Select `key`, or (`toggle`) deselect it when it is already selected. */
export function select(state, key, { toggle = false } = {}) {
  const selectedKey = toggle && state.selectedKey === key ? null : key;
  return selectedKey === state.selectedKey ? state : Object.freeze({ ...state, selectedKey });
}

/** How many proposals wait for a decision. */
export function proposalsLeft(state) {
  return proposalCount(state.masks);
}

export function isSelectedProposal(state) {
  return isProposal(selectedMask(state));
}

/** The project label a mask's `label` names (an id, or a nested {id, name}), or null. */
export function labelById(labels, label) {
  const id = label && typeof label === "object" ? label.id : label;
  return labels.find((l) => String(l.id) === String(id)) ?? null;
}

/** A mask's colour: its label's, else a palette colour by label (or by position without a label). */
export function maskRgb(labels, mask, index) {
  const label = labelById(labels, mask.label);
  try {
    if (label?.color) return parseColor(label.color);
  } catch {
    /* fall through to the palette */
  }
  return parseColor(paletteColor(label ? labels.indexOf(label) : index));
}
