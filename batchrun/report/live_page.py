"""The live viewer's page (`batchrun view`): one HTML document with its CSS and script inline.

The script asks `api/state?since=N` once a second and draws what it gets: counts, a latency
histogram (inline SVG), errors by type, and the contact sheet, each new request's tile put in plan
order without reloading anything. Filters (job, status, matrix value, error type, and with a base
the verdict by look) hide tiles in place. Every value from a record reaches the page as text
(`textContent`) or as an image `src` that is one of ours, http(s) or `data:image/`: never as HTML.
"""

from __future__ import annotations

from batchrun.report.shots import CSS, esc

__all__ = ["render_live_page"]

LIVE_CSS = """
header{display:flex;flex-wrap:wrap;gap:4px 16px;align-items:baseline}
#status.running{color:#b54708;font-weight:600}#status.done{color:#067647;font-weight:600}
#status.lost{color:#b42318;font-weight:600}
.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;margin:16px 0 10px}
.filters label{display:flex;gap:6px;align-items:center;font-size:.9em;max-width:100%}
.filters select{max-width:min(60vw,260px);font:inherit;padding:2px 4px}
.sheet-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(170px,45%),1fr));gap:8px}
.sheet-grid.compare{grid-template-columns:repeat(auto-fill,minmax(min(300px,100%),1fr))}
.tile{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:4px;min-width:0}
.tile.checks-failed{border:2px solid #b42318}
.tile .pics{display:grid;grid-template-columns:repeat(auto-fit,minmax(0,1fr));gap:4px}
.tile img{display:block;width:100%;height:auto;border-radius:3px;background:#e9ecf1}
.tile .side-label{font-size:.7em;color:#5b6572}
.tile .err{min-height:80px;display:flex;align-items:center;justify-content:center;text-align:center;
font-size:.8em;color:#b42318;background:#fdecea;border-radius:3px;padding:6px;overflow-wrap:anywhere}
.tile .text{font-size:.78em;color:#5b6572;background:#eef0f3;border-radius:3px;padding:6px;min-height:60px}
.tile figcaption{font-size:.76em;color:#5b6572;margin-top:3px}
.badge{display:inline-block;font-size:.72em;font-weight:600;border-radius:999px;padding:0 7px;margin:3px 4px 0 0}
.badge.changed,.badge.checks,.badge.failing{background:#fdecea;color:#b42318}
.badge.same,.badge.identical,.badge.passing{background:#e7f6ec;color:#067647}
.badge.bytes{background:#fef3e2;color:#b54708}
#errors td:nth-child(2){text-align:right}#errors td:first-child{overflow-wrap:normal;font-family:monospace}
"""

