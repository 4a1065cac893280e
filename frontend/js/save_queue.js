// The save queue: every change to a mask goes through it, so nothing the annotator accepted is lost
// to a network error, a reload or a closed tab. No DOM: the page draws its state (pending_panel.js).

import { ApiError, ConflictError, backoffDelay } from "./api.js";

/** In-memory stand-in for localStorage (Node, private mode, storage disabled). */
export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}

let opCounter = 0;
function newOpId() {
  const random = globalThis.crypto?.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `op-${random}-${++opCounter}`;
}

/**
 * Saves waiting for the server, persisted in storage (localStorage in the page) as the source of
 * truth, so a reload or a second tab sees them too. Ops run one at a time in order:
 *  - transient failures (network, 5xx, 429) stay `pending` and are retried with backoff, forever;
 *  - 409 marks the op `conflict` with the server's message; other 4xx mark it `failed`. Both stay
 *    visible until the annotator retries or discards them: nothing is dropped silently.
 * Ops: {kind: "create", imageId, localId, body} · {kind: "update", maskId | localId, body} ·
 * {kind: "delete", maskId | localId, version}. An update or delete of a mask whose create is still
 * waiting folds into that create, and later ops find the server id of a created mask by localId.
 */
export class SaveQueue {
  constructor({ client, storage = new MemoryStorage(), key = "maskmill:pending-saves:v1", baseDelayMs = 1000,
    maxDelayMs = 30000, onChange = () => {}, onSaved = () => {}, lock = null } = {}) {
    this.client = client;
    this.storage = storage;
    this.key = key;
    this.baseDelayMs = baseDelayMs;
    this.maxDelayMs = maxDelayMs;
    this.onChange = onChange;
    this.onSaved = onSaved;
    this.lock = lock; // optional (name, fn) => Promise, e.g. navigator.locks.request, to serialise tabs
    this._timer = null;
    this._running = null;
    this._stopped = false;
  }

  /** Snapshot of the ops (for the pending indicator and the mask list). */
  get items() {
    return this._read().ops.map((op) => ({ ...op }));
  }

  get pendingCount() {
    return this._read().ops.length;
  }

  serverId(localId) {
    return this._read().ids[localId] ?? null;
  }

  enqueue(op) {
    if (!["create", "update", "delete"].includes(op.kind)) throw new TypeError(`unknown save kind ${op.kind}`);
    const state = this._read();
    const folded = this._fold(state, op);
    const queued = folded ? null : { ...op, opId: newOpId(), status: "pending", attempts: 0, lastError: null,
      createdAt: Date.now() };
    if (queued) state.ops.push(queued);
    this._write(state);
    this.onChange(this.items);
    this.flush();
    return queued; // null when folded into an earlier create
  }

  /** Fold an update/delete into a create that has not been sent yet; true when folded. */
  _fold(state, op) {
    if (op.kind === "create" || !op.localId || state.ids[op.localId]) return false;
    const index = state.ops.findIndex((o) => o.kind === "create" && o.localId === op.localId && o.status !== "sending");
    if (index < 0) return false;
    if (op.kind === "delete") state.ops.splice(index, 1);
    else state.ops[index] = { ...state.ops[index], body: { ...state.ops[index].body, ...op.body } };
    return true;
  }

  discard(opId) {
    const state = this._read();
    state.ops = state.ops.filter((o) => o.opId !== opId || o.status === "sending");
    this._write(state);
    this.onChange(this.items);
  }

  /** Retry everything now (also conflicts and failures, e.g. after the annotator fixed the cause). */
  retryNow() {
    const state = this._read();
    for (const op of state.ops) if (op.status !== "sending") op.status = "pending";
    this._write(state);
    clearTimeout(this._timer);
    this._timer = null;
    this.onChange(this.items);
    return this.flush();
  }

  /** Send what can be sent; resolves when the queue is empty or waiting for a retry. */
  flush() {
    if (this._stopped) return Promise.resolve();
    if (!this._running) {
      const run = () => this._drain();
      const task = this.lock ? this.lock("maskmill-save-queue", run) : run();
      this._running = Promise.resolve(task).finally(() => {
        this._running = null;
      });
    }
    return this._running;
  }

