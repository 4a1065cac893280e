// The annotation page: builds the two stores (the undoable draft, the image's masks), the
// controllers that change them (predict, pointer tools, mask editor, proposal review, label
// picker) and the views that draw them, and routes keys and buttons to actions.
// Configuration: the JSON blob the Django view renders with json_script (#maskmill-config):
// {imageId, projectId, csrfToken, apiBase, labels, user, nextImageUrl, nextImageForm (POSTed), prevImageUrl,
// secondsPerMaskHint, leaseSeconds}.

import { Actions } from "./actions.js";
import { ApiClient } from "./api.js";
import { CanvasView, sameLayers } from "./canvas_view.js";
import { MaskEffort } from "./effort.js";
import { LabelPicker } from "./label_picker.js";
import { LeaseHeartbeat } from "./lease.js";
import { MaskEditor, describeDraft } from "./mask_editor.js";
import { renderMaskList } from "./mask_list_view.js";
import { EMPTY_MASKS, applySaved, isSelectedProposal, labelById, maskRgb, openImage, proposalsLeft, reflectQueue,
  select, visibleMasks } from "./masks_state.js";
import { $, csrfCookie, goToImage, loadImage, readConfig, safeStorage } from "./page.js";
import { DoublePress, Notices } from "./notices.js";
import { bindPendingPanel, renderPendingPanel } from "./pending_panel.js";
import { DRAFT_RGB, PointerTools } from "./pointer.js";
import { PredictController } from "./predict.js";
import { ProposalReview } from "./proposal_review.js";
import { isProposal } from "./proposals.js";
import { decodeRle, rleArea, rleBounds } from "./rle.js";
import { SaveQueue } from "./save_queue.js";
import { EMPTY_DRAFT, History, Store, currentDraftRle, draftHasWork } from "./store.js";
import { SuggestionsController } from "./suggestions.js";
import { testHooks } from "./test_hooks.js";

class AnnotationPage {
  constructor(config) {
    this.config = config;
    this.imageId = config.imageId;
    this.labels = config.labels ?? [];
    this.api = new ApiClient({ apiBase: config.apiBase, csrfToken: config.csrfToken || csrfCookie() });
    this.history = new History(EMPTY_DRAFT); // the mask being made: undoable
    this.maskStore = new Store(EMPTY_MASKS); // the image's masks and the selection: not undoable
    this.effort = new MaskEffort(); // the current mask's time and clicks
    this.ready = false;
    this.leaving = false; // navigating away on purpose: no "unsaved work" prompt
    this.hidden = false; // all masks hidden (H)
    this.editingKey = null; // the stored mask the draft started from, hidden from the stored layer
    this.shownRle = undefined; // the draft mask on screen
    this.info = null; // the image's {width, height, ...} from the API
    this.decoded = new WeakMap(); // rle object → Uint8Array
    this.boundsCache = new WeakMap(); // rle object → [x0, y0, x1, y1] | null
    this.canvas = $("canvas");
    this.view = new CanvasView(this.canvas);
    this.notices = new Notices();
    this.confirm = new DoublePress({ say: (text) => this.notices.flash(text) });
    this.queue = new SaveQueue({
      client: this.api,
      storage: safeStorage(),
      onChange: () => this.renderPending(),
      onSaved: (op, data) => this.onSaved(op, data),
      lock: navigator.locks ? (name, fn) => navigator.locks.request(name, fn) : null,
    });
    this.predictor = new PredictController({ api: this.api, imageId: this.imageId, history: this.history,
      notices: this.notices, size: () => this.info, onPrompt: () => this.effort.click(), isReady: () => this.ready,
      onAnswer: (answer) => this.suggestions.noteAnswer(answer) });
    this.suggestions = new SuggestionsController(this);
    this.pointer = new PointerTools(this);
    this.picker = new LabelPicker({ labels: () => this.labels, focusCanvas: () => this.canvas.focus(),
      onPick: (labelId, target) => (target?.proposalKey ? this.review.accept(labelId, target.proposalKey)
        : this.editor.accept(labelId)) });
    this.review = new ProposalReview(this);
    this.editor = new MaskEditor(this);
    this.actions = new Actions(this);
    this.history.subscribe(() => this.onDraftChange());
    this.maskStore.subscribe(() => this.scheduleMasksRender());
  }