SCRIPT = r"""
"use strict";
const items = new Map();
let seq = 0;
const $ = (id) => document.getElementById(id);
const SAFE_SRC = /^(files\/(new|base)\/\d+$|https?:\/\/|data:image\/)/i;
const VISUAL = {identical: "identical bytes", same: "visually the same", changed: "visually changed",
  bytes: "other bytes", "newly failing": "newly failing", "newly passing": "newly passing"};
const BADGE = {identical: "identical", same: "same", changed: "changed", bytes: "bytes",
  "newly failing": "failing", "newly passing": "passing"};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function picture(image, alt) {
  if (!SAFE_SRC.test(image.src)) return null;
  const img = el("img");
  img.src = image.src;
  img.alt = alt;
  if (items.size > 48) img.loading = "lazy";  // a small sheet loads at once, as report --html does
  if (image.width && image.height) { img.width = image.width; img.height = image.height; }
  return img;
}

function side(shot, label, alt) {
  const box = el("div");
  if (label) box.append(el("div", "side-label", label));
  if (!shot.ok) { box.append(el("div", "err", shot.error || "failed")); return box; }
  const images = shot.images.map((image) => picture(image, alt)).filter(Boolean);
  if (images.length) box.append(...images);
  else box.append(el("div", "text", shot.text || "no image in the result"));
  return box;
}

function tile(it) {
  const figure = el("figure", "tile");
  figure.dataset.id = it.id;
  figure.dataset.index = it.index;
  figure.title = it.tooltip + (it.failed_checks.length ? "\nfailed: " + it.failed_checks.join("\nfailed: ") : "");
  const pics = el("div", "pics");
  if (it.base !== undefined) {
    pics.append(it.base ? side(it.base, "base", "base " + it.id) : el("div", "side-label", "(not in base)"));
  }
  pics.append(side(it, it.base !== undefined ? "new" : "", it.id));
  figure.append(pics);
  figure.append(el("figcaption", "", it.job + (it.label ? " · " + it.label : "")));
  if (it.visual) {
    const far = it.distance !== null && it.visual !== "identical" ? " " + it.distance + "/64" : "";
    const note = VISUAL[it.visual] + far;
    figure.append(el("span", "badge " + BADGE[it.visual], note));
    figure.dataset.visual = it.visual;
  }
  if (it.failed_checks.length) {
    figure.classList.add("checks-failed");
    const n = it.failed_checks.length;
    figure.append(el("span", "badge checks", "✗ " + n + " failed check" + (n === 1 ? "" : "s")));
  }
  return figure;
}

function place(it) {
  const sheet = $("sheet");
  const fresh = tile(it);
  const old = sheet.querySelector(`figure[data-id="${CSS.escape(it.id)}"]`);
  if (old) { old.replaceWith(fresh); return; }
  let after = sheet.lastElementChild;
  while (after && Number(after.dataset.index) > it.index) after = after.previousElementSibling;
  if (after) after.after(fresh); else sheet.prepend(fresh);
}

function nearest(sorted, p) {
  return sorted[Math.max(0, Math.ceil(p / 100 * sorted.length) - 1)];
}

function histogram(latencies) {
  const svg = $("hist");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  if (!latencies.length) return;
  const W = 520, H = 200, left = 10, top = 24, bottom = 24;
  const low = latencies[0], high = latencies[latencies.length - 1], span = (high - low) || 1;
  const bins = Math.min(24, Math.max(1, Math.ceil(Math.sqrt(latencies.length))));
  const counts = new Array(bins).fill(0);
  for (const v of latencies) counts[Math.min(bins - 1, Math.floor((v - low) / span * bins))] += 1;
  const peak = Math.max(...counts), plotW = W - 2 * left, plotH = H - top - bottom, barW = plotW / bins;
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  counts.forEach((count, i) => {
    const h = plotH * count / peak;
    const bar = add("rect", {x: left + i * barW + 1, y: top + plotH - h, width: Math.max(barW - 2, 1), height: h,
      fill: "#4f7cac"});
    const t = document.createElementNS(ns, "title");
    t.textContent = `${(low + span * i / bins).toFixed(3)}–${(low + span * (i + 1) / bins).toFixed(3)} s: ${count}`;
    bar.append(t);
  });
  add("line", {x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#8a94a3"});
  add("text", {x: left, y: H - 6}, low.toFixed(3) + " s");
  add("text", {x: left + plotW, y: H - 6, "text-anchor": "end"}, high.toFixed(3) + " s");
  add("text", {x: left + plotW, y: 14, "text-anchor": "end"},
    `p50 ${nearest(latencies, 50).toFixed(3)} s · p95 ${nearest(latencies, 95).toFixed(3)} s · ${latencies.length} ok`);
}

function options(select, values, label) {
  const have = new Set([...select.options].map((o) => o.value));
  for (const value of values) {
    if (have.has(value)) continue;
    const option = el("option", "", label ? label(value) : value);
    option.value = value;
    select.append(option);
  }
}

function matches(it, f) {
  if (f.job && it.job !== f.job) return false;
  if (f.error && it.error_type !== f.error) return false;
  if (f.matrix) {
    const cut = f.matrix.indexOf("=");
    if (it.matrix[f.matrix.slice(0, cut)] !== f.matrix.slice(cut + 1)) return false;
  }
  switch (f.status) {
    case "": return true;
    case "ok": return it.ok && !it.failed_checks.length;
    case "error": return !it.ok;
    case "checks": return it.failed_checks.length > 0;
    default: return it.visual === f.status;
  }
}

function render(state) {
  const all = [...items.values()];
  const ok = all.filter((it) => it.ok).length;
  const failedChecks = all.filter((it) => it.failed_checks.length).length;
  const latencies = all.filter((it) => it.ok && it.latency_s !== null).map((it) => it.latency_s);
  latencies.sort((a, b) => a - b);
  const finished = state.planned ? `${all.length}/${state.planned}` : String(all.length);
  const rows = [["finished", finished], ["ok", ok], ["errors", all.length - ok], ["failed checks", failedChecks],
    ["latency p50", latencies.length ? nearest(latencies, 50).toFixed(3) + " s" : "n/a"],
    ["latency p95", latencies.length ? nearest(latencies, 95).toFixed(3) + " s" : "n/a"]];
  $("counts").replaceChildren(...rows.map(([k, v]) => {
    const tr = el("tr"); tr.append(el("th", "", k), el("td", "", String(v))); tr.dataset.key = k; return tr;
  }));
  histogram(latencies);
  const errors = new Map();
  for (const it of all) {
    if (it.ok) continue;
    const type = it.error_type || "unknown";
    const entry = errors.get(type) || {count: 0, example: it.error};
    entry.count += 1;
    errors.set(type, entry);
  }
  $("errors").replaceChildren(...(errors.size ? [...errors].sort((a, b) => b[1].count - a[1].count).map(([type, e]) => {
    const tr = el("tr"); tr.append(el("td", "", type), el("td", "", String(e.count)), el("td", "muted", e.example));
    return tr;
  }) : [(() => { const tr = el("tr"); tr.append(el("td", "muted", "no errors")); return tr; })()]));
  options($("f-job"), [...new Set(all.map((it) => it.job))]);
  options($("f-error"), [...new Set(all.filter((it) => !it.ok).map((it) => it.error_type || "unknown"))]);
  options($("f-matrix"), [...new Set(all.flatMap((it) => Object.entries(it.matrix).map(([k, v]) => k + "=" + v)))]);
  if (state.base) options($("f-status"), [...new Set(all.map((it) => it.visual).filter(Boolean))], (v) => VISUAL[v]);
  const f = {job: $("f-job").value, status: $("f-status").value, matrix: $("f-matrix").value,
    error: $("f-error").value};
  let shown = 0;
  for (const figure of $("sheet").children) {
    const it = items.get(figure.dataset.id);
    figure.hidden = !(it && matches(it, f));
    if (!figure.hidden) shown += 1;
  }
  $("shown").textContent = `${shown} of ${all.length} shown`;
  const status = $("status");
  status.className = state.running ? "running" : "done";
  status.textContent = (state.running ? "running: " : "not running: ") + finished + " finished" +
    (state.base ? " · compared with " + state.base : "");
}

let last = null;
async function poll() {
  try {
    const response = await fetch("api/state?since=" + seq, {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const state = await response.json();
    if (state.reset) { items.clear(); $("sheet").replaceChildren(); }
    for (const it of state.items) { items.set(it.id, it); place(it); }
    seq = state.seq;
    last = state;
    render(state);
    document.body.dataset.seq = String(seq);
  } catch (error) {
    $("status").className = "lost";
    $("status").textContent = "lost the viewer (" + error.message + "); retrying";
  }
  setTimeout(poll, 1000);
}
for (const id of ["f-job", "f-status", "f-matrix", "f-error"]) {
  $(id).addEventListener("change", () => last && render(last));
}
poll();
"""


