// Time and clicks spent on one mask, from its first prompt to accept (SA-1B's per-mask figures);
// for a model proposal, from the moment it is selected to the decision (accept, reject, fix).
// Time only runs while the page is visible, so a mask left open over lunch does not count hours.

export class MaskEffort {
  constructor(now = () => Date.now()) {
    this.now = now;
    this.reset();
  }

  reset() {
    this.clicks = 0;
    this._elapsedMs = 0;
    this._runningSince = null;
    this.started = false;
  }

  /** Start the clock without an interaction: a model proposal put in front of the annotator. */
  begin() {
    if (!this.started) {
      this.started = true;
      this._runningSince = this.now();
    }
  }

  /** Count one interaction (point, box, scribble, brush stroke); the first one starts the clock. */
  click() {
    this.begin();
    this.clicks++;
  }

  pause() {
    if (this._runningSince !== null) {
      this._elapsedMs += this.now() - this._runningSince;
      this._runningSince = null;
    }
  }

  resume() {
    if (this.started && this._runningSince === null) this._runningSince = this.now();
  }

  get seconds() {
    const running = this._runningSince === null ? 0 : this.now() - this._runningSince;
    return (this._elapsedMs + running) / 1000;
  }

  /** True once the mask took longer than the hint (SA-1B's rule of thumb: 30 s, then move on). */
  overHint(hintSeconds) {
    return hintSeconds > 0 && this.started && this.seconds >= hintSeconds;
  }
}

/** Seconds (one decimal) and clicks of an effort, as saves send them. */
export function effortFigures(effort) {
  return { seconds: Math.round(effort.seconds * 10) / 10, clicks: effort.clicks };
}