  async start() {
    this.bindDom();
    this.notices.setStatus("Loading image…");
    const [info, records, labels] = await Promise.all([
      this.api.getImage(this.imageId),
      this.api.listMasks(this.imageId),
      this.labels.length ? Promise.resolve(this.labels) : this.api.listLabels(this.config.projectId).catch(() => []),
    ]);
    this.labels = labels;
    this.info = info;
    const image = await loadImage(info.file_url || `${this.api.apiBase}/images/${this.imageId}/file`);
    if (image.naturalWidth !== info.width || image.naturalHeight !== info.height) {
      this.notices.showError(`The image file is ${image.naturalWidth}×${image.naturalHeight} but the server says ` +
        `${info.width}×${info.height}; masks would not line up. Please report this image.`);
    }
    this.view.setImage(image, info.width, info.height);
    // Brush radius is in image pixels: start at a size that is usable on this image.
    this.pointer.setBrushRadius(Math.max(4, Math.round(Math.min(info.width, info.height) / 80)));
    this.maskStore.set(openImage(records, this.queue.items, this.imageId, this.config.user?.username ?? null));
    if (proposalsLeft(this.maskStore.state)) this.review.move(1); // review starts at once: A, X or M
    this.renderMasks();
    this.suggestions.loadForProposals();
    this.renderPending();
    this.ready = true;
    document.body.dataset.ready = "true";
    this.notices.setStatus("Ready");
    this.queue.flush();
    this.predictor.prepare();
    setInterval(() => this.tick(), 500);
    // Keep the image while this tab is open and its annotator works on it; a closed tab lets go.
    this.lease = new LeaseHeartbeat({
      send: () => this.api.heartbeat(this.imageId),
      leaseSeconds: this.config.leaseSeconds,
      isVisible: () => document.visibilityState === "visible",
      onLost: (message) => this.notices.showLeaseLost(message),
    }).start();
  }

  /** The image's masks again from the server (after "find" proposed new ones). */
  async reloadMasks() {
    const records = await this.api.listMasks(this.imageId);
    this.maskStore.set(openImage(records, this.queue.items, this.imageId, this.config.user?.username ?? null));
    if (proposalsLeft(this.maskStore.state)) this.review.move(1);
  }

  // ---------------------------------------------------------------- decoding (cached by RLE object)
  decode(rle) {
    let mask = this.decoded.get(rle);
    if (!mask) {
      mask = decodeRle(rle);
      this.decoded.set(rle, mask);
    }
    return mask;
  }

  boundsOf(rle) {
    if (!this.boundsCache.has(rle)) this.boundsCache.set(rle, rleBounds(rle));
    return this.boundsCache.get(rle);
  }

  draftMask() {
    const rle = currentDraftRle(this.history.state);
    return rle ? this.decode(rle) : null;
  }

  // ---------------------------------------------------------------- the draft on screen
  /** Draw the draft layer again even if its mask did not change (after a brush preview). */
  redrawDraft() {
    this.shownRle = undefined;
    this.onDraftChange();
  }

  onDraftChange() {
    const d = this.history.state;
    const rle = currentDraftRle(d);
    if (rle !== this.shownRle) {
      // Only when the mask itself changed: not for a new point still waiting for its answer.
      this.shownRle = rle;
      this.view.setDraftMask(this.draftMask(), DRAFT_RGB, rle ? this.boundsOf(rle) : null);
    }
    this.view.setMarkers({ points: d.points, box: d.box });
    const editingKey = d.baseMask?.key ?? null;
    if (editingKey !== this.editingKey) {
      this.editingKey = editingKey;
      this.scheduleMasksRender(); // the mask being edited is hidden from the stored layer
    }
    $("draft-info").textContent = describeDraft(d);
    $("candidate-indicator").textContent = d.candidates.length ? `${d.candidateIndex + 1}/${d.candidates.length}` : "–";
    $("undo-button").disabled = !this.history.canUndo;
    $("redo-button").disabled = !this.history.canRedo;
    this.suggestions?.render();
    this.tick();
  }

  tick() {
    const active = draftHasWork(this.history.state) && this.effort.started;
    $("mask-timer").textContent = active ? `${Math.round(this.effort.seconds)} s · ${this.effort.clicks} clicks` : "";
    $("move-on-hint").hidden = !(active && this.effort.overHint(this.config.secondsPerMaskHint));
  }

  // ---------------------------------------------------------------- the image's masks on screen
  labelById(label) {
    return labelById(this.labels, label);
  }

  visibleMasks() {
    return visibleMasks(this.maskStore.state, this.history.state.baseMask?.key ?? null);
  }

