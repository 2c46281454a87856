// Baimo usage page (/usage): totals, the hybrid's saving over time, usage by owner (key, team or persona: a bar
// chart and a table from /api/usage?by=...), per-model table, per-day stacked bar chart (inline SVG), recent
// requests. Plain ES module, no build step, no chart library.

import { apiClient, debounce, fmtCost, fmtInt, h, keyDialog, parseTime, toast as showToast } from "/static/client.js";
import { CHART_HEIGHT, chartSvg, countFrame, gridLines, s } from "/static/charts.js";
import { describeRoute } from "/static/route.js";
import { ownersPanel } from "/static/usage_owners.js";

const FAILED = "(failed)"; // requests that never reached a model (model is null)
const PALETTE = ["#6366f1", "#10b981", "#f59e0b", "#f43f5e", "#0ea5e9", "#a855f7", "#84cc16", "#f97316", "#14b8a6", "#ec4899"];
const FAILED_COLOR = "#a1a1aa";
const HYBRID_COLORS = { cost: "#6366f1", baseline: "#a1a1aa", saving: "#10b981" }; // as the swatches in style.css

const $ = (id) => document.getElementById(id);

const el = {
  main: $("usage-main"),
  status: $("usage-status"),
  cards: $("cards"),
  empty: $("usage-empty"),
  chartPanel: $("chart-panel"),
  chart: $("chart"),
  chartNote: $("chart-note"),
  legend: $("legend"),
  hybridPanel: $("hybrid-panel"),
  hybridHeadline: $("hybrid-headline"),
  hybridChart: $("hybrid-chart"),
  hybridNote: $("hybrid-note"),
  modelsPanel: $("models-panel"),
  table: $("usage-table"),
  recentPanel: $("recent-panel"),
  recent: $("recent-table"),
  refresh: $("refresh"),
  toasts: $("toasts"),
};

const state = { data: null, kinds: new Map(), routers: [], colors: new Map(), loading: false };

/* ------------------------------------------------------------------ */
/* Utilities                                                            */
/* ------------------------------------------------------------------ */

function toast(message) {
  showToast(el.toasts, message);
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  const n = Number(v);
  return n >= 10000 ? `${(n / 1000).toFixed(1)} s` : `${fmtInt(Math.round(n))} ms`;
}

function fmtPct(v, digits = 1) {
  return `${Number(v).toFixed(digits)}%`;
}

