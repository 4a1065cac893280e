// The annotation page: wires the API, the undoable draft, the canvas and the keyboard together.
// Configuration comes from the JSON blob the Django view renders with json_script
// (#maskmill-config): {imageId, projectId, csrfToken, apiBase, labels, user, nextImageUrl,
// prevImageUrl, secondsPerMaskHint, leaseSeconds}.

import { ApiClient, ApiError, MemoryStorage, SaveQueue, sleep } from "./api.js";
import { CanvasView } from "./canvas_view.js";
import { MaskEffort } from "./effort.js";
import { canvasToImage, clientToCanvas, dragDistance, imagePixel, imageToCanvas, isInsideImage, normalizeBox,
  panBy, wheelZoomFactor, zoomAt, canvasToClient } from "./geometry.js";
import { actionForEvent, helpRows } from "./keymap.js";
import { LeaseHeartbeat } from "./lease.js";
import { maskAuthor } from "./masklist.js";
import { paintStroke, paletteColor, parseColor, samplePath } from "./maskops.js";
import { isProposal, nextProposalKey, proposalCount, quickLabel } from "./proposals.js";
import { decodeRle, encodeRle, maskBbox, rleArea, rleBounds } from "./rle.js";
import { EMPTY_DRAFT, History, currentDraftRle, cycleIndex, draftHasWork } from "./store.js";

const DRAFT_RGB = [0, 229, 255];
const DRAG_THRESHOLD_PX = 4;
const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

function readConfig() {
  const node = document.getElementById("maskmill-config");
  if (!node) throw new Error("the page has no #maskmill-config JSON blob; it must be rendered by the annotate view");
  const config = JSON.parse(node.textContent);
  if (config.imageId == null) throw new Error("maskmill-config has no imageId");
  return { apiBase: "/api", labels: [], secondsPerMaskHint: 30, leaseSeconds: 900, ...config };
}

function safeStorage() {
  try {
    const probe = "maskmill:probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    return new MemoryStorage();
  }
}

class AnnotationPage {
  constructor(config) {
    this.config = config;
    this.imageId = config.imageId;
    this.api = new ApiClient({ apiBase: config.apiBase, csrfToken: config.csrfToken || csrfCookie() });
    this.history = new History(EMPTY_DRAFT);
    this.effort = new MaskEffort();
    this.decisionEffort = new MaskEffort(); // the selected proposal: time from selection to decision
    this.hadProposals = false;
    this.pickerTarget = null; // a proposal's key when the label picker accepts a proposal as it is
    this.labels = config.labels ?? [];
    this.lastLabelId = null;
    this.masks = []; // server records + optimistic local ones: {..., key, pending, error}
    this.selectedKey = null;
    this.tool = "prompt";
    this.brushRadius = 8;
    this.hidden = false;
    this.preparing = false;
    this.fallback = null;
    this.ready = false;
    this.predictSeq = 0;
    this.deferredPredict = null;
    this.confirm = { action: null, until: 0 };
    this.decoded = new WeakMap(); // rle object → Uint8Array
    this.boundsCache = new WeakMap(); // rle object → [x0, y0, x1, y1] | null
    this.inFlight = 0;
    this.editingKey = null;
    this.pointer = null;
    this.spaceDown = false;

    this.canvas = $("canvas");
    this.view = new CanvasView(this.canvas);
    this.queue = new SaveQueue({
      client: this.api,
      storage: safeStorage(),
      onChange: () => this.renderPending(),
      onSaved: (op, data) => this.onSaved(op, data),
      lock: navigator.locks ? (name, fn) => navigator.locks.request(name, fn) : null,
    });
    this.history.subscribe(() => this.onDraftChange());
  }

  async start() {
    this.bindDom();
    this.setStatus("Loading image…");
    const [info, masks, labels] = await Promise.all([
      this.api.getImage(this.imageId),
      this.api.listMasks(this.imageId),
      this.labels.length ? Promise.resolve(this.labels) : this.api.listLabels(this.config.projectId).catch(() => []),
    ]);
    this.labels = labels;
    this.info = info;
    const image = await loadImage(info.file_url || `${this.api.apiBase}/images/${this.imageId}/file`);
    if (image.naturalWidth !== info.width || image.naturalHeight !== info.height) {
      this.showError(`The image file is ${image.naturalWidth}×${image.naturalHeight} but the server says ` +
        `${info.width}×${info.height}; masks would not line up. Please report this image.`);
    }
    this.view.setImage(image, info.width, info.height);
    // Brush radius is in image pixels: start at a size that is usable on this image.
    this.setBrushRadius(Math.max(4, Math.round(Math.min(info.width, info.height) / 80)));
    this.masks = masks.map((m) => ({ ...m, key: `id:${m.id}`, pending: false }));
    this.applyPendingOps();
    this.hadProposals = proposalCount(this.masks) > 0;
    const first = nextProposalKey(this.masks, null, 1);
    if (first) this.selectProposal(first, { render: false }); // review starts at once: A, X or M
    this.renderMaskList();
    this.refreshStoredOverlay();
    this.renderPending();
    this.ready = true;
    document.body.dataset.ready = "true";
    this.setStatus("Ready");
    this.queue.flush();
    this.prepare();
    setInterval(() => this.tick(), 500);
    // Keep the image while this tab is open and its annotator works on it; a closed tab lets go.
    this.lease = new LeaseHeartbeat({
      send: () => this.api.heartbeat(this.imageId),
      leaseSeconds: this.config.leaseSeconds,
      isVisible: () => document.visibilityState === "visible",
      onLost: (message) => this.showLeaseLost(message),
    }).start();
  }

