// Baimo evaluation page (/eval): the runs stored by `baimo eval run` (GET /api/eval/runs) and, for the picked run,
// its self-contained HTML report with the cost–quality frontier (GET /api/eval/runs/{id}/report) in a sandboxed
// frame. The hash #/run/<id> opens a run. Plain ES module, no build step.

import { apiClient, h, keyDialog, parseTime, toast as showToast } from "/static/client.js";

const $ = (id) => document.getElementById(id);
const el = {
  main: $("eval-main"),
  status: $("eval-status"),
  empty: $("eval-empty"),
  runsPanel: $("runs-panel"),
  runsNote: $("runs-note"),
  runs: $("runs-table").querySelector("tbody"),
  reportPanel: $("report-panel"),
  reportTitle: $("report-title"),
  reportJson: $("report-json"),
  frame: $("report-frame"),
  refresh: $("refresh"),
  toasts: $("toasts"),
};

const client = apiClient(keyDialog());
const api = (path) => client.api(path, { headers: { Accept: "application/json" } });
const toast = (message, kind) => showToast(el.toasts, message, kind);
const state = { runs: [], selected: null, loading: false };

function fmtTime(iso) {
  const t = parseTime(iso);
  return t ? t.toLocaleString() : "–";
}

function renderRuns() {
  el.runs.replaceChildren(
    ...state.runs.map((run) => {
      const row = h(
        "tr",
        { class: "runs-row", "data-testid": "run-row", "data-run": run.run_id, tabindex: "0",
          "aria-selected": String(run.run_id === state.selected), onclick: () => openRun(run.run_id),
          onkeydown: (ev) => ev.key === "Enter" && openRun(run.run_id) },
        h("td", { class: "nowrap" }, fmtTime(run.created_at)),
        h("td", {}, run.suite || "–"),
        h("td", {}, (run.targets || []).join(", ")),
        h("td", { class: "num" }, String(run.results ?? "–")),
        h("td", {}, run.status),
      );
      return row;
    }),
  );
  el.runsNote.textContent = `${state.runs.length} run${state.runs.length === 1 ? "" : "s"}, newest first`;
}

async function openRun(runId) {
  state.selected = runId;
  if (location.hash !== `#/run/${runId}`) history.replaceState(null, "", `#/run/${runId}`);
  for (const row of el.runs.querySelectorAll("tr")) row.setAttribute("aria-selected", String(row.dataset.run === runId));
  el.reportPanel.hidden = false;
  el.reportTitle.textContent = `Report · ${runId}`;
  try {
    const res = await client.request(`/api/eval/runs/${encodeURIComponent(runId)}/report`, { headers: { Accept: "text/html" } });
    const page = await res.text();
    el.frame.onload = () => {
      // the whole report in the page's own scroll: the frame takes its document's height
      const doc = el.frame.contentDocument;
      if (doc) el.frame.style.height = `${doc.documentElement.scrollHeight + 8}px`;
    };
    el.frame.srcdoc = page;
    el.frame.dataset.run = runId;
  } catch (err) {
    toast(`Could not load the report: ${err.message}`);
  }
}

el.reportJson.addEventListener("click", async (ev) => {
  ev.preventDefault();
  if (!state.selected) return;
  try {
    const run = await api(`/api/eval/runs/${encodeURIComponent(state.selected)}`);
    const url = URL.createObjectURL(new Blob([JSON.stringify(run, null, 2)], { type: "application/json" }));
    window.open(url, "_blank", "noopener");
  } catch (err) {
    toast(`Could not load the run: ${err.message}`);
  }
});

async function load() {
  if (state.loading) return;
  state.loading = true;
  el.main.setAttribute("aria-busy", "true");
  el.refresh.disabled = true;
  try {
    state.runs = (await api("/api/eval/runs")).data;
    el.status.hidden = true;
    el.empty.hidden = state.runs.length > 0;
    el.runsPanel.hidden = state.runs.length === 0;
    renderRuns();
    const wanted = (location.hash.match(/^#\/run\/(.+)$/) || [])[1];
    const pick = wanted ? decodeURIComponent(wanted) : state.selected;
    if (pick && state.runs.some((r) => r.run_id === pick)) await openRun(pick);
  } catch (err) {
    el.status.hidden = false;
    el.status.classList.add("usage-status-error");
    el.status.textContent = `Could not load the runs: ${err.message}`;
  } finally {
    state.loading = false;
    el.refresh.disabled = false;
    el.main.setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
  }
}

el.refresh.addEventListener("click", load);
load();