  stop() {
    this._stopped = true;
    clearTimeout(this._timer);
  }

  async _drain() {
    // An op left "sending" (by a tab closed mid-request, or before a reload) was never confirmed:
    // send it again. Creates carry an Idempotency-Key so the server can recognise the repeat.
    const start = this._read();
    if (start.ops.some((o) => o.status === "sending")) {
      for (const op of start.ops) if (op.status === "sending") op.status = "pending";
      this._write(start);
    }
    for (let guard = 0; guard < 10000 && !this._stopped; guard++) {
      const state = this._read();
      const op = state.ops.find((o) => o.status === "pending");
      if (!op) return;
      if (this._timer) return; // a retry is scheduled: keep the order, wait for it
      op.status = "sending";
      this._write(state);
      this.onChange(this.items);
      let outcome;
      try {
        outcome = { ok: true, data: await this._send(op, state.ids) };
      } catch (error) {
        outcome = { ok: false, error };
      }
      const after = this._read();
      const current = after.ops.find((o) => o.opId === op.opId);
      if (!current) continue;
      if (outcome.ok) {
        after.ops = after.ops.filter((o) => o.opId !== op.opId);
        if (op.kind === "create" && op.localId && outcome.data?.id != null) after.ids[op.localId] = outcome.data.id;
        this._write(after);
        this.onSaved(op, outcome.data);
        this.onChange(this.items);
        continue;
      }
      const error = outcome.error;
      current.attempts += 1;
      current.lastError = error?.message ?? String(error);
      if (error instanceof ConflictError) current.status = "conflict";
      else if (error instanceof ApiError && !error.retryable) current.status = "failed";
      else current.status = "pending";
      this._write(after);
      this.onChange(this.items);
      if (current.status === "pending") {
        const delay = backoffDelay(current.attempts, this.baseDelayMs, this.maxDelayMs);
        this._timer = setTimeout(() => {
          this._timer = null;
          this.flush();
        }, delay);
        return;
      }
    }
  }

  _send(op, ids) {
    const maskId = op.maskId ?? (op.localId ? ids[op.localId] : undefined);
    if (op.kind === "create") return this.client.createMask(op.imageId, op.body, op.opId);
    if (maskId == null) {
      return Promise.reject(new ApiError("the mask this change belongs to was never saved", { status: 0 }));
    }
    if (op.kind === "update") return this.client.updateMask(maskId, op.body);
    return this.client.deleteMask(maskId, op.version);
  }

  _read() {
    let parsed = null;
    try {
      parsed = JSON.parse(this.storage.getItem(this.key) ?? "null");
    } catch {
      parsed = null;
    }
    return { ops: Array.isArray(parsed?.ops) ? parsed.ops : [], ids: parsed?.ids ?? {} };
  }

  _write(state) {
    const ids = Object.entries(state.ids).slice(-500); // bounded map of recent local → server ids
    this.storage.setItem(this.key, JSON.stringify({ ops: state.ops, ids: Object.fromEntries(ids) }));
  }
}

/**
 * What the pending indicator says about the queue's ops: how many conflict, failed or wait, its
 * state ("conflict" > "failed" > "pending" > "saved") and its text.
 */
export function pendingSummary(items) {
  const conflicts = items.filter((o) => o.status === "conflict").length;
  const failed = items.filter((o) => o.status === "failed").length;
  const waiting = items.length - conflicts - failed;
  const state = conflicts ? "conflict" : failed ? "failed" : items.length ? "pending" : "saved";
  const parts = [];
  if (conflicts) parts.push(`${conflicts} conflict${conflicts > 1 ? "s" : ""}`);
  if (failed) parts.push(`${failed} failed`);
  if (waiting) parts.push(`${waiting} pending`);
  return { conflicts, failed, waiting, state, text: parts.length ? parts.join(" · ") : "All saved" };
}
