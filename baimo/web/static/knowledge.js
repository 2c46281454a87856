// Baimo knowledge page (/knowledge, and /personas for its second tab): knowledge bases — create, upload
// files with live ingestion progress, list and remove documents, try a search, delete — and personas
// (personas.js). Plain ES module, no build step.

import { apiClient, fmtInt, h, keyDialog, parseTime, toast as showToast } from "/static/client.js";
import { mountPersonas } from "/static/personas.js";

const JOB_POLL_MS = 400;
const TABS = {
  knowledge: { path: "/knowledge", title: "Knowledge" },
  personas: { path: "/personas", title: "Personas" },
};

const $ = (id) => document.getElementById(id);

const el = {
  pageTitle: $("page-title"),
  tabs: [...document.querySelectorAll("[role=tab]")],
  kbList: $("kb-list"),
  kbCount: $("kb-count"),
  kbListStatus: $("kb-list-status"),
  createForm: $("kb-create-form"),
  name: $("kb-name"),
  description: $("kb-description"),
  embedder: $("kb-embedder"),
  chunkSize: $("kb-chunk-size"),
  chunkOverlap: $("kb-chunk-overlap"),
  createButton: $("kb-create"),
  none: $("kb-none"),
  selected: $("kb-selected"),
  title: $("kb-title"),
  desc: $("kb-desc"),
  facts: $("kb-facts"),
  deleteBase: $("kb-delete"),
  dropzone: $("dropzone"),
  files: $("kb-files"),
  job: $("job"),
  jobStatus: $("job-status"),
  jobCounts: $("job-counts"),
  jobProgress: $("job-progress"),
  jobCurrent: $("job-current"),
  jobReport: $("job-report"),
  jobFailed: $("job-failed"),
  docTable: $("doc-table"),
  docCount: $("doc-count"),
  docEmpty: $("doc-empty"),
  searchForm: $("kb-search-form"),
  query: $("kb-query"),
  mode: $("kb-mode"),
  k: $("kb-k"),
  searchButton: $("kb-search"),
  searchStatus: $("search-status"),
  hits: $("hits"),
  toasts: $("toasts"),
};

const state = {
  bases: [],
  selected: null, // name of the open base
  documents: [],
  jobs: new Map(), // base name -> its latest upload job (as the API reports it)
  searchToken: 0,
};

/* ------------------------------------------------------------------ */
/* Utilities                                                            */
/* ------------------------------------------------------------------ */

const askForKey = keyDialog();
const { api } = apiClient(askForKey);

function toast(message, kind = "error") {
  showToast(el.toasts, message, kind);
}

const enc = encodeURIComponent;
const basePath = (name) => `/api/knowledge/${enc(name)}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;

function fmtBytes(n) {
  const v = Number(n || 0);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KB`;
  return `${(v / 1024 / 1024).toFixed(1)} MB`;
}

function fmtDate(t) {
  const d = parseTime(t);
  if (!d) return "–";
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" });
}

const fmtScore = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

// The query's words (3+ letters) marked in a passage, built as DOM nodes (never HTML strings).
function highlighted(text, query) {
  const words = [...new Set((query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []))];
  if (!words.length) return [text];
  const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
  return text.split(pattern).map((part, i) => (i % 2 ? h("mark", {}, part) : part));
}

/* ------------------------------------------------------------------ */
/* Tabs (/knowledge and /personas are the same page)                    */
/* ------------------------------------------------------------------ */

let personas = null;

function showTab(name, { push = false } = {}) {
  for (const tab of el.tabs) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  el.pageTitle.textContent = TABS[name].title;
  document.title = `${TABS[name].title} · Baimo`;
  if (push) {
    const hash = name === "knowledge" && state.selected ? `#${enc(state.selected)}` : "";
    history.pushState(null, "", TABS[name].path + hash);
  }
  if (name === "personas") personas.refresh();
}

function tabFromPath() {
  return location.pathname.replace(/\/+$/, "") === TABS.personas.path ? "personas" : "knowledge";
}

