// Shared by the dashboard pages: the API key (kept in localStorage) and fetch with it.
"use strict";

const KEY_NAME = "maskwatch-api-key";

function apiKey() { return localStorage.getItem(KEY_NAME) || ""; }

function keyQuery(sep) { const k = apiKey(); return k ? `${sep}api_key=${encodeURIComponent(k)}` : ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail
        : body.detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${detail}`);
  }
  return response;
}

function setupKeyField() {
  const input = document.getElementById("api-key");
  input.value = apiKey();
  input.addEventListener("change", () => { localStorage.setItem(KEY_NAME, input.value.trim()); location.reload(); });
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function percent(x) { return x === null || x === undefined ? "–" : `${Math.round(100 * x)}%`; }