function fmtTime(t) {
  const d = parseTime(t);
  if (!d) return t || "–";
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function modelKey(m) {
  return m === null || m === undefined || m === "" ? FAILED : m;
}

function colorFor(model) {
  return state.colors.get(modelKey(model)) || FAILED_COLOR;
}

/* ------------------------------------------------------------------ */
/* HTTP (the same stored key as the chat page)                          */
/* ------------------------------------------------------------------ */

const askForKey = keyDialog();
const client = apiClient(askForKey);
const api = (path) => client.api(path, { headers: { Accept: "application/json" } });
const owners = ownersPanel({ api, toast, fmtMs, palette: PALETTE, noneColor: FAILED_COLOR });

/* ------------------------------------------------------------------ */
/* Rendering                                                            */
/* ------------------------------------------------------------------ */

function assignColors(byModel) {
  state.colors.clear();
  let i = 0;
  for (const row of byModel) {
    const key = modelKey(row.model);
    if (state.colors.has(key)) continue;
    state.colors.set(key, key === FAILED ? FAILED_COLOR : PALETTE[i++ % PALETTE.length]);
  }
}

function setCard(id, value, sub) {
  $(id).textContent = value;
  if (sub !== undefined) $(`${id}-sub`).textContent = sub || "\u00a0";
}

function renderCards(data) {
  const t = data.totals || {};
  const embeddings = (data.by_model || [])
    .filter((r) => state.kinds.get(r.model) === "embedding")
    .reduce((n, r) => n + r.requests, 0);
  setCard("total-requests", fmtInt(t.requests), embeddings ? `chat completions · ${fmtInt(embeddings)} embeddings` : "chat completions");
  const avg = t.requests ? Number(t.cost || 0) / t.requests : null;
  setCard("total-cost", fmtCost(t.cost), avg !== null ? `${fmtCost(avg)} per request` : "");

  const baseline = t.cost_if_all_to_strongest;
  $("baseline-cost").textContent = baseline === null || baseline === undefined ? "–" : fmtCost(baseline);
  $("baseline-sub").textContent = t.strongest_model ? `everything on ${t.strongest_model}` : "no priced model to compare with";
  $("baseline-sub").title = t.strongest_model || "";

  const saving = $("saving");
  const card = saving.closest(".card");
  card.classList.remove("card-negative");
  if (baseline && baseline > 0) {
    const pct = ((baseline - Number(t.cost || 0)) / baseline) * 100;
    saving.textContent = fmtPct(pct);
    saving.dataset.value = pct.toFixed(4);
    const diff = baseline - Number(t.cost || 0);
    $("saving-sub").textContent = diff >= 0 ? `${fmtCost(diff)} saved` : `${fmtCost(-diff)} over the strongest model`;
    if (pct < 0) card.classList.add("card-negative");
  } else {
    saving.textContent = "–";
    delete saving.dataset.value;
    $("saving-sub").textContent = t.strongest_model ? "nothing to compare yet" : "no priced model configured";
  }
}

function modelCell(model, extra = null) {
  const key = modelKey(model);
  const kind = state.kinds.get(model);
  return h(
    "span",
    { class: "model-cell" },
    h("span", { class: "swatch", style: `background:${colorFor(model)}`, "aria-hidden": "true" }),
    h("span", { class: key === FAILED ? "model-name muted" : "model-name", title: key }, key === FAILED ? "failed (no model)" : key),
    kind === "embedding" ? h("span", { class: "tag" }, "embeddings") : null,
    extra,
  );
}

function renderModels(data) {
  const rows = data.by_model || [];
  const total = rows.reduce((n, r) => n + r.requests, 0);
  const tbody = el.table.tBodies[0];
  tbody.replaceChildren(
    ...rows.map((r) => {
      const share = total ? (r.requests / total) * 100 : 0;
      return h(
        "tr",
        { "data-testid": "usage-row", "data-model": modelKey(r.model), "data-requests": r.requests },
        h("td", {}, modelCell(r.model)),
        h("td", { class: "num" }, fmtInt(r.requests)),
        h(
          "td",
          { class: "share-col" },
          h(
            "span",
            { class: "share", title: `${fmtPct(share)} of all requests` },
            h("span", { class: "share-track" }, h("span", { class: "share-fill", style: `width:${share.toFixed(2)}%;background:${colorFor(r.model)}` })),
            h("span", { class: "share-pct" }, fmtPct(share, share >= 10 || share === 0 ? 0 : 1)),
          ),
        ),
        h("td", { class: "num" }, fmtInt(r.prompt_tokens)),
        h("td", { class: "num" }, fmtInt(r.completion_tokens)),
        h("td", { class: "num" }, fmtCost(r.cost)),
      );
    }),
  );
  const sum = (k) => rows.reduce((n, r) => n + Number(r[k] || 0), 0);
  el.table.tFoot.replaceChildren(
    h(
      "tr",
      {},
      h("th", { scope: "row" }, "All models"),
      h("td", { class: "num" }, fmtInt(total)),
      h("td", { class: "share-col" }),
      h("td", { class: "num" }, fmtInt(sum("prompt_tokens"))),
      h("td", { class: "num" }, fmtInt(sum("completion_tokens"))),
      h("td", { class: "num" }, fmtCost(sum("cost"))),
    ),
  );
}

function addDays(day, n) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

// The days to draw: every day from the first to the last one with traffic (gaps as empty
// slots) when that span is short enough, otherwise just the days with traffic.
function chartDays(byDay) {
  const present = [...new Set(byDay.map((r) => r.day))].sort();
  if (!present.length) return [];
  const first = present[0];
  const last = present[present.length - 1];
  const span = Math.round((Date.parse(`${last}T00:00:00Z`) - Date.parse(`${first}T00:00:00Z`)) / 86400000) + 1;
  if (!(span > 0) || span > 62) return present;
  // a single day looks lonely: show the week leading up to it
  const start = span < 7 ? addDays(last, -6) : first;
  const days = [];
  for (let d = start; d <= last; d = addDays(d, 1)) days.push(d);
  return days;
}

function shortDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  return d.toLocaleDateString("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
}

function dayCount(days) {
  return `${days.length} day${days.length === 1 ? "" : "s"}`;
}

function renderChart(data) {
  const byDay = data.by_day || [];
  const days = chartDays(byDay);
  const order = [...state.colors.keys()];
  const cells = new Map(); // day -> Map(modelKey -> row)
  for (const r of byDay) {
    if (!cells.has(r.day)) cells.set(r.day, new Map());
    const m = cells.get(r.day);
    const key = modelKey(r.model);
    const prev = m.get(key);
    m.set(key, prev ? { ...prev, requests: prev.requests + r.requests, cost: prev.cost + r.cost } : { ...r });
    if (!order.includes(key)) order.push(key);
  }

  const totals = days.map((d) => [...(cells.get(d) || new Map()).values()].reduce((n, r) => n + r.requests, 0));
  const frame = countFrame(el.chart, Math.max(0, ...totals));
  const { width, height, m, plotW, y } = frame;
  const band = plotW / Math.max(1, days.length);
  const barW = Math.max(3, Math.min(44, band * 0.68));

  const svg = chartSvg("usage-chart", width, height, `Requests per day and model, ${dayCount(days)}`);
  svg.append(gridLines(frame, fmtInt));

  const labelEvery = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(plotW / 64))));
  const bars = s("g", { class: "chart-bars" });
  const labels = s("g", { class: "chart-labels" });
  days.forEach((day, i) => {
    const cx = m.left + band * i + band / 2;
    const x = cx - barW / 2;
    let acc = 0;
    const dayCells = cells.get(day) || new Map();
    const stack = order.filter((k) => dayCells.has(k));
    stack.forEach((key, j) => {
      const r = dayCells.get(key);
      if (!r.requests) return;
      const y0 = y(acc);
      acc += r.requests;
      const y1 = y(acc);
      const top = j === stack.length - 1;
      const rect = s(
        "rect",
        {
          class: "bar",
          "data-testid": "chart-bar",
          "data-day": day,
          "data-model": key,
          "data-requests": r.requests,
          x: x.toFixed(2),
          y: y1.toFixed(2),
          width: barW.toFixed(2),
          height: Math.max(1, y0 - y1 - (top ? 0 : 1)).toFixed(2),
          rx: top ? Math.min(3, barW / 4) : 0,
          fill: colorFor(key === FAILED ? null : key),
        },
        s("title", {}, `${day} · ${key}: ${fmtInt(r.requests)} request${r.requests === 1 ? "" : "s"}, ${fmtCost(r.cost)}`),
      );
      bars.append(rect);
    });
    if (acc > 0 && barW >= 16) {
      bars.append(s("text", { x: cx, y: y(acc) - 4, "text-anchor": "middle", class: "bar-total" }, fmtInt(acc)));
    }
    if ((days.length - 1 - i) % labelEvery === 0) {
      // counted from the newest day, so the latest day always has a label
      labels.append(s("text", { x: cx, y: height - 8, "text-anchor": "middle", class: "tick" }, shortDay(day)));
    }
  });
  svg.append(bars, labels);
  el.chart.replaceChildren(svg);

  el.legend.replaceChildren(
    ...order.map((key) => {
      const reqs = byDay.filter((r) => modelKey(r.model) === key).reduce((n, r) => n + r.requests, 0);
      return h(
        "li",
        { "data-model": key },
        h("span", { class: "swatch", style: `background:${colorFor(key === FAILED ? null : key)}`, "aria-hidden": "true" }),
        h("span", {}, key === FAILED ? "failed (no model)" : key),
        h("span", { class: "legend-count" }, fmtInt(reqs)),
      );
    }),
  );
  const total = totals.reduce((a, b) => a + b, 0);
  el.chartNote.textContent = days.length ? `${shortDay(days[0])} – ${shortDay(days[days.length - 1])} (UTC) · ${fmtInt(total)} request${total === 1 ? "" : "s"}` : "";
}