/* ------------------------------------------------------------------ */
/* Knowledge bases                                                      */
/* ------------------------------------------------------------------ */

async function loadBases() {
  let body;
  try {
    body = await api("/api/knowledge");
  } catch (err) {
    el.kbListStatus.hidden = false;
    el.kbListStatus.textContent = `Could not load knowledge bases: ${err.message}`;
    toast(`Could not load knowledge bases: ${err.message}`);
    return;
  }
  state.bases = (body && body.data) || [];
  renderBases();
  if (state.selected && !state.bases.some((b) => b.name === state.selected)) selectBase(null);
  else renderHeader();
}

function renderBases() {
  el.kbCount.textContent = state.bases.length ? plural(state.bases.length, "base") : "";
  el.kbListStatus.hidden = state.bases.length > 0;
  el.kbListStatus.textContent = "No knowledge bases yet: create one below.";
  el.kbList.replaceChildren(
    ...state.bases.map((b) =>
      h(
        "li",
        { "data-testid": "kb-item", "data-name": b.name },
        h(
          "button",
          {
            type: "button",
            class: "kb-item",
            "aria-current": b.name === state.selected ? "true" : null,
            title: b.description || b.name,
            onclick: () => selectBase(b.name),
          },
          h("span", { class: "kb-item-name" }, b.name),
          h("span", { class: "kb-item-facts", "data-testid": "kb-item-facts" }, `${plural(b.documents, "doc")} · ${plural(b.chunks, "chunk")}`),
        ),
      ),
    ),
  );
}

function currentBase() {
  return state.bases.find((b) => b.name === state.selected) || null;
}

function selectBase(name, { updateUrl = true } = {}) {
  const changed = name !== state.selected;
  state.selected = name;
  if (updateUrl) history.replaceState(null, "", TABS.knowledge.path + (name ? `#${enc(name)}` : ""));
  renderBases();
  el.none.hidden = !!name;
  el.selected.hidden = !name;
  if (!name) return;
  if (changed) {
    state.documents = [];
    renderDocuments();
    el.hits.replaceChildren();
    el.searchStatus.textContent = "";
  }
  renderHeader();
  renderJob();
  loadDocuments();
}

function renderHeader() {
  const b = currentBase();
  if (!b) return;
  el.title.textContent = b.name;
  el.desc.textContent = b.description || "";
  el.desc.hidden = !b.description;
  el.facts.replaceChildren(
    h("span", { class: "tag", title: "Embedding model" }, b.embedder),
    h("span", {}, `${plural(b.documents, "document")} · ${plural(b.chunks, "chunk")}`),
    h("span", { class: "muted" }, `chunks of ${fmtInt(b.chunk_size)} chars, ${fmtInt(b.chunk_overlap)} overlap`),
  );
}

async function createBase(e) {
  e.preventDefault();
  if (!el.createForm.reportValidity()) return;
  const body = { name: el.name.value.trim(), description: el.description.value.trim() };
  if (el.embedder.value) body.embedder = el.embedder.value;
  if (el.chunkSize.value) body.chunk_size = Number(el.chunkSize.value);
  if (el.chunkOverlap.value) body.chunk_overlap = Number(el.chunkOverlap.value);
  el.createButton.disabled = true;
  try {
    const created = await api("/api/knowledge", { method: "POST", body });
    el.createForm.reset();
    await loadBases();
    selectBase(created.name);
    toast(`Created knowledge base ${created.name}`, "ok");
  } catch (err) {
    toast(`Could not create the knowledge base: ${err.message}`);
  } finally {
    el.createButton.disabled = false;
  }
}

