// The API client and the save queue against a real HTTP server on 127.0.0.1 (node:http), so
// retries, status codes and JSON bodies go through a real network stack.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { ApiClient, ApiError, ConflictError, backoffDelay, errorMessage } from "../js/api.js";
import { MemoryStorage, SaveQueue } from "../js/save_queue.js";

/** A tiny mask server: `script` is a list of responses (status, body) served in order per route. */
async function startServer(handler) {
  const requests = [];
  const server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      const entry = { method: req.method, url: req.url, headers: req.headers, body: raw ? JSON.parse(raw) : null };
      requests.push(entry);
      const [status, body] = handler(entry, requests);
      if (status === "hangup") return req.socket.destroy();
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(body === undefined ? "" : JSON.stringify(body));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}/api`;
  return { base, requests, close: () => new Promise((r) => server.close(r)) };
}

const noSleep = () => Promise.resolve();

test("requests carry CSRF and JSON; transient failures are retried, then succeed", async () => {
  let calls = 0;
  const srv = await startServer(() => (++calls < 3 ? [503, { detail: "restarting" }] : [200, { state: "ready" }]));
  try {
    const api = new ApiClient({ apiBase: srv.base, csrfToken: "tok", sleepFn: noSleep });
    assert.deepEqual(await api.prepare(5), { state: "ready" });
    assert.equal(srv.requests.length, 3);
    assert.equal(srv.requests[0].url, "/api/images/5/prepare");
    assert.equal(srv.requests[0].headers["x-csrftoken"], "tok");
    assert.equal(srv.requests[0].headers["content-type"], "application/json");
  } finally {
    await srv.close();
  }
});

test("client errors are not retried and say what the server said", async () => {
  const srv = await startServer(() => [400, { segmentation: ["RLE size [2, 2] does not match the image"] }]);
  try {
    const api = new ApiClient({ apiBase: srv.base, sleepFn: noSleep });
    await assert.rejects(api.createMask(1, {}), (e) => e instanceof ApiError && /does not match the image/.test(e.message));
    assert.equal(srv.requests.length, 1);
  } finally {
    await srv.close();
  }
});

test("409 becomes a clear conflict message", async () => {
  const srv = await startServer(() => [409, { detail: "version 3 is stale, the mask is at version 4" }]);
  try {
    const api = new ApiClient({ apiBase: srv.base, sleepFn: noSleep });
    await assert.rejects(api.updateMask(9, { version: 3 }), (e) => e instanceof ConflictError &&
      /stale/.test(e.message) && /another tab/.test(e.message));
  } finally {
    await srv.close();
  }
});

test("mask lists follow pagination", async () => {
  const srv = await startServer((req) => req.url.includes("page=2")
    ? [200, { count: 3, next: null, results: [{ id: 3 }] }]
    : [200, { count: 3, next: `${srv.base}/images/1/masks/?page=2`, results: [{ id: 1 }, { id: 2 }] }]);
  try {
    const api = new ApiClient({ apiBase: srv.base });
    assert.deepEqual((await api.listMasks(1)).map((m) => m.id), [1, 2, 3]);
  } finally {
    await srv.close();
  }
});

test("a save that fails on the network stays pending, survives a reload, and is sent later", async () => {
  let down = true;
  const srv = await startServer((req) => (down ? ["hangup"] : [201, { id: 77, version: 1, ...req.body }]));
  const storage = new MemoryStorage();
  try {
    const api = new ApiClient({ apiBase: srv.base, sleepFn: noSleep });
    const first = new SaveQueue({ client: api, storage, baseDelayMs: 10_000 });
    first.enqueue({ kind: "create", imageId: 4, localId: "L1", body: { label: 2 } });
    await first.flush();
    assert.equal(first.pendingCount, 1);
    assert.equal(first.items[0].status, "pending");
    assert.match(first.items[0].lastError, /network/);
    first.stop(); // the tab closes

    down = false;
    const saved = [];
    const second = new SaveQueue({ client: api, storage, onSaved: (op, data) => saved.push(data.id) });
    await second.flush();
    assert.equal(second.pendingCount, 0);
    assert.deepEqual(saved, [77]);
    assert.equal(second.serverId("L1"), 77);
    const creates = srv.requests.filter((r) => r.method === "POST");
    assert.equal(creates.at(-1).headers["idempotency-key"], creates[0].headers["idempotency-key"]);
  } finally {
    await srv.close();
  }
});

test("transient server errors are retried with backoff until they pass", async () => {
  let calls = 0;
  const srv = await startServer((req) => (++calls <= 2 ? [502, undefined] : [200, { id: 5, version: 2 }]));
  try {
    const api = new ApiClient({ apiBase: srv.base, sleepFn: noSleep });
    const queue = new SaveQueue({ client: api, baseDelayMs: 5, maxDelayMs: 10 });
    const done = new Promise((resolve) => (queue.onSaved = resolve));
    queue.enqueue({ kind: "update", maskId: 5, body: { label: 1, version: 1 } });
    await done;
    assert.equal(calls, 3);
    assert.equal(queue.pendingCount, 0);
    queue.stop();
  } finally {
    await srv.close();
  }
});

test("a conflict is kept and shown, not dropped, and does not block other saves", async () => {
  const srv = await startServer((req) => req.method === "PATCH"
    ? [409, { detail: "stale version" }]
    : [201, { id: 8, version: 1 }]);
  try {
    const api = new ApiClient({ apiBase: srv.base, sleepFn: noSleep });
    const queue = new SaveQueue({ client: api });
    queue.enqueue({ kind: "update", maskId: 3, body: { version: 1 } });
    queue.enqueue({ kind: "create", imageId: 1, localId: "L2", body: {} });
    await queue.flush();
    const items = queue.items;
    assert.equal(items.length, 1);
    assert.equal(items[0].status, "conflict");
    assert.match(items[0].lastError, /stale version/);
    queue.discard(items[0].opId);
    assert.equal(queue.pendingCount, 0);
  } finally {
    await srv.close();
  }
});

test("edits and deletes of a mask not yet created fold into its create", async () => {
  const queue = new SaveQueue({ client: null });
  queue.flush = () => Promise.resolve(); // keep it offline: this test is about the queue's bookkeeping
  queue.enqueue({ kind: "create", imageId: 1, localId: "A", body: { label: 1, segmentation: "x" } });
  queue.enqueue({ kind: "update", localId: "A", body: { label: 4 } });
  assert.equal(queue.pendingCount, 1);
  assert.deepEqual(queue.items[0].body, { label: 4, segmentation: "x" });
  queue.enqueue({ kind: "delete", localId: "A" });
  assert.equal(queue.pendingCount, 0);
});

test("later ops find the server id of a mask created earlier in the queue", async () => {
  const srv = await startServer((req) => req.method === "POST" ? [201, { id: 41, version: 1 }] : [204, undefined]);
  try {
    const api = new ApiClient({ apiBase: srv.base });
    const queue = new SaveQueue({ client: api });
    queue.enqueue({ kind: "create", imageId: 1, localId: "B", body: {} });
    await queue.flush();
    queue.enqueue({ kind: "delete", localId: "B", version: 1 });
    await queue.flush();
    assert.equal(srv.requests.at(-1).method, "DELETE");
    assert.equal(srv.requests.at(-1).url, "/api/masks/41/?version=1");
    assert.deepEqual(srv.requests.at(-1).body, { version: 1 });
  } finally {
    await srv.close();
  }
});

test("backoff doubles and is capped; messages are readable", () => {
  const fixed = () => 0.5;
  assert.equal(backoffDelay(1, 100, 1000, fixed), 100);
  assert.equal(backoffDelay(3, 100, 1000, fixed), 400);
  assert.equal(backoffDelay(10, 100, 1000, fixed), 1000);
  assert.equal(errorMessage(400, { label: ["not in this project"] }), "label: not in this project");
  assert.equal(errorMessage(500, null), "server answered 500");
});