// A round step for `ticks` grid lines covering v dollars: 1, 2, 2.5 or 5 × 10^k, for any magnitude.
function niceCostStep(v, ticks) {
  const raw = v > 0 ? v / ticks : 1e-6;
  const exp = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * exp >= raw * (1 - 1e-9)) return m * exp;
  }
  return 10 * exp;
}

// "$0.0025" for an axis tick: as many decimals as the step needs, no more.
function axisCost(v, step) {
  let d = 0;
  while (d < 10 && Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) > 1e-6) d++;
  const sign = v < 0 ? "−" : "";
  return `${sign}$${Math.abs(v).toFixed(Math.max(d, step >= 1 ? 0 : 2))}`;
}

// The headline: "The hybrid saved $X (Y%) on N routed requests".
function renderHybridHeadline(hy) {
  const cost = Number(hy.cost || 0);
  const base = Number(hy.baseline_cost || 0);
  const saved = base - cost;
  const n = Number(hy.requests || 0);
  const reqs = [h("strong", { "data-testid": "hybrid-requests" }, fmtInt(n)), ` routed request${n === 1 ? "" : "s"}`];
  const line = el.hybridHeadline;
  line.dataset.requests = String(n);
  line.dataset.cost = String(cost);
  line.dataset.baselineCost = String(base);
  line.classList.toggle("hybrid-negative", base > 0 && saved < 0);
  if (!(base > 0)) {
    delete line.dataset.saved;
    line.replaceChildren(...reqs, `, ${fmtCost(cost)} in all; no priced model to compare them with yet.`);
    return;
  }
  const share = (saved / base) * 100;
  line.dataset.saved = String(saved);
  line.dataset.pct = share.toFixed(4);
  const amount = h("strong", { "data-testid": "hybrid-saved" }, fmtCost(Math.abs(saved)));
  const pctNode = h("strong", { "data-testid": "hybrid-saved-pct" }, fmtPct(Math.abs(share)));
  const tail = ` (${fmtCost(cost)} instead of ${fmtCost(base)} on the strongest model).`;
  if (saved >= 0) line.replaceChildren("The hybrid saved ", amount, " (", pctNode, ") on ", ...reqs, tail);
  else line.replaceChildren("The hybrid cost ", amount, " (", pctNode, ") more than the strongest model on ", ...reqs, tail);
}