  /** Masks changed (often several steps in one handler): draw them once, after the handler. */
  scheduleMasksRender() {
    if (this._renderQueued) return;
    this._renderQueued = true;
    queueMicrotask(() => {
      this._renderQueued = false;
      this.renderMasks();
    });
  }

  renderMasks() {
    renderMaskList(this.maskStore.state, { labels: this.labels, me: this.config.user,
      onSelect: (key) => this.select(key), onEdit: (key) => this.editor.editMask(key),
      suggestionsOf: (m) => this.suggestions.forMask(m) });
    this.suggestions.render();
    this.refreshStoredOverlay();
  }

  /** The stored-mask layer: redrawn only when what it shows changed (a full-image repaint). */
  refreshStoredOverlay() {
    if (!this.info) return;
    const { selectedKey } = this.maskStore.state;
    const layers = this.visibleMasks().map((m, i) => ({
      mask: this.decode(m.segmentation),
      rgb: maskRgb(this.labels, m, i),
      selected: m.key === selectedKey,
      proposed: isProposal(m),
      bounds: this.boundsOf(m.segmentation),
    }));
    if (this._layers && sameLayers(this._layers, layers)) return;
    this._layers = layers;
    this.view.setStoredMasks(layers);
  }

  /** Click in the list, Alt+click on the image: select a mask, or deselect it. */
  select(key) {
    this.maskStore.update(select, key, { toggle: true });
    if (isSelectedProposal(this.maskStore.state)) this.review.startClock();
  }

  // ---------------------------------------------------------------- saves
  onSaved(op, data) {
    if (op.imageId !== this.imageId) return;
    this.maskStore.update(applySaved, op, data);
    const base = this.history.state.baseMask;
    if (op.kind !== "delete" && data && base && (base.localId === op.localId || base.id === data.id)) {
      this.history.patchWhere((s) => s.baseMask === base,
        { baseMask: { ...base, id: data.id, version: data.version, key: `id:${data.id}` } });
    }
  }

  renderPending() {
    const items = this.queue.items;
    renderPendingPanel(items, {
      discard: (opId) => this.queue.discard(opId),
      reload: () => {
        this.leaving = true;
        window.location.reload();
      },
    });
    this.maskStore.update(reflectQueue, items);
  }

  // ---------------------------------------------------------------- actions
  /** The label picker for the current mask, or (`target.proposalKey`) for a proposal as it is. */
  openPicker(target = null) {
    const rle = currentDraftRle(this.history.state);
    if (!target && (!rle || rleArea(rle) === 0)) {
      this.notices.flash("Nothing to accept yet: click on an object first.");
      return;
    }
    this.picker.open(target, this.suggestions.preferredLabel());
  }

  navigate(url, direction) {
    if (!url) {
      this.notices.flash(`There is no ${direction} image.`);
      return;
    }
    const working = draftHasWork(this.history.state);
    if (working && !this.confirm.confirmed(direction,
      `The current mask is not saved. Press again to go to the ${direction} image anyway.`)) return;
    const left = proposalsLeft(this.maskStore.state);
    if (left && !working && !this.confirm.confirmed(`${direction}:proposals`,
      `${left} proposal${left === 1 ? " is" : "s are"} not reviewed yet (A / X / M). ` +
      `Press again to go to the ${direction} image anyway.`)) return;
    this.leaving = true;
    goToImage(url, direction === "next" ? this.config.nextImageForm : null);
  }

  // ---------------------------------------------------------------- wiring
  bindDom() {
    this.pointer.bind();
    this.picker.bind();
    this.suggestions.bindFind();
    bindPendingPanel(this.queue);
    this.notices.makeDismissable();
    window.addEventListener("keydown", (e) => this.actions.onKey(e));
    document.addEventListener("visibilitychange", () => {
      for (const effort of [this.effort, this.review.decision]) {
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
        this.actions.run(button.dataset.action);
        if (!this.picker.isOpen) this.canvas.focus(); // keys go to the page, not to the clicked button
      });
    }
    this.actions.bindHelp();
    $("nav-next").disabled = !this.config.nextImageUrl;
    $("nav-prev").disabled = !this.config.prevImageUrl;
    this.pointer.setTool("prompt");
    this.pointer.setBrushRadius(this.pointer.brushRadius);
    this.onDraftChange();
  }
}

async function main() {
  let page;
  try {
    page = new AnnotationPage(readConfig());
    Object.defineProperty(window, "maskmill", { value: testHooks(page), writable: false, configurable: false });
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
