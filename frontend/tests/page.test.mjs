// The template and the page script must agree: every element the script looks up by data-testid
// exists in annotate.html, the config blob is rendered with json_script, and the module is loaded
// from the static prefix the backend serves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";

const read = (path) => readFileSync(new URL(path, import.meta.url), "utf8");
const html = read("../annotate.html");
// The page script is app.js and the modules it loads; the lookups are spread over them.
const modules = readdirSync(new URL("../js/", import.meta.url)).filter((name) => name.endsWith(".js"));
const app = modules.map((name) => read(`../js/${name}`)).join("\n");

test("every data-testid the script looks up is in the template", () => {
  const used = new Set([...app.matchAll(/\$\("([a-z0-9-]+)"\)/g)].map((m) => m[1]));
  assert.ok(used.size > 20, `only ${used.size} lookups found`);
  const present = new Set([...html.matchAll(/data-testid="([a-z0-9-]+)"/g)].map((m) => m[1]));
  const missing = [...used].filter((id) => !present.has(id));
  assert.deepEqual(missing, []);
});

test("data-testid values in the template are unique", () => {
  const ids = [...html.matchAll(/data-testid="([a-z0-9-]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length);
});

test("the template renders the config with json_script and loads the module from /static/maskmill/", () => {
  assert.match(html, /\{\{ config_json\|json_script:"maskmill-config" \}\}/);
  assert.match(html, /<script type="module" src="\{% static 'maskmill\/js\/app\.js' %\}"><\/script>/);
  assert.match(html, /\{% load static %\}/);
  for (const m of html.matchAll(/\{% static '([^']+)' %\}/g)) {
    assert.ok(m[1].startsWith("maskmill/"), m[1]);
    read(`../${m[1].slice("maskmill/".length)}`); // the file exists
  }
});

test("the modules import only relative files that exist (no bundler, no packages)", () => {
  for (const name of modules) {
    const source = read(`../js/${name}`);
    for (const m of source.matchAll(/^\s*(?:import|export)[^;]*?from\s+"([^"]+)"/gm)) {
      assert.ok(m[1].startsWith("./") && m[1].endsWith(".js"), `${name} imports ${m[1]}`);
      read(`../js/${m[1].slice(2)}`);
    }
  }
});

test("every tool button has a key binding", async () => {
  const { KEY_BINDINGS } = await import("../js/keymap.js");
  const actions = new Set(KEY_BINDINGS.map((b) => b.action));
  for (const m of html.matchAll(/data-action="([A-Za-z]+)"/g)) assert.ok(actions.has(m[1]), m[1]);
});

test("the review page (a Django template) loads its script from this folder too", () => {
  const review = read("../../annotator/annotation/templates/annotation/review.html");
  const scripts = [...review.matchAll(/<script type="module" src="\{% static '([^']+)' %\}"><\/script>/g)].map((m) => m[1]);
  assert.deepEqual(scripts, ["maskmill/js/review.js"]);
  read(`../${scripts[0].slice("maskmill/".length)}`); // the file exists
  assert.match(review, /\{\{ review_data\|json_script:"review-data" \}\}/);
});