def render_live_page(output: str, base: str | None, nonce: str) -> str:
    title = f"batchrun view: {output}" + (f" vs {base}" if base else "")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request (a 404 in the console)
        f"<title>{esc(title)}</title><style>{CSS}{LIVE_CSS}</style></head>\n<body>\n"
        f'<header><h1>{esc(title)}</h1><span id="status" class="muted">connecting…</span></header>\n'
        '<div class="cards">'
        '<section class="card"><h3>Requests</h3><table class="metrics"><tbody id="counts"></tbody></table></section>'
        '<section class="card"><h3>Latency of ok requests</h3>'
        '<svg id="hist" viewBox="0 0 520 200" role="img" aria-label="latency histogram"></svg></section>'
        '<section class="card"><h3>Errors by type</h3><div class="scroll"><table><tbody id="errors"></tbody>'
        "</table></div></section></div>\n"
        '<nav class="filters" aria-label="filters">'
        '<label>job <select id="f-job"><option value="">all</option></select></label>'
        '<label>status <select id="f-status"><option value="">all</option><option value="ok">ok</option>'
        '<option value="error">error</option><option value="checks">failed checks</option></select></label>'
        '<label>matrix <select id="f-matrix"><option value="">all</option></select></label>'
        '<label>error type <select id="f-error"><option value="">all</option></select></label>'
        '<span id="shown" class="muted"></span></nav>\n'
        f'<h2>Contact sheet</h2><div id="sheet" class="sheet-grid{" compare" if base else ""}"></div>\n'
        f'<script nonce="{esc(nonce)}">{SCRIPT}</script>\n</body></html>\n'
    )
