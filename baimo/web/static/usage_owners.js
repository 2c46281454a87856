// The usage page's "By owner" panel: usage by key, team or persona (GET /api/usage?by=..., its `report`), as a
// bar chart of requests (the cost on each bar) and a table. Plain ES module.

import { fmtCost, fmtInt, h } from "/static/client.js";
import { chartSvg, countFrame, gridLines, s } from "/static/charts.js";

const OWNER_NAMES = { key: "Key", team: "Team", persona: "Persona" };
const OWNER_NONE = { key: "no key (local)", team: "no team", persona: "no persona" };
const OWNER_BARS = 12; // the most expensive groups get a bar; the table lists them all

// The panel over the page's elements; `api(path)` fetches JSON, `toast(text)` reports a failure, `fmtMs` formats
// a latency, `palette` colours the bars and `noneColor` the group without an owner. `show(report)` draws a
// report; `by` is the grouping shown (for the page's next full reload).
export function ownersPanel({ api, toast, fmtMs, palette, noneColor }) {
  const $ = (id) => document.getElementById(id);
  const el = { panel: $("owners-panel"), chart: $("owners-chart"), table: $("owners-table"), note: $("owners-note"),
               col: $("owners-col"), tabs: [...document.querySelectorAll(".owner-tabs .tab")] };
  let report = null;

  function ownerLabel(r, by) {
    if (r.key === null || r.key === undefined) return OWNER_NONE[by];
    return r.label && r.label !== r.key ? r.label : String(r.key);
  }

  function renderChart(rows, by) {
    const shown = rows.slice(0, OWNER_BARS);
    const frame = countFrame(el.chart, Math.max(0, ...shown.map((r) => r.requests)));
    const { width, height, m, plotW, y } = frame;
    const band = plotW / Math.max(1, shown.length);
    const barW = Math.max(3, Math.min(56, band * 0.68));
    const svg = chartSvg("owners-chart", width, height, `Requests by ${OWNER_NAMES[by].toLowerCase()}`);
    const grid = gridLines(frame, fmtInt);
    const bars = s("g", { class: "chart-bars" });
    const maxChars = Math.max(4, Math.floor(band / 7));
    shown.forEach((r, i) => {
      const cx = m.left + band * i + band / 2;
      const label = ownerLabel(r, by);
      const top = y(r.requests);
      bars.append(
        s(
          "rect",
          {
            class: "bar",
            "data-testid": "owner-bar",
            "data-owner": label,
            "data-requests": r.requests,
            x: (cx - barW / 2).toFixed(2),
            y: top.toFixed(2),
            width: barW.toFixed(2),
            height: Math.max(1, y(0) - top).toFixed(2),
            rx: Math.min(3, barW / 4),
            fill: r.key === null ? noneColor : palette[i % palette.length],
          },
          s("title", {}, `${label}: ${fmtInt(r.requests)} request${r.requests === 1 ? "" : "s"}, ${fmtCost(r.cost)}`),
        ),
      );
      if (barW >= 16) bars.append(s("text", { x: cx, y: top - 4, "text-anchor": "middle", class: "bar-total" }, fmtCost(r.cost)));
      const short = label.length > maxChars ? `${label.slice(0, maxChars - 1)}…` : label;
      bars.append(s("text", { x: cx, y: height - 8, "text-anchor": "middle", class: "tick" }, short));
    });
    svg.append(grid, bars);
    el.chart.replaceChildren(svg);
  }

  function render() {
    if (!report) return;
    const by = report.by;
    const rows = report.data || [];
    el.col.textContent = OWNER_NAMES[by];
    for (const tab of el.tabs) {
      const on = tab.dataset.by === by;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
    }
    const more = rows.length > OWNER_BARS ? ` · chart: the ${OWNER_BARS} most expensive` : "";
    el.note.textContent = `${fmtInt(rows.length)} ${OWNER_NAMES[by].toLowerCase()}${rows.length === 1 ? "" : "s"}${more}`;
    renderChart(rows, by);
    el.table.tBodies[0].replaceChildren(
      ...rows.map((r) =>
        h(
          "tr",
          { "data-testid": "owner-row", "data-owner": ownerLabel(r, by) },
          h("td", { title: r.key === null ? "" : String(r.key) }, ownerLabel(r, by)),
          h("td", { class: "num" }, fmtInt(r.requests)),
          h("td", { class: "num" }, fmtInt(r.errors)),
          h("td", { class: "num" }, fmtInt(r.prompt_tokens)),
          h("td", { class: "num" }, fmtInt(r.completion_tokens)),
          h("td", { class: "num" }, fmtCost(r.cost)),
          h("td", { class: "num" }, fmtMs(r.latency_ms_avg)),
        ),
      ),
    );
  }

  async function load(by) {
    try {
      const data = await api(`/api/usage?by=${encodeURIComponent(by)}`);
      report = data.report;
      render();
    } catch (err) {
      toast(`Could not load usage by ${by}: ${err.message}`);
    }
  }

  for (const tab of el.tabs) tab.addEventListener("click", () => load(tab.dataset.by));

  return {
    el,
    get by() {
      return report ? report.by : "key";
    },
    show(next) {
      report = next || null;
      render();
    },
    render,
  };
}
