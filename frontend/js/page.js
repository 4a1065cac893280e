// The page's few DOM helpers, shared by the modules that draw or read it: element lookup by
// data-testid, small element builders, the config blob, storage, the image file, and navigation.

import { MemoryStorage } from "./save_queue.js";

/** The element with this data-testid (annotate.html names every element the scripts use so). */
export const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

export function span(className, text, testid) {
  const node = document.createElement("span");
  if (className) node.className = className;
  if (testid) node.dataset.testid = testid;
  node.textContent = text;
  return node;
}

export function kbd(text) {
  const node = document.createElement("kbd");
  node.textContent = text;
  return node;
}

/** The JSON blob the Django view renders with json_script (#maskmill-config), with defaults. */
export function readConfig() {
  const node = document.getElementById("maskmill-config");
  if (!node) throw new Error("the page has no #maskmill-config JSON blob; it must be rendered by the annotate view");
  const config = JSON.parse(node.textContent);
  if (config.imageId == null) throw new Error("maskmill-config has no imageId");
  return { apiBase: "/api", labels: [], secondsPerMaskHint: 30, leaseSeconds: 900, ...config };
}

/** localStorage when the browser lets the page use it (private mode may not): else memory. */
export function safeStorage() {
  try {
    const probe = "maskmill:probe";
    window.localStorage.setItem(probe, "1");
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    return new MemoryStorage();
  }
}

/** Django's CSRF cookie, for pages rendered without a token in the config. */
export function csrfCookie() {
  const match = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
  return match ? decodeURIComponent(match[1]) : "";
}

export function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.decoding = "async";
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`the image file could not be loaded from ${url}`));
    image.src = url;
  });
}

/** Leave for another image (next, previous, the queue): the one place the page navigates away. */
export function goToImage(url, form = null) {
  if (!form) {
    window.location.assign(url);
    return;
  }
  // A navigation that changes state (finishing the image) is a POST of a form, never a GET.
  const element = document.createElement("form");
  element.method = "post";
  element.action = url;
  element.hidden = true;
  for (const [name, value] of Object.entries(form)) {
    const input = document.createElement("input");
    input.type = "hidden";
    input.name = name;
    input.value = String(value);
    element.append(input);
  }
  document.body.append(element);
  element.submit();
}
