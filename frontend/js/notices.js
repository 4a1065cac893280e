// What the page tells the annotator outside the canvas: the status line, short flashes, error and
// lease banners, the classic-segmenter notice, and "press again" confirmations.

import { $ } from "./page.js";

export class Notices {
  constructor() {
    this.fallback = null; // the segmenter named in the fallback notice, once shown
    this._timers = {};
  }

  setStatus(text) {
    $("status").textContent = text;
    $("status").dataset.state = text;
  }

  /** A short message that goes away by itself. */
  flash(text) {
    this._showFor("flash", text, 3500);
  }

  /** Something went wrong: shown longer than a flash. */
  showError(text) {
    this._showFor("error-banner", text, 10000);
  }

  _showFor(testid, text, ms) {
    const node = $(testid);
    node.textContent = text;
    node.hidden = false;
    clearTimeout(this._timers[testid]);
    this._timers[testid] = setTimeout(() => (node.hidden = true), ms);
  }

  showLeaseLost(text) {
    const node = $("lease-lost");
    node.textContent = `This image is no longer yours: ${text}`;
    node.hidden = false;
    document.body.dataset.lease = "lost";
  }

  /** The model answered with the classic segmenter (no checkpoint): say so, once per image. */
  setFallback(model) {
    if (model === this.fallback) return; // a dismissed notice stays dismissed
    this.fallback = model;
    const notice = $("fallback-notice");
    notice.hidden = !model;
    document.body.dataset.fallback = String(Boolean(model));
    if (model) {
      notice.textContent = `No model checkpoint is configured: masks come from the ${model} segmenter ` +
        "(OpenCV, no learning). Expect rougher edges; refine with clicks and the brush.";
    }
  }

  /** Notices the annotator may click away. */
  makeDismissable(testids = ["fallback-notice", "move-on-hint", "flash"]) {
    for (const id of testids) {
      $(id).title = "Click to dismiss";
      $(id).addEventListener("click", () => ($(id).hidden = true));
    }
  }
}

/**
 * "Press again to ...": an action that loses work runs only when asked twice within `windowMs`.
 * `confirmed(action)` is true on the second ask; the first one shows `message` through `say`.
 */
export class DoublePress {
  constructor({ say, windowMs = 3000, now = () => Date.now() }) {
    this.say = say;
    this.windowMs = windowMs;
    this.now = now;
    this.pending = { action: null, until: 0 };
  }

  confirmed(action, message) {
    const now = this.now();
    if (this.pending.action === action && now < this.pending.until) {
      this.pending = { action: null, until: 0 };
      return true;
    }
    this.pending = { action, until: now + this.windowMs };
    this.say(message);
    return false;
  }
}