// Per day: what routed answers cost (bar) vs the same tokens on the strongest model (grey bar), and the
// cumulative saving (line, right axis). From `hybrid.by_day` of /api/usage.
function renderHybridChart(byDay) {
  const days = chartDays(byDay);
  const cells = new Map(byDay.map((r) => [r.day, r]));
  const cum = [];
  let acc = 0;
  for (const d of days) {
    const r = cells.get(d);
    if (r) acc += Number(r.baseline_cost || 0) - Number(r.cost || 0);
    cum.push(acc);
  }
  const width = Math.max(300, Math.floor(el.hybridChart.clientWidth || 640));
  const height = CHART_HEIGHT;
  const m = { top: 20, right: 64, bottom: 28, left: 64 };
  const plotW = width - m.left - m.right;
  const plotH = height - m.top - m.bottom;
  const ticks = 4;
  const barMax = Math.max(0, ...byDay.map((r) => Math.max(Number(r.cost || 0), Number(r.baseline_cost || 0))));
  const step = niceCostStep(barMax, ticks);
  const y = (v) => m.top + plotH - (v / (step * ticks)) * plotH;
  // the right axis spans the cumulative saving, from 0 (or its lowest, when it went negative)
  const lo = Math.min(0, ...cum);
  const rstep = niceCostStep(Math.max(...cum, 0) - lo, ticks);
  const rlo = Math.floor(lo / rstep) * rstep;
  const rhi = rlo + rstep * Math.max(ticks, Math.ceil((Math.max(...cum, 0) - rlo) / rstep));
  const yr = (v) => m.top + plotH - ((v - rlo) / (rhi - rlo)) * plotH;

  const svg = chartSvg("hybrid-chart", width, height,
    `Cost of routed answers against the strongest model per day, and the cumulative saving, ${dayCount(days)}`);
  const grid = gridLines({ width, m, ticks, step, y }, (v) => axisCost(v, step));
  const rticks = Math.round((rhi - rlo) / rstep);
  for (let i = 0; i <= rticks; i++) {
    const v = rlo + rstep * i;
    grid.append(s("text", { x: width - m.right + 8, y: Math.round(yr(v)) + 4.5, "text-anchor": "start", class: "tick tick-saving" }, axisCost(v, rstep)));
  }
  svg.append(grid);

  const band = plotW / Math.max(1, days.length);
  const barW = Math.max(3, Math.min(24, band * 0.3));
  const labelEvery = Math.max(1, Math.ceil(days.length / Math.max(1, Math.floor(plotW / 64))));
  const bars = s("g", { class: "chart-bars" });
  const labels = s("g", { class: "chart-labels" });
  const points = [];
  days.forEach((day, i) => {
    const cx = m.left + band * i + band / 2;
    const r = cells.get(day);
    if (r) {
      const pair = [
        ["cost", Number(r.cost || 0), cx - barW - 1, `${day} · routed answers: ${fmtCost(r.cost)} for ${fmtInt(r.requests)} request${r.requests === 1 ? "" : "s"}`],
        ["baseline", Number(r.baseline_cost || 0), cx + 1, `${day} · the same tokens on the strongest model: ${fmtCost(r.baseline_cost)}`],
      ];
      for (const [kind, v, x, tip] of pair) {
        const top = y(v);
        bars.append(
          s(
            "rect",
            {
              class: `bar bar-${kind}`,
              "data-testid": "hybrid-bar",
              "data-kind": kind,
              "data-day": day,
              "data-value": v,
              x: x.toFixed(2),
              y: (v > 0 ? Math.min(top, y(0) - 1) : y(0)).toFixed(2),
              width: barW.toFixed(2),
              height: (v > 0 ? Math.max(1, y(0) - top) : 0).toFixed(2),
              rx: Math.min(3, barW / 4),
              fill: HYBRID_COLORS[kind],
            },
            s("title", {}, tip),
          ),
        );
      }
    }
    // the line starts the day before the first routed day, at zero (nothing saved yet)
    if (r && !points.length && i > 0) points.push([cx - band, yr(0), days[i - 1], 0, false]);
    if (r || points.length) points.push([cx, yr(cum[i]), day, cum[i], !!r]);
    if (r && Number(r.baseline_cost) > 0 && barW >= 10) {
      const change = Math.trunc(((Number(r.cost || 0) - Number(r.baseline_cost)) / Number(r.baseline_cost)) * 100);
      const top = y(Math.max(Number(r.cost || 0), Number(r.baseline_cost)));
      bars.append(s("text", { x: cx, y: top - 5, "text-anchor": "middle", class: "bar-total", "data-testid": "hybrid-day-change" }, `${change < 0 ? "−" : "+"}${Math.abs(change)}%`));
    }
    if ((days.length - 1 - i) % labelEvery === 0) {
      labels.append(s("text", { x: cx, y: height - 8, "text-anchor": "middle", class: "tick" }, shortDay(day)));
    }
  });
  const line = s("g", { class: "chart-line" });
  line.append(
    s("polyline", {
      points: points.map(([x, yy]) => `${x.toFixed(2)},${yy.toFixed(2)}`).join(" "),
      fill: "none",
      stroke: HYBRID_COLORS.saving,
      "stroke-width": 2,
      "stroke-linejoin": "round",
    }),
  );
  for (const [x, yy, day, v, has] of points) {
    if (!has) continue;
    line.append(
      s(
        "circle",
        { cx: x.toFixed(2), cy: yy.toFixed(2), r: 3.5, fill: HYBRID_COLORS.saving, "data-testid": "hybrid-point", "data-day": day, "data-value": v },
        s("title", {}, `${day} · saved so far: ${fmtCost(v)}`),
      ),
    );
  }
  svg.append(bars, line, labels);
  el.hybridChart.replaceChildren(svg);
  const routed = byDay.reduce((n, r) => n + Number(r.requests || 0), 0);
  el.hybridNote.textContent = days.length ? `${shortDay(days[0])} – ${shortDay(days[days.length - 1])} (UTC) · ${fmtInt(routed)} routed request${routed === 1 ? "" : "s"}` : "";
}

