// The lease heartbeat's timing: every third of the lease, only while the tab is visible and the
// annotator active; a 409 stops it and says why; other failures are tried again.
import { test } from "node:test";
import assert from "node:assert/strict";

import { LeaseHeartbeat, heartbeatDue, heartbeatInterval } from "../js/lease.js";

function fakeClock() {
  const clock = { t: 1_000_000, timers: new Map(), next: 1 };
  clock.now = () => clock.t;
  clock.setTimer = (fn, ms) => {
    const id = clock.next++;
    clock.timers.set(id, { fn, ms, at: clock.t + ms });
    return id;
  };
  clock.clearTimer = (id) => clock.timers.delete(id);
  /** Advance time, firing interval timers as they come due (and letting promises settle). */
  clock.advance = async (ms) => {
    const end = clock.t + ms;
    for (;;) {
      const due = [...clock.timers.values()].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      clock.t = due.at;
      due.at += due.ms;
      due.fn();
      await new Promise((resolve) => setImmediate(resolve));
    }
    clock.t = end;
  };
  return clock;
}

function heartbeat(clock, options = {}) {
  const sent = [];
  const lost = [];
  const beat = new LeaseHeartbeat({
    send: () => {
      sent.push(clock.t);
      return options.answer ? options.answer() : Promise.resolve({ lease_seconds: 900 });
    },
    leaseSeconds: 900,
    now: clock.now,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
    isVisible: () => options.visible?.() ?? true,
    onLost: (message) => lost.push(message),
  });
  return { beat, sent, lost };
}

test("a renewal is due every third of the lease, only when visible and active", () => {
  assert.equal(heartbeatInterval(900), 300_000);
  assert.equal(heartbeatInterval(3), 5000 / 3); // at least 5 s of lease
  const base = { now: 400_000, lastBeat: 100_000, lastActivity: 390_000, visible: true, intervalMs: 300_000,
    idleMs: 900_000 };
  assert.equal(heartbeatDue(base), true);
  assert.equal(heartbeatDue({ ...base, lastBeat: 200_000 }), false); // renewed 200 s ago
  assert.equal(heartbeatDue({ ...base, visible: false }), false); // a background tab
  assert.equal(heartbeatDue({ ...base, lastActivity: 400_000 - 900_001 }), false); // idle for a lease
});

test("an active annotator's open page renews about every five minutes of a 15-minute lease", async () => {
  const clock = fakeClock();
  const { beat, sent } = heartbeat(clock);
  beat.start();
  for (let minute = 1; minute <= 30; minute++) {
    await clock.advance(60_000);
    beat.activity(); // clicks now and then
  }
  assert.ok(sent.length >= 5 && sent.length <= 6, `sent ${sent.length}`);
  const gaps = sent.slice(1).map((t, i) => t - sent[i]);
  for (const gap of gaps) assert.ok(gap >= 300_000 && gap <= 300_000 + 15_000, `gap ${gap}`);
  assert.ok(sent[0] - 1_000_000 <= 300_000 + 15_000); // the first one before a third of the lease is gone
});

test("a hidden tab sends nothing, and renews as soon as it is visible again", async () => {
  const clock = fakeClock();
  let visible = false;
  const { beat, sent } = heartbeat(clock, { visible: () => visible });
  beat.start();
  await clock.advance(10 * 60_000);
  assert.equal(sent.length, 0);
  visible = true;
  beat.activity();
  await beat.tick(); // the page calls tick() on visibilitychange
  assert.equal(sent.length, 1);
});

test("an idle annotator lets the lease lapse", async () => {
  const clock = fakeClock();
  const { beat, sent } = heartbeat(clock);
  beat.start();
  await clock.advance(60 * 60_000); // an hour without a click or a key
  assert.ok(sent.length <= 3, `sent ${sent.length}`); // only within the first lease of idleness
  const last = sent.at(-1);
  assert.ok(last - 1_000_000 <= 900_000 + 15_000);
  await clock.advance(60 * 60_000);
  assert.equal(sent.at(-1), last);
});

test("409 stops the heartbeat with the server's reason; other failures are retried", async () => {
  const clock = fakeClock();
  let fail = "network";
  const { beat, sent, lost } = heartbeat(clock, {
    answer: () => {
      if (fail === "network") return Promise.reject(Object.assign(new Error("network error"), { status: 0 }));
      if (fail === "conflict") {
        return Promise.reject(Object.assign(new Error("409"), { status: 409,
          body: { detail: "annotator2 is annotating this image now" } }));
      }
      return Promise.resolve({});
    },
  });
  beat.start();
  beat.activity();
  await clock.advance(300_000); // checks every 15 s: the first one due is at a third of the lease
  assert.equal(sent.length, 1);
  await clock.advance(15_000); // not renewed: tried again at the next check
  assert.equal(sent.length, 2);
  assert.deepEqual(lost, []);
  fail = "conflict";
  await clock.advance(15_000);
  assert.deepEqual(lost, ["annotator2 is annotating this image now"]);
  assert.equal(beat.lost, true);
  const count = sent.length;
  beat.activity();
  await clock.advance(60 * 60_000);
  assert.equal(sent.length, count); // stopped
  assert.equal(clock.timers.size, 0);
});
