// The page's only door to the server: JSON over fetch with the session cookie and CSRF token, and
// retries with exponential backoff for transient failures. Saves go through save_queue.js.

export class ApiError extends Error {
  constructor(message, { status = 0, body = null, retryable = false } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.body = body;
    this.retryable = retryable;
  }
}

/** 409: somebody else (another tab or person) changed the object since we loaded it. */
export class ConflictError extends ApiError {
  constructor(message, options) {
    super(message, options);
    this.name = "ConflictError";
  }
}

const RETRYABLE_STATUS = new Set([408, 425, 429, 500, 502, 503, 504]);

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Delay before retry number `attempt` (1-based): base·2^(attempt-1), capped, with ±20 % jitter. */
export function backoffDelay(attempt, baseMs = 500, maxMs = 30000, random = Math.random) {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.8 + 0.4 * random()));
}

/** The most useful sentence in a DRF error body. */
export function errorMessage(status, body) {
  if (body && typeof body === "object") {
    if (typeof body.detail === "string") return body.detail;
    const parts = Object.entries(body).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : JSON.stringify(v)}`);
    if (parts.length) return parts.join("; ");
  }
  if (typeof body === "string" && body.trim() && body.length < 300) return body.trim();
  return status ? `server answered ${status}` : "network error: the server could not be reached";
}

export class ApiClient {
  constructor({ apiBase = "/api", csrfToken = "", fetchImpl = globalThis.fetch?.bind(globalThis),
    retries = 3, baseDelayMs = 400, sleepFn = sleep } = {}) {
    this.apiBase = apiBase.replace(/\/$/, "");
    this.csrfToken = csrfToken;
    this.fetch = fetchImpl;
    this.retries = retries;
    this.baseDelayMs = baseDelayMs;
    this.sleep = sleepFn;
  }

  url(path) {
    if (/^https?:\/\//.test(path) || path.startsWith(this.apiBase + "/")) return path;
    return this.apiBase + (path.startsWith("/") ? path : "/" + path);
  }

  /** One HTTP call, parsed JSON back; transient failures retried `retries` times. */
  async request(method, path, { body, retries = this.retries, signal, headers = {} } = {}) {
    let attempt = 0;
    for (;;) {
      try {
        return await this._once(method, path, body, signal, headers);
      } catch (error) {
        if (signal?.aborted || !(error instanceof ApiError) || !error.retryable || attempt >= retries) throw error;
        attempt++;
        await this.sleep(backoffDelay(attempt, this.baseDelayMs));
      }
    }
  }

  async _once(method, path, body, signal, headers) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", ...headers },
      signal,
    };
    if (method !== "GET" && method !== "HEAD") {
      init.headers["X-CSRFToken"] = this.csrfToken;
      init.headers["X-Requested-With"] = "XMLHttpRequest";
    }
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await this.fetch(this.url(path), init);
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new ApiError(errorMessage(0, null), { retryable: true });
    }
    const text = await response.text().catch(() => "");
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    if (response.ok) return data;
    const options = { status: response.status, body: data, retryable: RETRYABLE_STATUS.has(response.status) };
    if (response.status === 409) {
      throw new ConflictError(
        `${errorMessage(409, data)} — this mask was changed in another tab or by someone else. ` +
          "Reload the image to see the current version.",
        options,
      );
    }
    throw new ApiError(errorMessage(response.status, data), options);
  }

  getImage(imageId) {
    return this.request("GET", `/images/${imageId}/`);
  }

  /** All masks of an image, following DRF pagination when the list is paginated. */
  async listMasks(imageId) {
    let page = await this.request("GET", `/images/${imageId}/masks/`);
    if (Array.isArray(page)) return page;
    const masks = [...(page?.results ?? [])];
    for (let guard = 0; page?.next && guard < 1000; guard++) {
      page = await this.request("GET", page.next);
      masks.push(...(page?.results ?? []));
    }
    return masks;
  }

  async listLabels(projectId) {
    const page = await this.request("GET", `/projects/${projectId}/labels/`);
    return Array.isArray(page) ? page : page?.results ?? [];
  }

  prepare(imageId) {
    return this.request("POST", `/images/${imageId}/prepare`, { body: {} });
  }

  predict(imageId, body, signal) {
    return this.request("POST", `/images/${imageId}/predict`, { body, signal, retries: 1 });
  }

  /** Renew this user's lease on the image; 409 (ConflictError, `body.detail`) when it is not theirs. */
  heartbeat(imageId) {
    return this.request("POST", `/images/${imageId}/heartbeat`, { body: {}, retries: 0 });
  }

  createMask(imageId, body, idempotencyKey) {
    const headers = idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {};
    return this.request("POST", `/images/${imageId}/masks/`, { body, headers, retries: 0 });
  }

  updateMask(maskId, body) {
    return this.request("PATCH", `/masks/${maskId}/`, { body, retries: 0 });
  }

  deleteMask(maskId, version) {
    return this.request("DELETE", `/masks/${maskId}/?version=${encodeURIComponent(version)}`, {
      body: { version },
      retries: 0,
    });
  }
}
