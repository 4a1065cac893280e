// The lease heartbeat: while the annotation page is open, visible and its annotator active, it
// renews the lease on the image every third of the lease, so a long image is not handed to another
// annotator mid-work. A hidden tab or an idle annotator sends nothing, and a closed tab nothing at
// all: the lease then lapses and the queue hands the image on. Timers and clock are injected, so
// the logic is unit-tested under Node (frontend/tests/lease.test.mjs).

/** Milliseconds between renewals: a third of the lease (at least 5 s). */
export function heartbeatInterval(leaseSeconds) {
  return Math.max(5, Number(leaseSeconds) || 0) * 1000 / 3;
}

/**
 * Whether to renew now: the tab is visible, the annotator did something within `idleMs`, and the
 * last renewal is `intervalMs` old.
 */
export function heartbeatDue({ now, lastBeat, lastActivity, visible, intervalMs, idleMs }) {
  if (!visible) return false;
  if (now - lastActivity > idleMs) return false;
  return now - lastBeat >= intervalMs;
}

export class LeaseHeartbeat {
  /**
   * send(): Promise, rejects with an error whose `status` is 409 when the image is no longer ours.
   * onLost(message): the lease is gone (the heartbeat stops). idleMs: activity older than this no
   * longer counts (default: one lease, so an abandoned visible tab lets go within two leases).
   */
  constructor({ send, leaseSeconds, idleMs = null, now = () => Date.now(), isVisible = () => true,
    setTimer = (fn, ms) => setInterval(fn, ms), clearTimer = (id) => clearInterval(id),
    onLost = () => {}, onRenewed = () => {} } = {}) {
    this.send = send;
    this.intervalMs = heartbeatInterval(leaseSeconds);
    this.idleMs = idleMs ?? Math.max(5, Number(leaseSeconds) || 0) * 1000;
    this.now = now;
    this.isVisible = isVisible;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.onLost = onLost;
    this.onRenewed = onRenewed;
    this.lastBeat = now(); // opening the page took (or renewed) the lease
    this.lastActivity = now();
    this.inFlight = null;
    this.timer = null;
    this.lost = false;
    this.beats = 0;
  }

  /** Check every quarter interval (at most every 15 s): a renewal is never much later than due. */
  start() {
    if (this.timer === null && !this.lost) {
      this.timer = this.setTimer(() => this.tick(), Math.min(15000, this.intervalMs / 4));
    }
    return this;
  }

  stop() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
  }

  /** The annotator did something (pointer, key, wheel). */
  activity() {
    this.lastActivity = this.now();
  }

  /** Renew if due; resolves when done. Also called when the tab becomes visible again. */
  tick() {
    if (this.lost || this.inFlight) return this.inFlight ?? Promise.resolve();
    const due = heartbeatDue({ now: this.now(), lastBeat: this.lastBeat, lastActivity: this.lastActivity,
      visible: this.isVisible(), intervalMs: this.intervalMs, idleMs: this.idleMs });
    if (!due) return Promise.resolve();
    this.inFlight = Promise.resolve()
      .then(() => this.send())
      .then((answer) => {
        this.lastBeat = this.now();
        this.beats++;
        this.onRenewed(answer);
      }, (error) => {
        if (error?.status === 409) {
          this.lost = true;
          this.stop();
          this.onLost(error.body?.detail ?? error.message ?? "this image is no longer leased to you");
        }
        // Anything else (network, a restarting server): tried again at the next check.
      })
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }
}