function renderHybrid(data) {
  const hy = data.hybrid;
  el.hybridPanel.hidden = !(hy && hy.requests > 0);
  if (el.hybridPanel.hidden) return;
  renderHybridHeadline(hy);
  renderHybridChart(hy.by_day || []);
}

function statusCell(r) {
  const ok = r.status_code && r.status_code < 400 && !r.error;
  const parts = [];
  if (ok) {
    parts.push(h("span", { class: "badge badge-ok" }, String(r.status_code)));
    if (r.finish_reason === "escalated") parts.push(h("span", { class: "badge badge-stopped" }, "escalated"));
    else if (r.finish_reason && r.finish_reason !== "stop") parts.push(h("span", { class: "muted small" }, r.finish_reason));
  } else {
    parts.push(h("span", { class: "badge badge-error", title: r.error || "" }, r.status_code ? String(r.status_code) : "error"));
    if (r.error) parts.push(h("span", { class: "muted small ellipsis", title: r.error }, r.error));
  }
  return h("td", { class: "status-cell" }, h("span", { class: "status-wrap" }, ...parts));
}

// The route in words (the raw route string is the tooltip).
function routeCell(r) {
  const words = describeRoute(r.route, { routers: state.routers, model: r.model }).text || r.route;
  return h("span", { class: "route-words", title: `Route: ${r.route}`, "data-route": r.route }, words);
}