async function deleteBase() {
  const b = currentBase();
  if (!b) return;
  const docs = b.documents ? ` and its ${plural(b.documents, "document")}` : "";
  let users = [];
  try {
    const body = await api("/api/personas");
    users = ((body && body.data) || []).filter((p) => (p.knowledge || []).includes(b.name)).map((p) => p.name);
  } catch {
    /* the warning is a courtesy: deleting works without it */
  }
  const warn = users.length ? `\n\nPersonas still using it: ${users.join(", ")}. Edit them afterwards to remove it.` : "";
  if (!window.confirm(`Delete the knowledge base “${b.name}”${docs}? This cannot be undone.${warn}`)) return;
  try {
    await api(basePath(b.name), { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) {
      toast(`Could not delete ${b.name}: ${err.message}`);
      return;
    }
  }
  state.jobs.delete(b.name);
  selectBase(null);
  await loadBases();
}

/* ------------------------------------------------------------------ */
/* Documents                                                            */
/* ------------------------------------------------------------------ */

async function loadDocuments() {
  const name = state.selected;
  if (!name) return;
  let body;
  try {
    body = await api(`${basePath(name)}/documents`);
  } catch (err) {
    if (name === state.selected) toast(`Could not load documents: ${err.message}`);
    return;
  }
  if (name !== state.selected) return; // another base was opened meanwhile
  state.documents = (body && body.data) || [];
  renderDocuments();
}

function renderDocuments() {
  const docs = state.documents;
  el.docCount.textContent = docs.length ? plural(docs.length, "document") : "";
  el.docEmpty.hidden = docs.length > 0;
  el.docTable.hidden = !docs.length;
  el.docTable.tBodies[0].replaceChildren(
    ...docs.map((d) =>
      h(
        "tr",
        { "data-testid": "doc-row", "data-source": d.source },
        h(
          "td",
          { class: "doc-source" },
          h("span", { class: "doc-name", "data-testid": "doc-source", title: d.source }, d.source),
          d.title && d.title !== d.source ? h("span", { class: "doc-title muted small", title: d.title }, d.title) : null,
        ),
        h("td", {}, h("span", { class: "tag" }, d.format || "–")),
        h("td", { class: "num" }, fmtInt(d.chunks)),
        h("td", { class: "num" }, fmtBytes(d.bytes)),
        h("td", { class: "nowrap", title: parseTime(d.updated_at)?.toLocaleString() || "" }, fmtDate(d.updated_at)),
        h(
          "td",
          { class: "num" },
          h(
            "button",
            { type: "button", class: "btn btn-ghost btn-small btn-remove", "data-testid": "doc-remove", "aria-label": `Remove ${d.source}`, onclick: () => removeDocument(d.source) },
            "Remove",
          ),
        ),
      ),
    ),
  );
}

async function removeDocument(source) {
  const name = state.selected;
  if (!name || !window.confirm(`Remove “${source}” from ${name}?`)) return;
  // the source is a path: keep its slashes, escape everything else
  const path = source.split("/").map(enc).join("/");
  try {
    await api(`${basePath(name)}/documents/${path}`, { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) {
      toast(`Could not remove ${source}: ${err.message}`);
      return;
    }
  }
  await Promise.all([loadDocuments(), loadBases()]);
}

/* ------------------------------------------------------------------ */
/* Upload and ingestion progress                                        */
/* ------------------------------------------------------------------ */

async function upload(fileList) {
  const files = [...(fileList || [])];
  const name = state.selected;
  if (!files.length || !name) return;
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  setJob(name, { status: "uploading", files_total: files.length, files_done: 0, chunks_done: 0, current: "" });
  let job;
  try {
    job = await api(`${basePath(name)}/documents`, { method: "POST", body: form });
  } catch (err) {
    setJob(name, { status: "failed", files_total: files.length, files_done: 0, chunks_done: 0, error: err.message });
    toast(`Upload failed: ${err.message}`);
    return;
  }
  setJob(name, job);
  while (job.status === "queued" || job.status === "running") {
    await sleep(JOB_POLL_MS);
    try {
      job = await api(`/api/knowledge-jobs/${enc(job.id)}`);
    } catch (err) {
      job = { ...job, status: "failed", error: `Lost track of the upload: ${err.message}` };
    }
    setJob(name, job);
  }
  if (job.status === "failed") toast(`Ingestion failed: ${job.error || "unknown error"}`);
  else if (job.report && job.report.failed && job.report.failed.length) toast(`${plural(job.report.failed.length, "file")} could not be added`);
  await loadBases();
  if (name === state.selected) await loadDocuments();
}

function setJob(name, job) {
  state.jobs.set(name, job);
  if (name === state.selected) renderJob();
}

const JOB_STATUS = { uploading: "Uploading…", queued: "Queued", running: "Ingesting…", done: "Done", failed: "Failed" };

function renderJob() {
  const job = state.jobs.get(state.selected);
  el.job.hidden = !job;
  if (!job) return;
  const finished = job.status === "done" || job.status === "failed";
  el.job.dataset.status = job.status;
  el.jobStatus.textContent = JOB_STATUS[job.status] || job.status;
  el.jobCounts.textContent = `${fmtInt(job.files_done)} / ${plural(job.files_total, "file")} · ${plural(job.chunks_done, "chunk")}`;
  if (job.status === "uploading" || job.status === "queued") el.jobProgress.removeAttribute("value"); // indeterminate
  else el.jobProgress.value = job.files_total ? (finished ? 1 : job.files_done / job.files_total) : 1;
  el.jobCurrent.textContent = !finished && job.current ? `Reading ${job.current}` : "";
  el.jobCurrent.hidden = !el.jobCurrent.textContent;

  const r = job.report;
  el.jobReport.replaceChildren();
  if (job.error) el.jobReport.append(h("span", { class: "job-error" }, job.error));
  else if (r) {
    const part = (list, word) => h("span", { title: list.join("\n") || null }, `${word} ${fmtInt(list.length)}`);
    el.jobReport.append(
      part(r.added || [], "Added"),
      " · ",
      part(r.updated || [], "updated"),
      " · ",
      part(r.unchanged || [], "unchanged"),
      ` · ${plural(r.chunks || 0, "chunk")} in ${Number(r.seconds || 0).toFixed(1)} s`,
      r.chunks_per_second ? ` (${Number(r.chunks_per_second).toFixed(0)} chunks/s)` : "",
    );
  }
  el.jobReport.hidden = !el.jobReport.childNodes.length;
  const failed = (r && r.failed) || [];
  el.jobFailed.hidden = !failed.length;
  el.jobFailed.replaceChildren(
    ...failed.map((f) => h("li", { "data-testid": "job-failed-file" }, h("strong", {}, f.source), h("span", { class: "muted" }, ` — ${f.reason}`))),
  );
}

function bindDropzone() {
  const zone = el.dropzone;
  const over = (e) => {
    if (!e.dataTransfer || ![...e.dataTransfer.types].includes("Files")) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
    zone.classList.add("dragover");
  };
  zone.addEventListener("dragenter", over);
  zone.addEventListener("dragover", over);
  zone.addEventListener("dragleave", (e) => {
    if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragover");
  });
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dragover");
    upload(e.dataTransfer && e.dataTransfer.files);
  });
  // a file dropped beside the zone must not make the browser navigate away to it
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  el.files.addEventListener("change", () => {
    upload(el.files.files);
    el.files.value = ""; // choosing the same file again still fires change
  });
}

