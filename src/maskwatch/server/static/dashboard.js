// The camera dashboard: one tile per camera, refreshed every 2 s from /v1/cameras and /v1/events.
"use strict";

const LABEL_NAMES = { mask: "mask", no_mask: "no mask", incorrect: "incorrect", unknown: "unknown" };
const tiles = new Map();

function chart(svg, history) {
  // Compliance per bucket as a line over 0-100 %, with the people seen as grey bars.
  const w = 400, h = 90, pad = 4;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    svg.append(node);
    return node;
  };
  add("line", { x1: 0, x2: w, y1: pad, y2: pad, stroke: "#ddd" });
  add("line", { x1: 0, x2: w, y1: h - pad, y2: h - pad, stroke: "#ddd" });
  const label = (x, y, text) => {
    const t = add("text", { x, y, "font-size": 9, fill: "#888" });
    t.textContent = text;
  };
  label(2, pad + 9, "100%");
  label(2, h - pad - 2, "0%");
  if (!history.length) return;
  const minutes = Math.round((history[history.length - 1].start - history[0].start) / 60);
  label(w - 90, pad + 9, minutes >= 1 ? `last ${minutes + 1} min` : "this minute");
  const n = Math.max(history.length, 10), step = w / n;
  const most = Math.max(1, ...history.map((b) => b.people));
  const points = [];
  history.forEach((b, i) => {
    const x = w - (history.length - i) * step;
    const bar = (h - 2 * pad) * b.people / most;
    add("rect", { x: x + 1, y: h - pad - bar, width: step - 2, height: bar, fill: "#e3e3e3" });
    if (b.compliance !== null) points.push(`${x + step / 2},${pad + (h - 2 * pad) * (1 - b.compliance)}`);
  });
  if (points.length) {
    add("polyline", { points: points.join(" "), fill: "none", stroke: "#1a9c1a", "stroke-width": 2 });
    for (const p of points) { const [cx, cy] = p.split(","); add("circle", { cx, cy, r: 3, fill: "#1a9c1a" }); }
  }
  const title = add("title", {});
  title.textContent = "properly masked (line, 0-100 %) and people seen (bars) per bucket";
}

function makeTile(cam) {
  const status = el("span", { class: "status", "data-testid": "status" });
  const remove = el("button", { type: "button", text: "Delete" });
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete camera ${cam.name}?`)) return;
    await api(`/v1/cameras/${cam.id}`, { method: "DELETE" });
    refresh();
  });
  const img = el("img", { class: "live", alt: `live view of ${cam.name}`, "data-testid": "live",
                          src: `/v1/cameras/${cam.id}/stream${keyQuery("?")}` });
  const compliance = el("div", { class: "compliance", "data-testid": "compliance" });
  const counts = el("div", { class: "counts", "data-testid": "in-view" });
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("data-testid", "chart");
  const alerts = el("ul", { class: "alerts", "data-testid": "alerts" });
  const node = el("section", { class: "tile", "data-camera": cam.id },
    el("h2", {}, el("span", { text: cam.name }), status, remove), img,
    el("div", {}, compliance, el("small", { text: "properly masked, current bucket" })), counts, svg,
    el("h3", { text: "Recent alerts" }), alerts);
  const tile = { node, status, compliance, counts, svg, alerts, img };
  tiles.set(cam.id, tile);
  document.getElementById("cameras").append(node);
  return tile;
}

function updateTile(tile, cam) {
  tile.status.textContent = cam.status + (cam.error ? `: ${cam.error}` : "") +
    (cam.status === "live" ? ` · ${cam.fps.toFixed(1)} fps` : "");
  tile.status.className = `status ${cam.status}`;
  tile.compliance.textContent = percent(cam.compliance);
  tile.counts.replaceChildren(...Object.entries(cam.in_view).map(
    ([k, n]) => el("span", { class: k, text: `${n} ${LABEL_NAMES[k] || k}` })));
  chart(tile.svg, cam.history);
}

async function updateAlerts(tile, cam) {
  const page = await (await api(`/v1/events?camera=${encodeURIComponent(cam.id)}&limit=5`)).json();
  tile.alerts.replaceChildren(...page.events.map((e) => {
    const when = new Date(e.time).toLocaleTimeString();
    const item = el("li", { "data-testid": "alert" });
    if (e.snapshot_url) item.append(el("img", { src: e.snapshot_url + keyQuery("?"), alt: "face at the alert" }));
    item.append(el("span", { class: e.label, text: `${when} person #${e.track_id}: ${LABEL_NAMES[e.label]}` +
                              ` (${percent(e.confidence)})` }));
    return item;
  }));
  if (!page.events.length) tile.alerts.append(el("li", { text: "none" }));
}

async function refresh() {
  const errorBox = document.getElementById("load-error");
  try {
    const { cameras } = await (await api("/v1/cameras")).json();
    errorBox.textContent = "";
    const seen = new Set();
    for (const cam of cameras) {
      seen.add(cam.id);
      const tile = tiles.get(cam.id) || makeTile(cam);
      updateTile(tile, cam);
      updateAlerts(tile, cam).catch((e) => { errorBox.textContent = e.message; });
    }
    for (const [id, tile] of tiles) {
      if (!seen.has(id)) { tile.img.src = ""; tile.node.remove(); tiles.delete(id); }
    }
    document.getElementById("empty").hidden = cameras.length > 0;
  } catch (e) {
    errorBox.textContent = e.message;
  }
}

document.getElementById("add-camera").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target, error = document.getElementById("add-error");
  const body = { name: form.name.value.trim(), url: form.url.value.trim(),
                 alert_after: Number(form.alert_after.value || 3) };
  try {
    await api("/v1/cameras", { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body) });
    error.textContent = "";
    form.reset();
    refresh();
  } catch (e) {
    error.textContent = e.message;
  }
});

setupKeyField();
refresh();
setInterval(refresh, 2000);