function renderRecent(data) {
  const rows = (data.recent || []).slice(0, 20);
  const tbody = el.recent.tBodies[0];
  tbody.replaceChildren(
    ...rows.map((r) => {
      const routed = r.model_requested && r.model && r.model_requested !== r.model;
      const via = routed ? h("span", { class: "via", title: `requested ${r.model_requested}` }, `via ${r.model_requested}`) : null;
      const tag = r.endpoint === "embeddings" && state.kinds.get(r.model) !== "embedding" ? h("span", { class: "tag" }, "embeddings") : null;
      const model = r.model ? modelCell(r.model, tag) : modelCell(null, r.model_requested ? h("span", { class: "via" }, `asked for ${r.model_requested}`) : null);
      const latencyTip = [r.ttft_ms != null ? `TTFT ${fmtMs(r.ttft_ms)}` : null, r.stream ? "streamed" : null].filter(Boolean).join(" · ");
      const full = parseTime(r.created_at);
      return h(
        "tr",
        { "data-testid": "recent-row", "data-model": modelKey(r.model), class: r.error || (r.status_code && r.status_code >= 400) ? "row-error" : null },
        h("td", { class: "nowrap", title: full ? full.toLocaleString() : "" }, fmtTime(r.created_at)),
        h("td", {}, h("span", { class: "model-stack" }, model, via)),
        h("td", { class: "route" }, r.route ? routeCell(r) : h("span", { class: "muted" }, "–")),
        h("td", { class: "num nowrap" }, `${fmtInt(r.prompt_tokens)} / ${fmtInt(r.completion_tokens)}`),
        h("td", { class: "num" }, fmtCost(r.cost)),
        h("td", { class: "num nowrap", title: latencyTip || null }, fmtMs(r.latency_ms)),
        statusCell(r),
      );
    }),
  );
}


function render() {
  const data = state.data;
  if (!data) return;
  const byModel = data.by_model || [];
  const empty = !byModel.length && !(data.recent || []).length;
  assignColors(byModel);
  el.status.hidden = true;
  el.cards.hidden = false;
  renderCards(data);
  el.empty.hidden = !empty;
  el.chartPanel.hidden = empty || !(data.by_day || []).length;
  el.modelsPanel.hidden = empty;
  el.recentPanel.hidden = empty || !(data.recent || []).length;
  owners.el.panel.hidden = empty;
  renderHybrid(data);
  if (empty) return;
  owners.show(data.report);
  renderModels(data);
  if (!el.chartPanel.hidden) renderChart(data);
  renderRecent(data);
}

async function load() {
  if (state.loading) return;
  state.loading = true;
  el.main.setAttribute("aria-busy", "true");
  el.refresh.disabled = true;
  try {
    const [usage, models] = await Promise.all([api(`/api/usage?by=${owners.by}`), api("/v1/models").catch(() => null)]);
    state.kinds.clear();
    for (const m of (models && models.data) || []) state.kinds.set(m.id, (m.baimo && m.baimo.kind) || "model");
    state.routers = ((models && models.data) || []).filter((m) => m.baimo && m.baimo.kind === "router");
    state.data = usage;
    render();
  } catch (err) {
    if (!state.data) {
      el.status.hidden = false;
      el.status.classList.add("usage-status-error");
      el.status.textContent = `Could not load usage: ${err.message}`;
    }
    toast(`Could not load usage: ${err.message}`);
  } finally {
    state.loading = false;
    el.refresh.disabled = false;
    el.main.setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
  }
}

el.refresh.addEventListener("click", load);
let lastWidth = 0;
window.addEventListener(
  "resize",
  debounce(() => {
    const w = el.chart.clientWidth || el.hybridChart.clientWidth;
    if (state.data && w !== lastWidth) {
      lastWidth = w;
      if (!el.chartPanel.hidden) renderChart(state.data);
      if (!el.hybridPanel.hidden) renderHybridChart(state.data.hybrid.by_day || []);
      if (!owners.el.panel.hidden) owners.render();
    }
  }, 120),
);

load();