  // ---------------------------------------------------------------- model: prepare & predict
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
        this.showError(`Could not prepare the image for the model: ${error.message}`);
        answer = { state: "preparing" };
      }
      if (answer?.state === "ready") break;
      this.setPreparing(true);
      await sleep(delay);
      delay = Math.min(4000, delay * 1.5);
    }
    this.prepared = true;
    this.setPreparing(false);
    if (this.deferredPredict) {
      const previous = this.deferredPredict;
      this.deferredPredict = null;
      this.sendPredict(previous);
    }
  }

  setPreparing(on) {
    this.preparing = on;
    $("preparing").hidden = !on;
    if (on) this.setStatus("Preparing image…");
    else if (this.ready) this.setStatus("Ready");
  }

  /** A user prompt step: commit it (undoable) and ask the model. */
  addPrompt(changes) {
    const previous = this.history.state;
    const requestId = ++this.predictSeq;
    this.effort.click();
    this.history.commit({ ...changes, requestId, waiting: true, edited: null });
    this.sendPredict(previous);
  }

  async sendPredict(previous) {
    const state = this.history.state;
    if (!state.points.length && !state.box) return;
    if (!this.prepared) {
      // Prompts placed before the embedding is ready are sent as soon as it is.
      this.deferredPredict = this.deferredPredict ?? previous;
      this.setStatus(this.preparing ? "Preparing image…" : "Waiting for the model…");
      return;
    }
    const maskInput = previous.logitsHandle ?? (previous.baseMask && !previous.candidates.length && !previous.edited
      ? `mask:${previous.baseMask.id}` : null);
    const body = {
      points: state.points.map((p) => [round2(p.x), round2(p.y)]),
      labels: state.points.map((p) => p.label),
      box: state.box ? state.box.map(round2) : null,
      mask_input: maskInput,
      mask_index: maskInput && previous.candidates.length ? previous.candidateIndex : null,
      multimask: state.points.length + (state.box ? 1 : 0) === 1 && !maskInput,
    };
    // Earlier requests are not aborted: each answer lands in the history entry that asked for it,
    // so undo shows the right mask; only the entry on screen changes what is drawn.
    const requestId = state.requestId;
    this.inFlight++;
    this.setStatus("Thinking…");
    try {
      const answer = await this.api.predict(this.imageId, body);
      if (answer?.state === "preparing") {
        this.deferredPredict = this.deferredPredict ?? previous;
        this.prepared = false;
        this.prepare();
        return;
      }
      const candidates = (answer?.masks ?? []).map((m) => ({ rle: m.segmentation, score: m.score ?? null }));
      for (const c of candidates) {
        if (c.rle?.size?.[0] !== this.info.height || c.rle?.size?.[1] !== this.info.width) {
          throw new ApiError(`the model answered a ${c.rle?.size} mask for a ${this.info.height}×${this.info.width} image`);
        }
      }
      let best = 0;
      candidates.forEach((c, i) => {
        if ((c.score ?? 0) > (candidates[best].score ?? 0)) best = i;
      });
      this.history.patchWhere((s) => s.requestId === requestId, {
        candidates, candidateIndex: best, logitsHandle: answer?.logits_handle ?? null, waiting: false,
      });
      this.setFallback(answer?.fallback ? answer.model || "classic" : null);
      if (this.inFlight === 1) this.setStatus("Ready");
    } catch (error) {
      this.history.patchWhere((s) => s.requestId === requestId, { waiting: false });
      this.showError(`The model did not answer (${error.message}). Your prompt is kept: click again, or Ctrl+Z.`);
      this.setStatus("Model error");
    } finally {
      this.inFlight--;
    }
  }

  setFallback(model) {
    if (model === this.fallback) return; // once per image: a dismissed notice stays dismissed
    this.fallback = model;
    const notice = $("fallback-notice");
    notice.hidden = !model;
    document.body.dataset.fallback = String(Boolean(model));
    if (model) {
      notice.textContent = `No model checkpoint is configured: masks come from the ${model} segmenter ` +
        "(OpenCV, no learning). Expect rougher edges; refine with clicks and the brush.";
    }
  }

  // ---------------------------------------------------------------- draft rendering
  draftMask() {
    const rle = currentDraftRle(this.history.state);
    return rle ? this.decode(rle) : null;
  }

  boundsOf(rle) {
    if (!this.boundsCache.has(rle)) this.boundsCache.set(rle, rleBounds(rle));
    return this.boundsCache.get(rle);
  }

  decode(rle) {
    let mask = this.decoded.get(rle);
    if (!mask) {
      mask = decodeRle(rle);
      this.decoded.set(rle, mask);
    }
    return mask;
  }

  onDraftChange() {
    const d = this.history.state;
    const shownRle = currentDraftRle(d);
    if (shownRle !== this.shownRle) {
      // Only when the mask itself changed: not for a new point still waiting for its answer.
      this.shownRle = shownRle;
      this.view.setDraftMask(this.draftMask(), DRAFT_RGB, shownRle ? this.boundsOf(shownRle) : null);
    }
    this.view.setMarkers({ points: d.points, box: d.box });
    const editingKey = d.baseMask?.key ?? null;
    if (editingKey !== this.editingKey) {
      this.editingKey = editingKey;
      this.refreshStoredOverlay(); // the mask being edited is hidden from the stored layer
    }
    const info = $("draft-info");
    const rle = currentDraftRle(d);
    const cand = d.candidates[d.candidateIndex];
    const parts = [];
    if (d.baseMask) parts.push(`editing mask #${d.baseMask.id ?? "(unsaved)"}`);
    if (d.waiting) parts.push("waiting for the model…");
    if (d.candidates.length > 1) parts.push(`candidate ${d.candidateIndex + 1}/${d.candidates.length} (Tab)`);
    if (cand?.score != null && !d.edited) parts.push(`score ${cand.score.toFixed(3)}`);
    if (d.edited) parts.push("edited with brush");
    if (rle) parts.push(`${rleArea(rle)} px`);
    info.textContent = parts.length ? parts.join(" · ") : "No current mask: click on an object.";
    $("candidate-indicator").textContent = d.candidates.length ? `${d.candidateIndex + 1}/${d.candidates.length}` : "–";
    $("undo-button").disabled = !this.history.canUndo;
    $("redo-button").disabled = !this.history.canRedo;
    this.tick();
  }

  tick() {
    if (!this.effort) return;
    const d = this.history.state;
    const active = draftHasWork(d) && this.effort.started;
    $("mask-timer").textContent = active ? `${Math.round(this.effort.seconds)} s · ${this.effort.clicks} clicks` : "";
    $("move-on-hint").hidden = !(active && this.effort.overHint(this.config.secondsPerMaskHint));
  }

  // ---------------------------------------------------------------- stored masks
  labelById(label) {
    const id = label && typeof label === "object" ? label.id : label; // an id, or a nested {id, name}
    return this.labels.find((l) => String(l.id) === String(id)) ?? null;
  }

  maskRgb(mask, index) {
    const label = this.labelById(mask.label);
    try {
      if (label?.color) return parseColor(label.color);
    } catch {
      /* fall through to the palette */
    }
    return parseColor(paletteColor(label ? this.labels.indexOf(label) : index));
  }

  visibleMasks() {
    const editing = this.history.state.baseMask?.key;
    // Rejected masks stay off the image unless selected, so the annotator can look at one to fix it.
    return this.masks.filter((m) => (m.status !== "rejected" || m.key === this.selectedKey) && !m.pendingDelete &&
      m.key !== editing && m.segmentation);
  }

  refreshStoredOverlay() {
    if (!this.info) return;
    const layers = this.visibleMasks().map((m, i) => {
      return {
        mask: this.decode(m.segmentation),
        rgb: this.maskRgb(m, i),
        selected: m.key === this.selectedKey,
        proposed: isProposal(m),
        bounds: this.boundsOf(m.segmentation),
      };
    });
    this.view.setStoredMasks(layers);
  }

  applyPendingOps() {
    for (const op of this.queue.items) {
      if (op.imageId !== this.imageId) continue;
      if (op.kind === "create") {
        this.masks.push({ ...op.body, id: null, key: `local:${op.localId}`, localId: op.localId, pending: true,
          annotator_name: this.config.user?.username ?? null, opError: op.lastError, opStatus: op.status });
        continue;
      }
      const target = this.masks.find((m) => (op.maskId != null && m.id === op.maskId) || (op.localId && m.localId === op.localId));
      if (!target) continue;
      if (op.kind === "update") Object.assign(target, op.body, { pending: true, opStatus: op.status, opError: op.lastError });
      else Object.assign(target, { pendingDelete: true, pending: true });
    }
  }

  onSaved(op, data) {
    if (op.imageId !== this.imageId) return;
    const index = this.masks.findIndex((m) => (op.maskId != null && m.id === op.maskId) || (op.localId && m.localId === op.localId));
    if (op.kind === "delete") {
      if (index >= 0) this.masks.splice(index, 1);
    } else if (data && index >= 0) {
      const wasSelected = this.masks[index].key === this.selectedKey;
      this.masks[index] = { ...this.masks[index], ...data, key: `id:${data.id}`,
        localId: op.localId ?? this.masks[index].localId, pending: false };
      if (wasSelected) this.selectedKey = this.masks[index].key;
      const base = this.history.state.baseMask;
      if (base && (base.localId === op.localId || base.id === data.id)) {
        this.history.patchWhere((s) => s.baseMask === base, { baseMask: { ...base, id: data.id, version: data.version, key: `id:${data.id}` } });
      }
    }
    this.renderMaskList();
    this.refreshStoredOverlay();
  }

  renderMaskList() {
    const list = $("mask-list");
    list.replaceChildren();
    const shown = this.masks.filter((m) => !m.pendingDelete);
    $("mask-count").textContent = String(shown.length);
    shown.forEach((m, i) => {
      const item = document.createElement("li");
      item.dataset.testid = "mask-item";
      item.dataset.maskId = m.id ?? "";
      item.dataset.key = m.key;
      item.dataset.source = m.source ?? "";
      item.dataset.status = m.status ?? "";
      item.dataset.pending = String(Boolean(m.pending));
      item.className = "mask-item" + (m.key === this.selectedKey ? " selected" : "") +
        (m.status === "rejected" ? " rejected" : "") + (isProposal(m) ? " proposed" : "");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${this.maskRgb(m, i).join(",")})`;
      const label = this.labelById(m.label);
      const score = m.predicted_iou != null ? Number(m.predicted_iou).toFixed(2) : "–";
      const author = maskAuthor(m, this.config.user);
      item.append(swatch, span("mask-label", label ? label.name : "(no label)", "mask-label"),
        span(`badge source-${m.source}`, m.source ?? "?", "mask-source"),
        span("mask-score", score, "mask-score"),
        span("mask-author", author, "mask-author"));
      if (m.status && m.status !== "accepted") item.append(span(`badge status status-${m.status}`, m.status, "mask-status"));
      if (m.review_note) item.append(span("mask-note", `Review: ${m.review_note}`, "mask-note"));
      if (m.pending) item.append(span("badge pending", m.opStatus === "conflict" ? "conflict" : "saving…", "mask-pending"));
      item.addEventListener("click", () => this.select(m.key));
      item.addEventListener("dblclick", () => this.editMask(m.key));
      list.append(item);
      if (m.key === this.selectedKey) item.scrollIntoView?.({ block: "nearest" });
    });
    this.renderProposalPanel();
  }

  /** How many proposals are left on this image (shown once the image had any). */
  renderProposalPanel() {
    const left = proposalCount(this.masks);
    const panel = $("proposal-panel");
    panel.hidden = !(left || this.hadProposals);
    panel.dataset.left = String(left);
    $("proposal-count").textContent = left
      ? `${left} proposal${left === 1 ? "" : "s"} left on this image`
      : "All proposals on this image reviewed";
  }

  select(key) {
    this.selectedKey = this.selectedKey === key ? null : key;
    if (isProposal(this.selectedMask())) this.startDecisionClock();
    this.renderMaskList();
    this.refreshStoredOverlay();
  }

  // ---------------------------------------------------------------- proposals: accept, reject, fix
  startDecisionClock() {
    this.decisionEffort = new MaskEffort();
    this.decisionEffort.begin();
  }

  /** Select a proposal (never toggles it off) and start timing the decision on it. */
  selectProposal(key, { render = true } = {}) {
    this.selectedKey = key;
    this.startDecisionClock();
    if (render) {
      this.renderMaskList();
      this.refreshStoredOverlay();
    }
  }

  /** J / K: the next or previous proposal in reading order, from the selection. */
  moveToProposal(step) {
    const key = nextProposalKey(this.masks, this.selectedKey, step);
    if (!key) {
      this.flash("No proposals left on this image.");
      return;
    }
    this.selectProposal(key);
  }

  /** After a decision on `decidedKey`: on to the next proposal, or say that the image is done. */
  advanceFrom(decidedKey) {
    const key = nextProposalKey(this.masks, decidedKey, 1);
    if (key) this.selectProposal(key);
    else {
      this.selectedKey = null;
      this.renderMaskList();
      this.refreshStoredOverlay();
      if (this.hadProposals) this.flash("All proposals on this image reviewed: add what is missing, then N.");
    }
  }

  /** The time and clicks of the decision on the selected proposal, as saves send them. */
  decisionFigures() {
    return { seconds: Math.round(this.decisionEffort.seconds * 10) / 10, clicks: this.decisionEffort.clicks };
  }

  /**
   * Accept the selected proposal exactly as the model proposed it: only status and label change,
   * so the pre-fill report counts it as kept. Without `labelId`, the fastest label that is safe:
   * see quickLabel (the picker opens only when there is nothing to go on).
   */
  acceptProposal(labelId = undefined, key = this.selectedKey) {
    const m = this.masks.find((x) => x.key === key);
    if (!isProposal(m) || m.id == null) {
      this.flash("Select a proposed mask first (J / K).");
      return;
    }
    if (labelId === undefined) {
      const choice = quickLabel(m, this.lastLabelId, this.labels);
      if (!choice) return this.openPicker({ proposalKey: m.key });
      labelId = choice.label;
    }
    const body = { status: "accepted", label: labelId, ...this.decisionFigures() };
    Object.assign(m, body, { pending: true, opStatus: "pending" });
    this.queue.enqueue({ kind: "update", imageId: this.imageId, maskId: m.id, body: { ...body, version: m.version } });
    if (labelId != null) this.lastLabelId = labelId;
    const label = this.labelById(labelId);
    this.flash(`Proposal #${m.id} accepted${label ? ` as ${label.name}` : ""}.`);
    this.advanceFrom(m.key);
  }

  /** A: accept the proposal being fixed, else the selected proposal; a new mask goes to the picker. */
  quickAccept() {
    const d = this.history.state;
    if (d.baseMask?.status === "proposed") {
      const choice = quickLabel(d.baseMask, this.lastLabelId, this.labels);
      return choice ? this.accept(choice.label) : this.openPicker();
    }
    if (draftHasWork(d) || d.baseMask) return this.openPicker();
    return this.acceptProposal();
  }

  /** 1–9 outside the picker: accept the proposal being fixed, or the selected one, with that label. */
  acceptWithLabelKey(event) {
    const label = this.labels[Number(event?.key) - 1];
    const d = this.history.state;
    const fixing = d.baseMask?.status === "proposed";
    const reviewing = !draftHasWork(d) && !d.baseMask && isProposal(this.selectedMask());
    if (!label || !(fixing || reviewing)) {
      this.flash(label ? "Press Enter first, then a number to choose the label." : `There is no label ${event?.key}.`);
      return;
    }
    if (fixing) this.accept(label.id);
    else this.acceptProposal(label.id);
  }

  selectedMask() {
    return this.masks.find((m) => m.key === this.selectedKey) ?? null;
  }

  /** Start the draft from a stored mask: brush it, or click to refine with it as the mask prompt. */
  editMask(key) {
    const m = this.masks.find((x) => x.key === key);
    if (!m) return;
    const proposal = isProposal(m);
    if (proposal) {
      // Fixing a proposal: its decision clock goes on (time since it was selected), clicks add up.
      if (m.key !== this.selectedKey) this.startDecisionClock();
      this.effort = this.decisionEffort;
      this.decisionEffort = new MaskEffort();
    } else {
      this.effort.reset();
    }
    this.history.commit({
      ...EMPTY_DRAFT,
      baseMask: { id: m.id, localId: m.localId ?? null, key: m.key, version: m.version, rle: m.segmentation,
        label: m.label, source: m.source, status: m.status },
    });
    this.lastLabelId = m.label ?? this.lastLabelId;
    this.selectedKey = null;
    this.renderMaskList();
    this.refreshStoredOverlay();
    this.flash(proposal
      ? `Fixing proposal #${m.id}: click to refine, E to erase, B to paint, then A (or Enter) to accept it.`
      : `Editing mask ${m.id ? "#" + m.id : "(unsaved)"}: click to refine, brush to fix, Enter to save.`);
  }

  // ---------------------------------------------------------------- accept, delete, reject
  accept(labelId) {
    const d = this.history.state;
    const rle = currentDraftRle(d);
    if (!rle || rleArea(rle) === 0) {
      this.flash("Nothing to accept: the current mask is empty.");
      return;
    }
    const mask = this.decode(rle);
    const [h, w] = rle.size;
    const candidate = d.candidates[d.candidateIndex];
    const body = {
      segmentation: { size: rle.size, counts: rle.counts },
      bbox: maskBbox(mask, h, w),
      area: rleArea(rle),
      label: labelId,
      status: "accepted",
      seconds: Math.round(this.effort.seconds * 10) / 10,
      clicks: this.effort.clicks,
      point_coords: d.points.filter((p) => p.label === 1).map((p) => [round2(p.x), round2(p.y)]),
    };
    // An edit made with the brush or eraser only keeps the stored mask's prompt points (the
    // generator's point of a proposal) instead of blanking them.
    if (d.baseMask && !body.point_coords.length) delete body.point_coords;
    if (candidate && !d.edited && candidate.score != null) body.predicted_iou = candidate.score;
    if (d.baseMask) {
      const target = this.masks.find((m) => m.key === d.baseMask.key);
      const op = { kind: "update", imageId: this.imageId, maskId: d.baseMask.id ?? undefined,
        localId: d.baseMask.id == null ? d.baseMask.localId : undefined,
        body: { ...body, version: d.baseMask.version } };
      if (target) Object.assign(target, body, { pending: true, opStatus: "pending" });
      this.queue.enqueue(op);
    } else {
      const localId = `m-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
      const create = { ...body, source: "manual" };
      this.masks.push({ ...create, id: null, key: `local:${localId}`, localId, pending: true, opStatus: "pending",
        annotator_name: this.config.user?.username ?? null });
      this.queue.enqueue({ kind: "create", imageId: this.imageId, localId, body: create });
    }
    if (labelId != null) this.lastLabelId = labelId;
    this.history.reset(EMPTY_DRAFT);
    this.effort = new MaskEffort();
    if (d.baseMask?.status === "proposed") {
      this.flash(`Proposal #${d.baseMask.id} fixed and accepted.`);
      this.advanceFrom(d.baseMask.key);
      return;
    }
    this.renderMaskList();
    this.refreshStoredOverlay();
    this.flash("Mask accepted; the indicator at the top shows when it is stored.");
  }

  deleteSelected() {
    const m = this.selectedMask();
    if (!m) {
      if (draftHasWork(this.history.state)) this.cancelDraft();
      else this.flash("Select a mask in the list first (click it, or Alt+click it on the image).");
      return;
    }
    if (isProposal(m)) {
      // Rejected rather than deleted, so the pre-fill report still counts what the model proposed.
      this.flash("Proposals are rejected (X), not deleted.");
      return this.rejectSelected();
    }
    if (!this.confirmed("delete", `Press Del again to delete mask ${m.id ? "#" + m.id : "(unsaved)"}.`)) return;
    m.pendingDelete = true;
    m.pending = true;
    this.queue.enqueue({ kind: "delete", imageId: this.imageId, maskId: m.id ?? undefined,
      localId: m.id == null ? m.localId : undefined, version: m.version });
    if (m.id == null) this.masks = this.masks.filter((x) => x !== m);
    this.selectedKey = null;
    this.renderMaskList();
    this.refreshStoredOverlay();
    this.flash("Mask deleted");
  }

  rejectSelected() {
    const m = this.selectedMask();
    if (!m || m.id == null) {
      this.flash("Select a saved proposed mask to reject it.");
      return;
    }
    const proposal = isProposal(m);
    // The decision's time and clicks are the mask's effort only for a proposal: a saved mask
    // rejected later keeps the effort of whoever drew it.
    const body = { status: "rejected", ...(proposal ? this.decisionFigures() : {}) };
    Object.assign(m, body, { pending: true, opStatus: "pending" });
    this.queue.enqueue({ kind: "update", imageId: this.imageId, maskId: m.id, body: { ...body, version: m.version } });
    if (proposal) {
      this.flash(`Proposal #${m.id} rejected.`);
      this.advanceFrom(m.key);
      return;
    }
    this.renderMaskList();
    this.refreshStoredOverlay();
  }

  cancelDraft() {
    if (!draftHasWork(this.history.state) && !this.history.state.baseMask) return;
    this.history.commit({ ...EMPTY_DRAFT });
    this.effort = new MaskEffort();
    this.flash("Current mask discarded (Ctrl+Z brings it back)");
  }

  confirmed(action, message) {
    const now = Date.now();
    if (this.confirm.action === action && now < this.confirm.until) {
      this.confirm = { action: null, until: 0 };
      return true;
    }
    this.confirm = { action, until: now + 3000 };
    this.flash(message);
    return false;
  }

  navigate(url, direction) {
    if (!url) {
      this.flash(`There is no ${direction} image.`);
      return;
    }
    if (draftHasWork(this.history.state) &&
        !this.confirmed(direction, `The current mask is not saved. Press again to go to the ${direction} image anyway.`)) return;
    const left = proposalCount(this.masks);
    if (left && !draftHasWork(this.history.state) && !this.confirmed(`${direction}:proposals`,
      `${left} proposal${left === 1 ? " is" : "s are"} not reviewed yet (A / X / M). ` +
      `Press again to go to the ${direction} image anyway.`)) return;
    this.leaving = true;
    window.location.assign(url);
  }

  // ---------------------------------------------------------------- label picker
  /** The label picker for the current mask, or (`target.proposalKey`) for a proposal accepted as it is. */
  openPicker(target = null) {
    this.pickerTarget = target;
    if (!target) {
      const rle = currentDraftRle(this.history.state);
      if (!rle || rleArea(rle) === 0) {
        this.flash("Nothing to accept yet: click on an object first.");
        return;
      }
    }
    if (!this.labels.length) {
      this.pick(null);
      return;
    }
    this.pickerOpen = true;
    $("label-picker").hidden = false;
    const search = $("label-search");
    search.value = "";
    this.pickerIndex = Math.max(0, this.labels.findIndex((l) => l.id === this.lastLabelId));
    this.renderPicker();
    search.focus();
  }

  closePicker() {
    this.pickerOpen = false;
    $("label-picker").hidden = true;
    this.canvas.focus();
  }

  pickerMatches() {
    const q = $("label-search").value.trim().toLowerCase();
    return this.labels.filter((l) => !q || l.name.toLowerCase().includes(q));
  }

  renderPicker() {
    const list = $("label-options");
    list.replaceChildren();
    const matches = this.pickerMatches();
    this.pickerIndex = Math.min(this.pickerIndex, Math.max(0, matches.length - 1));
    matches.forEach((label, i) => {
      const item = document.createElement("li");
      item.dataset.testid = "label-option";
      item.dataset.labelId = label.id;
      item.className = i === this.pickerIndex ? "active" : "";
      const number = this.labels.indexOf(label) + 1;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = label.color ?? paletteColor(number - 1);
      item.append(span("key", number <= 9 ? String(number) : ""), swatch, span("", label.name));
      item.addEventListener("click", () => this.pick(label.id));
      list.append(item);
    });
  }

  pick(labelId) {
    const target = this.pickerTarget;
    this.pickerTarget = null;
    if (this.pickerOpen) this.closePicker();
    if (target?.proposalKey) this.acceptProposal(labelId, target.proposalKey);
    else this.accept(labelId);
  }

  onPickerKey(event) {
    const search = $("label-search");
    if (event.key === "Escape") {
      this.closePicker();
    } else if (event.key === "Enter") {
      const match = this.pickerMatches()[this.pickerIndex];
      if (match) this.pick(match.id);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const n = this.pickerMatches().length;
      this.pickerIndex = cycleIndex(this.pickerIndex, n, event.key === "ArrowDown" ? 1 : -1);
      this.renderPicker();
    } else if (/^[1-9]$/.test(event.key) && !search.value) {
      const label = this.labels[Number(event.key) - 1];
      if (label) this.pick(label.id);
    } else {
      return;
    }
    event.preventDefault();
  }

  // ---------------------------------------------------------------- keyboard
  onKey(event) {
    if (this.pickerOpen) return this.onPickerKey(event);
    if (event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement) return;
    if (event.key === " ") {
      this.spaceDown = true;
      this.canvas.classList.add("panning");
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
    const d = this.history.state;
    const center = { x: this.view.cssWidth / 2, y: this.view.cssHeight / 2 };
    switch (action) {
      case "accept":
        // Enter on a selected proposal (no current mask): accept it as it is, choosing the label.
        if (!draftHasWork(d) && !d.baseMask && isProposal(this.selectedMask())) {
          return this.openPicker({ proposalKey: this.selectedKey });
        }
        return this.openPicker();
      case "pickLabel": return this.acceptWithLabelKey(event);
      case "acceptProposal": return this.quickAccept();
      case "nextProposal": return this.moveToProposal(1);
      case "prevProposal": return this.moveToProposal(-1);
      case "cycleNext":
      case "cyclePrev":
        if (d.candidates.length > 1) {
          this.history.commit({ candidateIndex: cycleIndex(d.candidateIndex, d.candidates.length,
            action === "cycleNext" ? 1 : -1), edited: null });
        }
        return;
      case "undo": return this.history.undo();
      case "redo": return this.history.redo();
      case "cancel":
        if (!$("help-overlay").hidden) return this.toggleHelp(false);
        if (this.selectedKey) return this.select(this.selectedKey);
        return this.cancelDraft();
      case "delete": return this.deleteSelected();
      case "reject": return this.rejectSelected();
      case "editSelected":
        if (this.selectedKey) this.editMask(this.selectedKey);
        else this.flash("Select a mask in the list first.");
        return;
      case "toggleHidden":
        this.hidden = !this.hidden;
        this.view.setHidden(this.hidden);
        $("toggle-hidden").setAttribute("aria-pressed", String(this.hidden));
        return;
      case "toolPrompt": return this.setTool("prompt");
      case "toolScribble": return this.setTool("scribble");
      case "toolBrush": return this.setTool("brush");
      case "toolEraser": return this.setTool("eraser");
      case "brushSmaller": return this.setBrushRadius(this.brushRadius / 1.25);
      case "brushLarger": return this.setBrushRadius(this.brushRadius * 1.25);
      case "zoomIn": return this.view.setView(zoomAt(this.view.view, center, 1.25));
      case "zoomOut": return this.view.setView(zoomAt(this.view.view, center, 0.8));
      case "zoomFit": return this.view.fit();
      case "nextImage": return this.navigate(this.config.nextImageUrl, "next");
      case "prevImage": return this.navigate(this.config.prevImageUrl, "previous");
      case "help": return this.toggleHelp();
      default: return undefined;
    }
  }

  setTool(tool) {
    this.tool = tool;
    for (const button of document.querySelectorAll("[data-tool]")) {
      button.setAttribute("aria-pressed", String(button.dataset.tool === tool));
    }
    this.canvas.dataset.tool = tool;
    if (tool !== "brush" && tool !== "eraser") this.view.setMarkers({ brush: null });
  }

  setBrushRadius(radius) {
    this.brushRadius = Math.min(400, Math.max(1, Math.round(radius * 10) / 10));
    $("brush-radius").textContent = `${Math.round(this.brushRadius)} px`;
  }

  toggleHelp(show) {
    const overlay = $("help-overlay");
    overlay.hidden = show === undefined ? !overlay.hidden : !show;
  }

  // ---------------------------------------------------------------- pointer
  imagePoint(event) {
    return canvasToImage(clientToCanvas(event.clientX, event.clientY, this.canvas.getBoundingClientRect()), this.view.view);
  }

  onPointerDown(event) {
    if (!this.ready) return;
    this.canvas.focus();
    const css = clientToCanvas(event.clientX, event.clientY, this.canvas.getBoundingClientRect());
    const point = canvasToImage(css, this.view.view);
    const negative = event.button === 2 || event.shiftKey;
    let mode;
    if (event.button === 1 || (this.spaceDown && event.button === 0)) mode = "pan";
    else if (event.altKey && event.button === 0) mode = "select";
    else if (this.tool === "brush" || this.tool === "eraser") mode = event.button === 0 ? "brush" : null;
    else if (this.tool === "scribble") mode = "scribble";
    else mode = "prompt";
    if (!mode) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.pointer = { mode, start: css, last: css, startImage: point, label: negative ? 0 : 1, dragging: false,
      path: [point], erase: this.tool === "eraser" };
    if (mode === "brush") {
      const base = this.draftMask();
      this.pointer.work = base ? base.slice() : new Uint8Array(this.info.width * this.info.height);
      this.strokeTo(point, point);
    }
  }

  onPointerMove(event) {
    const css = clientToCanvas(event.clientX, event.clientY, this.canvas.getBoundingClientRect());
    const point = canvasToImage(css, this.view.view);
    if (this.tool === "brush" || this.tool === "eraser") {
      this.view.setMarkers({ brush: { ...point, radius: this.brushRadius, erase: this.tool === "eraser" } });
    }
    const p = this.pointer;
    if (!p) return;
    if (p.mode === "pan") {
      this.view.setView(panBy(this.view.view, css.x - p.last.x, css.y - p.last.y));
    } else if (p.mode === "prompt" && p.label === 1) {
      if (dragDistance(p.start, css) > DRAG_THRESHOLD_PX) p.dragging = true;
      if (p.dragging) {
        const box = normalizeBox(p.startImage, point, this.info.width, this.info.height);
        this.view.setMarkers({ dragBox: box });
      }
    } else if (p.mode === "scribble") {
      p.path.push(point);
      this.view.setMarkers({ path: { points: p.path, label: p.label } });
    } else if (p.mode === "brush") {
      this.strokeTo(canvasToImage(p.last, this.view.view), point);
    }
    p.last = css;
  }

  strokeTo(a, b) {
    const { width, height } = this.info;
    paintStroke(this.pointer.work, width, height, a, b, this.brushRadius, this.pointer.erase ? 0 : 1);
    this.view.strokePreview(a, b, this.brushRadius, this.pointer.erase, DRAFT_RGB);
  }

  onPointerUp(event) {
    const p = this.pointer;
    if (!p) return;
    this.pointer = null;
    const point = this.imagePoint(event);
    const { width, height } = this.info;
    const d = this.history.state;
    if (p.mode === "select") {
      this.selectAt(point);
    } else if (p.mode === "prompt") {
      this.view.setMarkers({ dragBox: null });
      if (p.dragging) {
        const box = normalizeBox(p.startImage, point, width, height);
        if (box) this.addPrompt({ box });
      } else if (isInsideImage(p.startImage, width, height)) {
        this.addPrompt({ points: [...d.points, { x: p.startImage.x, y: p.startImage.y, label: p.label }] });
      }
    } else if (p.mode === "scribble") {
      this.view.setMarkers({ path: null });
      const inside = p.path.filter((q) => isInsideImage(q, width, height));
      const sampled = samplePath(inside, 8, Math.max(4, 12 / this.view.view.scale));
      if (sampled.length) this.addPrompt({ points: [...d.points, ...sampled.map((q) => ({ ...q, label: p.label }))] });
    } else if (p.mode === "brush") {
      this.effort.click();
      this.history.commit({ edited: encodeRle(p.work, height, width), waiting: false });
    }
  }

  selectAt(point) {
    const pixel = imagePixel(point, this.info.width, this.info.height);
    if (!pixel) return;
    const hits = this.visibleMasks().filter((m) => this.decode(m.segmentation)[pixel.y * this.info.width + pixel.x]);
    if (hits.length) this.select(hits[hits.length - 1].key);
  }

  onWheel(event) {
    event.preventDefault();
    const css = clientToCanvas(event.clientX, event.clientY, this.canvas.getBoundingClientRect());
    this.view.setView(zoomAt(this.view.view, css, wheelZoomFactor(event.deltaY, event.deltaMode)));
  }

  // ---------------------------------------------------------------- chrome
  bindDom() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    c.addEventListener("pointermove", (e) => this.onPointerMove(e));
    c.addEventListener("pointerup", (e) => this.onPointerUp(e));
    c.addEventListener("pointercancel", () => {
      this.pointer = null;
      this.view.setMarkers({ dragBox: null, path: null });
      this.shownRle = undefined; // repaint the draft layer over an abandoned brush preview
      this.onDraftChange();
    });
    c.addEventListener("pointerleave", () => this.view.setMarkers({ brush: null }));
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    window.addEventListener("keydown", (e) => this.onKey(e));
    window.addEventListener("keyup", (e) => {
      if (e.key === " ") {
        this.spaceDown = false;
        c.classList.remove("panning");
      }
    });
    document.addEventListener("visibilitychange", () => {
      for (const effort of [this.effort, this.decisionEffort]) {
        if (document.hidden) effort.pause();
        else effort.resume();
      }
      if (!document.hidden) this.lease?.tick(); // back on the tab: renew now if a renewal fell due meanwhile
    });
    for (const type of ["pointerdown", "keydown", "wheel"]) {
      window.addEventListener(type, () => this.lease?.activity(), { capture: true, passive: true });
    }
    window.addEventListener("beforeunload", (e) => {
      if (!this.leaving && draftHasWork(this.history.state)) e.preventDefault();
    });
    window.addEventListener("storage", (e) => {
      if (e.key === this.queue.key) this.renderPending();
    });
    for (const button of document.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => {
        this.run(button.dataset.action);
        if (!this.pickerOpen) this.canvas.focus(); // keys go to the page, not to the clicked button
      });
    }
    $("label-search").addEventListener("input", () => {
      this.pickerIndex = 0;
      this.renderPicker();
    });
    $("label-search").addEventListener("keydown", (e) => {
      e.stopPropagation();
      this.onPickerKey(e);
    });
    // A click on the dimmed backdrop closes a dialog.
    $("help-overlay").addEventListener("click", (e) => e.target === e.currentTarget && this.toggleHelp(false));
    $("label-picker").addEventListener("click", (e) => e.target === e.currentTarget && this.closePicker());
    $("pending-indicator").addEventListener("click", () => {
      const panel = $("pending-panel");
      panel.hidden = !panel.hidden;
    });
    $("retry-saves").addEventListener("click", () => this.queue.retryNow());
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
    for (const id of ["fallback-notice", "move-on-hint", "flash"]) {
      $(id).title = "Click to dismiss";
      $(id).addEventListener("click", () => ($(id).hidden = true));
    }
    $("nav-next").disabled = !this.config.nextImageUrl;
    $("nav-prev").disabled = !this.config.prevImageUrl;
    this.setTool("prompt");
    this.setBrushRadius(this.brushRadius);
    this.onDraftChange();
  }

  renderPending() {
    const items = this.queue.items;
    const indicator = $("pending-indicator");
    const conflicts = items.filter((o) => o.status === "conflict").length;
    const failed = items.filter((o) => o.status === "failed").length;
    indicator.dataset.count = String(items.length);
    indicator.dataset.state = conflicts ? "conflict" : failed ? "failed" : items.length ? "pending" : "saved";
    const waiting = items.length - conflicts - failed;
    const parts = [];
    if (conflicts) parts.push(`${conflicts} conflict${conflicts > 1 ? "s" : ""}`);
    if (failed) parts.push(`${failed} failed`);
    if (waiting) parts.push(`${waiting} pending`);
    indicator.textContent = parts.length ? parts.join(" · ") : "All saved";
    const list = $("pending-list");
    list.replaceChildren();
    for (const op of items) {
      const li = document.createElement("li");
      li.dataset.testid = "pending-item";
      li.dataset.status = op.status;
      li.append(span("", `${op.kind} ${op.maskId ? "#" + op.maskId : ""} (image ${op.imageId}) — ${op.status}` +
        (op.lastError ? `: ${op.lastError}` : "")));
      if (op.status === "conflict" || op.status === "failed") {
        const discard = document.createElement("button");
        discard.textContent = "Discard my change";
        discard.dataset.testid = "discard-save";
        discard.addEventListener("click", () => this.queue.discard(op.opId));
        li.append(discard);
      }
      list.append(li);
    }
    const conflict = items.find((o) => o.status === "conflict");
    const notice = $("conflict-notice");
    notice.hidden = !conflict;
    if (conflict) {
      const reload = document.createElement("button");
      reload.textContent = "Reload image";
      reload.dataset.testid = "conflict-reload";
      reload.addEventListener("click", () => {
        this.leaving = true;
        window.location.reload();
      });
      const discard = document.createElement("button");
      discard.textContent = "Discard my change";
      discard.dataset.testid = "conflict-discard";
      discard.addEventListener("click", () => this.queue.discard(conflict.opId));
      notice.replaceChildren(span("", conflict.lastError + " "), reload, " ", discard);
    }
    // Reflect queue state on the list items of this image.
    let changed = false;
    for (const m of this.masks) {
      const op = items.find((o) => (m.id != null && o.maskId === m.id) || (m.localId && o.localId === m.localId));
      const pending = Boolean(op);
      if (m.pending !== pending || m.opStatus !== op?.status) {
        m.pending = pending;
        m.opStatus = op?.status;
        changed = true;
      }
    }
    if (changed) this.renderMaskList();
  }

  setStatus(text) {
    $("status").textContent = text;
    $("status").dataset.state = text;
  }

  flash(text) {
    const node = $("flash");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(this._flashTimer);
    this._flashTimer = setTimeout(() => (node.hidden = true), 3500);
  }

  showLeaseLost(text) {
    const node = $("lease-lost");
    node.textContent = `This image is no longer yours: ${text}`;
    node.hidden = false;
    document.body.dataset.lease = "lost";
  }

  showError(text) {
    const node = $("error-banner");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(this._errorTimer);
    this._errorTimer = setTimeout(() => (node.hidden = true), 10000);
  }

  /** Read-only hooks for browser tests and debugging (window.maskmill). */
  debugHooks() {
    const page = this;
    const rectOf = () => page.canvas.getBoundingClientRect();
    return Object.freeze({
      version: 1,
      get ready() {
        return page.ready;
      },
      currentMaskRle() {
        const rle = currentDraftRle(page.history.state);
        return rle ? { size: [...rle.size], counts: rle.counts } : null;
      },
      view() {
        const v = page.view.view;
        return v ? { scale: v.scale, tx: v.tx, ty: v.ty, dpr: page.view.dpr } : null;
      },
      imageToClient(x, y) {
        return canvasToClient(imageToCanvas({ x, y }, page.view.view), rectOf());
      },
      clientToImage(x, y) {
        return canvasToImage(clientToCanvas(x, y, rectOf()), page.view.view);
      },
      draft() {
        const d = page.history.state;
        return JSON.parse(JSON.stringify({ points: d.points, box: d.box, candidateIndex: d.candidateIndex,
          candidateCount: d.candidates.length, scores: d.candidates.map((c) => c.score), logitsHandle: d.logitsHandle,
          waiting: d.waiting, edited: Boolean(d.edited), baseMaskId: d.baseMask?.id ?? null,
          canUndo: page.history.canUndo, canRedo: page.history.canRedo }));
      },
      masks() {
        return JSON.parse(JSON.stringify(page.masks.filter((m) => !m.pendingDelete).map((m) => ({
          id: m.id, label: m.label, source: m.source, status: m.status, pending: m.pending,
          segmentation: m.segmentation }))));
      },
      pendingSaves() {
        return page.queue.items;
      },
      selected() {
        const m = page.selectedMask();
        return m ? { id: m.id, status: m.status, proposed: isProposal(m) } : null;
      },
      proposalsLeft() {
        return proposalCount(page.masks);
      },
      effort() {
        return { seconds: page.effort.seconds, clicks: page.effort.clicks };
      },
      tool() {
        return page.tool;
      },
      brushRadius() {
        return page.brushRadius;
      },
      preparing() {
        return page.preparing;
      },
      fallback() {
        return page.fallback;
      },
      lease() {
        const lease = page.lease;
        return lease ? { beats: lease.beats, lost: lease.lost, intervalMs: lease.intervalMs } : null;
      },
    });
  }
}

function span(className, text, testid) {
  const node = document.createElement("span");
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  node.textContent = text;
  return node;
}

function kbd(text) {
  const node = document.createElement("kbd");
  node.textContent = text;
  return node;
}

/** Django's CSRF cookie, for pages rendered without a token in the config. */
function csrfCookie() {
  const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
  return match ? decodeURIComponent(match[1]) : "";
}

function round2(v) {
  return Math.round(v * 100) / 100;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.decoding = "async";
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`the image file could not be loaded from ${url}`));
    image.src = url;
  });
}

async function main() {
  let page;
  try {
    page = new AnnotationPage(readConfig());
    Object.defineProperty(window, "maskmill", { value: page.debugHooks(), writable: false, configurable: false });
    await page.start();
  } catch (error) {
    console.error(error);
    const node = $("error-banner");
    if (node) {
      node.textContent = `The annotation page could not start: ${error.message}`;
      node.hidden = false;
    }
    document.body.dataset.ready = "error";
  }
}

main();