/* ------------------------------------------------------------------ */
/* Search                                                               */
/* ------------------------------------------------------------------ */

async function search(e) {
  e.preventDefault();
  const name = state.selected;
  const query = el.query.value.trim();
  if (!name || !query) return;
  const token = ++state.searchToken;
  el.searchButton.disabled = true;
  el.searchStatus.textContent = "Searching…";
  let body;
  try {
    body = await api(`${basePath(name)}/search`, { method: "POST", body: { query, k: Number(el.k.value), mode: el.mode.value } });
  } catch (err) {
    if (token === state.searchToken) el.searchStatus.textContent = "";
    toast(`Search failed: ${err.message}`);
    return;
  } finally {
    if (token === state.searchToken) el.searchButton.disabled = false;
  }
  if (token !== state.searchToken || name !== state.selected) return;
  const hits = (body && body.data) || [];
  el.searchStatus.textContent = hits.length ? plural(hits.length, "passage") : "Nothing found.";
  el.hits.replaceChildren(...hits.map((hit, i) => hitView(hit, i + 1, query)));
}

function hitView(hit, rank, query) {
  const ranks = [
    hit.bm25_rank != null ? `BM25 #${hit.bm25_rank}` : null,
    hit.dense_rank != null ? `dense #${hit.dense_rank}` : null,
  ].filter(Boolean);
  const where = [hit.location, hit.heading && !(hit.location || "").includes(hit.heading) ? hit.heading : null].filter(Boolean);
  return h(
    "li",
    { class: "hit", "data-testid": "kb-hit", "data-source": hit.source },
    h(
      "div",
      { class: "hit-head" },
      h("span", { class: "source-num", "aria-hidden": "true" }, String(rank)),
      h("strong", { class: "hit-source", "data-testid": "hit-source" }, hit.source),
      where.length ? h("span", { class: "muted small" }, where.join(" · ")) : null,
    ),
    h(
      "div",
      { class: "hit-metrics small" },
      h("span", { title: "Fused ranking score" }, `score ${fmtScore(hit.score, 4)}`),
      h("span", { title: "Cosine similarity of the question and the passage" }, `similarity ${fmtScore(hit.similarity, 3)}`),
      ranks.length ? h("span", { class: "muted" }, ranks.join(" · ")) : null,
    ),
    h("p", { class: "hit-text", "data-testid": "hit-text" }, ...highlighted(hit.text || "", query)),
  );
}

/* ------------------------------------------------------------------ */
/* Embedders for the Advanced section of the create form                */
/* ------------------------------------------------------------------ */

async function loadEmbedders() {
  try {
    const body = await api("/v1/models");
    const embedders = ((body && body.data) || []).filter((m) => m.baimo && m.baimo.kind === "embedding");
    el.embedder.replaceChildren(h("option", { value: "" }, "Server default"), ...embedders.map((m) => h("option", { value: m.id }, m.id)));
  } catch {
    /* the default embedder still works; the bases list reports real failures */
  }
}

/* ------------------------------------------------------------------ */
/* Wiring                                                               */
/* ------------------------------------------------------------------ */

function bind() {
  for (const tab of el.tabs) {
    tab.addEventListener("click", () => showTab(tab.dataset.tab, { push: tab.getAttribute("aria-selected") !== "true" }));
    tab.addEventListener("keydown", (e) => {
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight") return;
      const i = el.tabs.indexOf(tab);
      const next = el.tabs[(i + (e.key === "ArrowRight" ? 1 : el.tabs.length - 1)) % el.tabs.length];
      next.focus();
      next.click();
    });
  }
  window.addEventListener("popstate", () => {
    const tab = tabFromPath();
    showTab(tab);
    if (tab === "knowledge") selectBaseFromHash();
  });
  el.createForm.addEventListener("submit", createBase);
  el.deleteBase.addEventListener("click", deleteBase);
  el.searchForm.addEventListener("submit", search);
  bindDropzone();
}

function selectBaseFromHash() {
  const name = location.hash.length > 1 ? decodeURIComponent(location.hash.slice(1)) : null;
  if (name && state.bases.some((b) => b.name === name)) selectBase(name, { updateUrl: false });
  else if (!state.selected && state.bases.length) selectBase(state.bases[0].name, { updateUrl: tabFromPath() === "knowledge" });
}

async function main() {
  personas = mountPersonas({ api, toast });
  bind();
  const tab = tabFromPath();
  showTab(tab);
  loadEmbedders();
  await loadBases();
  selectBaseFromHash();
  if (tab === "personas") await personas.loaded();
  document.body.dataset.ready = "true";
}

main();
