// Baimo web chat. Plain ES module, no build step.
// Globals from /static/vendor: marked (Markdown parser) and DOMPurify (HTML sanitiser).

import { linkCitations, passageViewer, sourcesList } from "/static/citations.js";
import { describeRoute, describeSaving } from "/static/route.js";
import { KEY_STORAGE, apiClient, debounce, h, keyDialog, storageGet, storageSet, toast as showToast } from "/static/client.js";

const PAGE_SIZE = 50;
const RENDER_INTERVAL_MS = 50;
const SEARCH_DEBOUNCE_MS = 250;
const MODEL_STORAGE = "baimo.model";

const $ = (id) => document.getElementById(id);

const el = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  menuButton: $("menu-button"),
  newChat: $("new-chat"),
  search: $("search"),
  convList: $("conv-list"),
  convItems: $("conv-items"),
  convStatus: $("conv-status"),
  apiKeyButton: $("api-key-button"),
  title: $("conv-title"),
  exportBox: $("export"),
  modelPicker: $("model-picker"),
  thread: $("thread"),
  empty: $("empty"),
  messages: $("messages"),
  form: $("composer-form"),
  composer: $("composer"),
  send: $("send"),
  stop: $("stop"),
  passageDialog: $("passage-dialog"),
  toasts: $("toasts"),
};

const state = {
  models: [],
  currentId: null,
  current: null, // the open conversation (without messages)
  messages: [], // messages of the open conversation
  list: {
    items: new Map(), // id -> conversation summary
    cursor: null,
    done: false,
    loading: false,
    query: "",
    generation: 0, // bumps when the list is reset, so stale pages are dropped
  },
  stream: null, // {convId, controller, view}
  loadToken: 0, // bumps on every conversation switch
};

// the dialog that shows a cited knowledge passage (the Sources list and [n] markers open it)
const openPassage = passageViewer(el.passageDialog);

/* ------------------------------------------------------------------ */
/* Utilities                                                            */
/* ------------------------------------------------------------------ */

function svgIcon(path) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.innerHTML = path;
  return svg;
}

const ICONS = {
  pencil: '<path d="M4 20h4L19 9l-4-4L4 16v4z"/><path d="m13.5 6.5 4 4"/>',
  trash: '<path d="M4 7h16M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3"/>',
  refresh: '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
  thumbUp: '<path d="M7 10v11H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3z"/><path d="M7 10l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 18.2 21H7"/>',
  thumbDown: '<path d="M17 14V3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3z"/><path d="M17 14l-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.3-8A2 2 0 0 1 5.8 3H17"/>',
  chart: '<path d="M4 20V10M10 20V4M16 20v-7M21 20H3"/>',
  copy: '<rect x="9" y="9" width="11" height="11" rx="2"/><path d="M5 15V5a1 1 0 0 1 1-1h10"/>',
};

function toast(message, kind = "error") {
  showToast(el.toasts, message, kind);
}

function formatNumber(n) {
  return Number(n).toLocaleString("en-US");
}

function formatMs(ms) {
  const v = Number(ms);
  return `${formatNumber(Math.round(v))} ms`;
}

// withCost: false when the saving line already shows the cost
function metaText(m, withCost = true) {
  const parts = [];
  if (m.model) parts.push(m.model);
  if (m.tokens_in != null || m.tokens_out != null) {
    parts.push(`${m.tokens_in ?? "–"} in / ${m.tokens_out ?? "–"} out tokens`);
  }
  if (m.latency_ms != null) parts.push(formatMs(m.latency_ms));
  if (m.ttft_ms != null) parts.push(`TTFT ${formatMs(m.ttft_ms)}`);
  if (withCost && m.cost != null) parts.push(`$${Number(m.cost).toFixed(6)}`);
  return parts.join(" · ");
}

// Which model served an answer and why: "[model] Routed by baimo/auto: easy prompt, …"; the raw route
// string is the tooltip and opens below on click.
function routeLine(m) {
  if (!m.route && !m.model) return null;
  const routers = state.models.filter((x) => kindOf(x) === "router");
  const r = describeRoute(m.route, { routers, model: m.model });
  const served = m.model || r.model;
  const summary = h(
    "summary",
    {},
    served ? h("span", { class: "route-model", "data-testid": "message-model" }, served) : null,
    r.text ? h("span", { class: "route-why" }, r.text) : null,
  );
  const kind = [r.fallback ? "route-fallback" : r.routed ? "route-routed" : "route-direct", r.private ? "route-private" : null].filter(Boolean).join(" ");
  const line = h("details", { class: `message-route ${kind}`, "data-testid": "message-route", title: m.route ? `Route: ${m.route}` : null }, summary);
  if (m.route) line.append(h("code", { class: "route-raw" }, m.route));
  return line;
}

// What the answer cost against the strongest model its router could have used (routed answers only).
function savingBadge(m) {
  const s = describeSaving(m);
  if (!s) return null;
  const kind = s.change < 0 ? "saving-less" : s.change > 0 ? "saving-more" : "saving-same";
  const tip = `What the same tokens would have cost on the strongest model the router could have used${m.baseline_model ? `, ${m.baseline_model}` : ""}`;
  return h("span", { class: `message-saving ${kind}`, "data-testid": "message-saving", "data-change": s.change.toFixed(4), title: tip }, s.text);
}

/* ------------------------------------------------------------------ */
/* Markdown                                                             */
/* ------------------------------------------------------------------ */

let markdownReady = false;

function setupMarkdown() {
  if (markdownReady) return;
  if (window.marked && window.marked.setOptions) {
    window.marked.setOptions({ gfm: true, breaks: false });
  }
  if (window.DOMPurify && window.DOMPurify.addHook) {
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A" && node.getAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
  }
  markdownReady = true;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function renderMarkdown(text) {
  setupMarkdown();
  let html;
  try {
    html = window.marked ? window.marked.parse(text || "", { async: false }) : `<p>${escapeHtml(text || "")}</p>`;
  } catch {
    html = `<pre>${escapeHtml(text || "")}</pre>`;
  }
  if (window.DOMPurify) return window.DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
  return escapeHtml(text || "");
}

function addCopyButtons(container) {
  for (const pre of container.querySelectorAll("pre")) {
    if (pre.parentElement && pre.parentElement.classList.contains("code-block")) continue;
    const wrap = h("div", { class: "code-block" });
    const code = pre.querySelector("code");
    const lang = code && [...code.classList].find((c) => c.startsWith("language-"));
    const bar = h("div", { class: "code-bar" }, h("span", { class: "code-lang" }, lang ? lang.slice(9) : "code"));
    const copy = h("button", { type: "button", class: "code-copy", title: "Copy code" }, svgIcon(ICONS.copy), h("span", {}, "Copy"));
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText((code || pre).textContent);
        copy.lastChild.textContent = "Copied";
      } catch {
        copy.lastChild.textContent = "Failed";
      }
      setTimeout(() => (copy.lastChild.textContent = "Copy"), 1500);
    });
    bar.append(copy);
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */
/* ------------------------------------------------------------------ */

const askForKey = keyDialog();
const { request, api } = apiClient(askForKey);

/* ------------------------------------------------------------------ */
/* Models                                                               */
/* ------------------------------------------------------------------ */

async function loadModels() {
  try {
    const body = await api("/v1/models");
    // Embedding models are listed by /v1/models too, but they cannot chat.
    state.models = ((body && body.data) || []).filter((m) => kindOf(m) !== "embedding");
  } catch (err) {
    el.modelPicker.replaceChildren(h("option", { value: "" }, "Models unavailable"));
    toast(`Could not load models: ${err.message}`);
    return;
  }
  const saved = storageGet(MODEL_STORAGE);
  const ids = state.models.map((m) => m.id);
  const def = state.models.find((m) => m.baimo && m.baimo.default) || state.models.find((m) => kindOf(m) !== "persona") || state.models[0];
  const selected = saved && ids.includes(saved) ? saved : def ? def.id : "";
  // Personas first (they are what most people pick), then routers, then plain models.
  const groups = [
    { label: "Personas", testid: "persona-group", items: state.models.filter((m) => kindOf(m) === "persona") },
    { label: "Routers", testid: "router-group", items: state.models.filter((m) => kindOf(m) === "router") },
    { label: "Models", testid: "model-group", items: state.models.filter((m) => !["persona", "router"].includes(kindOf(m))) },
  ].filter((g) => g.items.length);
  if (groups.length > 1) {
    el.modelPicker.replaceChildren(...groups.map((g) => h("optgroup", { label: g.label, "data-testid": g.testid }, ...g.items.map(modelOption))));
  } else {
    el.modelPicker.replaceChildren(...state.models.map(modelOption));
  }
  if (!state.models.length) el.modelPicker.append(h("option", { value: "" }, "No models"));
  el.modelPicker.value = selected;
  updateComposer();
}

function kindOf(m) {
  return (m && m.baimo && m.baimo.kind) || "model";
}

function modelOption(m) {
  const info = m.baimo || {};
  const kind = kindOf(m);
  let tip;
  let label = m.id;
  if (kind === "persona") {
    label = m.id.replace(/^persona\//, "");
    const kb = info.knowledge && info.knowledge.length ? `knowledge: ${info.knowledge.join(", ")}` : null;
    tip = [info.description, info.model ? `on ${info.model}` : null, kb, info.grounded ? "answers only from its knowledge" : null];
  } else if (kind === "router") {
    tip = [info.description, info.strategy ? `${info.strategy} router` : "router", info.candidates && info.candidates.length ? `over ${info.candidates.join(", ")}` : null];
  } else {
    tip = [info.description, info.context_window ? `context ${formatNumber(info.context_window)} tokens` : null];
  }
  return h("option", { value: m.id, title: tip.filter(Boolean).join(" · ") || null }, label + (info.default ? " (default)" : ""));
}

function currentModel() {
  return el.modelPicker.value || undefined;
}

/* ------------------------------------------------------------------ */
/* Sidebar                                                              */
/* ------------------------------------------------------------------ */

function convItem(conv) {
  const li = h("li", {
    class: "conv-item",
    "data-testid": "conversation-item",
    "data-id": conv.id,
    title: conv.title || "Untitled",
  });
  const link = h("a", { class: "conv-link", href: `#/c/${encodeURIComponent(conv.id)}` });
  link.append(h("span", { class: "conv-name", "data-testid": "conversation-title-text" }, conv.title || "Untitled"));
  const actions = h(
    "div",
    { class: "conv-actions" },
    h("button", { type: "button", class: "icon-btn", "data-testid": "rename", "aria-label": "Rename", title: "Rename" }, svgIcon(ICONS.pencil)),
    h("button", { type: "button", class: "icon-btn danger", "data-testid": "delete", "aria-label": "Delete", title: "Delete" }, svgIcon(ICONS.trash)),
  );
  li.append(link, actions);
  if (conv.id === state.currentId) li.classList.add("active");
  return li;
}

function findItem(id) {
  return el.convItems.querySelector(`.conv-item[data-id="${CSS.escape(id)}"]`);
}

function setListStatus() {
  const L = state.list;
  let text = "";
  if (L.loading) text = "Loading…";
  else if (!el.convItems.children.length) text = L.query ? "No matching conversations" : "No conversations yet";
  el.convStatus.textContent = text;
}

function resetList(query) {
  const L = state.list;
  L.items.clear();
  L.cursor = null;
  L.done = false;
  L.loading = false;
  L.query = query;
  L.generation++;
  el.convItems.replaceChildren();
  el.convList.scrollTop = 0;
  return loadMoreConversations();
}

async function loadMoreConversations() {
  const L = state.list;
  if (L.loading || L.done) return;
  L.loading = true;
  const gen = L.generation;
  setListStatus();
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (L.cursor) params.set("cursor", L.cursor);
  if (L.query) params.set("q", L.query);
  let body;
  try {
    body = await api(`/api/conversations?${params}`);
  } catch (err) {
    if (gen === L.generation) {
      L.loading = false;
      setListStatus();
      el.convStatus.textContent = `Could not load conversations: ${err.message}`;
    }
    return;
  }
  if (gen !== L.generation) return; // the list was reset meanwhile
  L.loading = false;
  const frag = document.createDocumentFragment();
  for (const conv of (body && body.data) || []) {
    if (L.items.has(conv.id)) continue;
    L.items.set(conv.id, conv);
    frag.append(convItem(conv));
  }
  el.convItems.append(frag);
  L.cursor = (body && body.next_cursor) || null;
  L.done = !L.cursor;
  setListStatus();
  // keep filling while the list does not overflow yet
  maybeLoadMore();
}

function maybeLoadMore() {
  const L = state.list;
  if (L.loading || L.done) return;
  const c = el.convList;
  if (c.scrollHeight - c.scrollTop - c.clientHeight < 300) loadMoreConversations();
}

function upsertConversation(conv, { moveToTop = false } = {}) {
  const L = state.list;
  const existing = findItem(conv.id);
  const merged = { ...(L.items.get(conv.id) || {}), ...conv };
  if (existing) {
    L.items.set(conv.id, merged);
    const fresh = convItem(merged);
    existing.replaceWith(fresh);
    if (moveToTop && !L.query) el.convItems.prepend(fresh);
  } else if (!L.query) {
    L.items.set(conv.id, merged);
    el.convItems.prepend(convItem(merged));
  }
  setListStatus();
}

function removeConversationItem(id) {
  state.list.items.delete(id);
  const item = findItem(id);
  if (item) item.remove();
  setListStatus();
}

function markActive() {
  for (const node of el.convItems.querySelectorAll(".conv-item.active")) node.classList.remove("active");
  if (state.currentId) {
    const item = findItem(state.currentId);
    if (item) item.classList.add("active");
  }
}

function startRename(item) {
  const id = item.dataset.id;
  if (item.querySelector(".rename-input")) return;
  const conv = state.list.items.get(id) || {};
  const link = item.querySelector(".conv-link");
  const input = h("input", {
    class: "rename-input",
    "data-testid": "rename-input",
    value: conv.title || "",
    "aria-label": "New title",
    maxlength: "200",
  });
  link.hidden = true;
  item.classList.add("editing");
  item.prepend(input);
  input.focus();
  input.select();
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    const title = input.value.trim();
    input.remove();
    link.hidden = false;
    item.classList.remove("editing");
    if (!save || !title || title === conv.title) return;
    try {
      const updated = await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "PATCH", body: { title } });
      upsertConversation(updated || { id, title });
      if (state.currentId === id) setTitle(updated ? updated.title : title);
    } catch (err) {
      toast(`Rename failed: ${err.message}`);
    }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      finish(true);
    } else if (e.key === "Escape") {
      e.preventDefault();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
}

async function deleteConversation(id) {
  const conv = state.list.items.get(id);
  const name = conv && conv.title ? `“${conv.title}”` : "this conversation";
  if (!window.confirm(`Delete ${name}? This cannot be undone.`)) return;
  try {
    await api(`/api/conversations/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (err) {
    if (err.status !== 404) {
      toast(`Delete failed: ${err.message}`);
      return;
    }
  }
  removeConversationItem(id);
  if (state.stream && state.stream.convId === id) state.stream.controller.abort();
  if (state.currentId === id) navigate(null);
}

/* ------------------------------------------------------------------ */
/* Conversation view                                                    */
/* ------------------------------------------------------------------ */

function setTitle(title) {
  el.title.textContent = title || "New chat";
  document.title = title ? `${title} · Baimo` : "Baimo";
}

function updateEmpty() {
  el.empty.hidden = el.messages.children.length > 0;
}

function navigate(id) {
  const hash = id ? `#/c/${encodeURIComponent(id)}` : "#/";
  if (location.hash !== hash) location.hash = hash;
  else route();
}

function idFromHash() {
  const m = location.hash.match(/^#\/c\/(.+)$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function route() {
  const id = idFromHash();
  closeSidebar();
  if (id === state.currentId && (id === null || state.current)) return;
  await openConversation(id);
}

async function openConversation(id) {
  const token = ++state.loadToken;
  state.currentId = id;
  state.current = null;
  state.messages = [];
  el.messages.replaceChildren();
  markActive();
  el.exportBox.hidden = !id;
  if (!id) {
    setTitle(null);
    updateEmpty();
    updateComposer();
    el.composer.focus();
    return;
  }
  el.empty.hidden = true;
  setTitle(state.list.items.get(id)?.title || "");
  let conv;
  try {
    conv = await api(`/api/conversations/${encodeURIComponent(id)}`);
  } catch (err) {
    if (token !== state.loadToken) return;
    toast(err.status === 404 ? "Conversation not found" : `Could not open conversation: ${err.message}`);
    history.replaceState(null, "", "#/");
    await openConversation(null);
    return;
  }
  if (token !== state.loadToken) return;
  showConversation(conv);
}

function showConversation(conv) {
  const { messages = [], ...summary } = conv;
  state.current = summary;
  state.messages = messages;
  setTitle(summary.title);
  el.messages.replaceChildren(...messages.map((m) => messageView(m).root));
  // a stream of this conversation still running in the background: show it live again
  if (state.stream && state.stream.convId === conv.id && state.stream.view) {
    el.messages.append(state.stream.view.root);
  }
  updateEmpty();
  updateRegenerate();
  updateComposer();
  scrollToBottom(true);
}

// Builds the DOM of one message; returns helpers to update it while streaming.
function messageView(m) {
  const role = m.role || "assistant";
  const root = h("article", {
    class: `message message-${role}`,
    "data-testid": "message",
    "data-role": role,
    "data-id": m.id || null,
    "data-status": m.status || null,
  });
  const body = h("div", { class: "message-body" });
  const content = h("div", { class: "message-content", "data-testid": "message-content" });
  body.append(content);
  if (role === "assistant") {
    root.append(h("div", { class: "avatar", "aria-hidden": "true" }, "B"));
  }
  root.append(body);

  const view = {
    root,
    content,
    text: m.content || "",
    citations: null, // knowledge passages the answer was given (set when it is finished)
    setText(text) {
      view.text = text;
      if (role === "user") {
        content.textContent = text;
      } else {
        content.innerHTML = renderMarkdown(text);
        addCopyButtons(content);
        linkCitations(content, view.citations, openPassage);
      }
    },
    finish(msg) {
      root.classList.remove("streaming");
      if (msg.id) root.dataset.id = msg.id;
      if (msg.status) root.dataset.status = msg.status;
      if (typeof msg.content === "string") view.text = msg.content;
      if (msg.citations !== undefined) view.citations = msg.citations && msg.citations.length ? msg.citations : null;
      view.setText(view.text);
      view.setFooter(msg);
    },
    setFooter(msg) {
      for (const n of body.querySelectorAll(".message-footer, .message-why, .message-error, .sources")) n.remove();
      if (role !== "assistant") return;
      if (view.citations) body.append(sourcesList(view.citations, openPassage));
      if (msg.status === "error" && msg.error) {
        body.append(h("div", { class: "message-error", role: "alert" }, msg.error));
      }
      const footer = h("div", { class: "message-footer" });
      if (msg.status === "stopped") footer.append(h("span", { class: "badge badge-stopped", "data-testid": "message-status" }, "Stopped"));
      if (msg.status === "error") footer.append(h("span", { class: "badge badge-error", "data-testid": "message-status" }, "Error"));
      // which model, why, and what it cost against the strongest model, on one line above the meta line
      const route = routeLine(msg);
      const saving = savingBadge(msg);
      if (route || saving) body.append(h("div", { class: "message-why" }, route, saving));
      const meta = metaText(msg, !saving);
      if (meta) {
        const tip = msg.route ? `Route: ${msg.route}` : null;
        footer.append(h("span", { class: "message-meta", "data-testid": "message-meta", title: tip, "data-route": msg.route || null }, meta));
      }
      if (msg.response_id) {
        root.dataset.responseId = msg.response_id;
        footer.append(feedbackButtons(msg.response_id));
      }
      footer.append(h("span", { class: "footer-spacer" }));
      footer.append(
        h(
          "button",
          { type: "button", class: "icon-btn regen", "data-testid": "regenerate", title: "Regenerate", "aria-label": "Regenerate", hidden: true },
          svgIcon(ICONS.refresh),
          h("span", {}, "Regenerate"),
        ),
      );
      body.append(footer);
    },
  };
  view.setText(view.text);
  if (role === "assistant" && m.status) view.finish(m);
  return view;
}

/* ------------------------------------------------------------------ */
/* Feedback (thumbs up / down)                                          */
/* ------------------------------------------------------------------ */

const FEEDBACK_STORAGE = "baimo.feedback";
const FEEDBACK_KEEP = 1000; // votes remembered in this browser (oldest dropped first)

function loadVotes() {
  try {
    const v = JSON.parse(storageGet(FEEDBACK_STORAGE) || "{}");
    return v && typeof v === "object" && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

function savedVote(responseId) {
  const v = loadVotes()[responseId];
  return v === "up" || v === "down" ? v : null;
}

function saveVote(responseId, rating) {
  const votes = loadVotes();
  delete votes[responseId]; // re-insert so it counts as the newest
  if (rating) votes[responseId] = rating;
  const keys = Object.keys(votes);
  for (const k of keys.slice(0, Math.max(0, keys.length - FEEDBACK_KEEP))) delete votes[k];
  storageSet(FEEDBACK_STORAGE, keys.length ? JSON.stringify(votes) : null);
}

function feedbackButtons(responseId) {
  const vote = savedVote(responseId);
  const button = (rating, label, icon) =>
    h(
      "button",
      {
        type: "button",
        class: `icon-btn vote vote-${rating}`,
        "data-testid": `thumbs-${rating}`,
        "data-rating": rating,
        title: label,
        "aria-label": label,
        "aria-pressed": vote === rating ? "true" : "false",
      },
      svgIcon(icon),
    );
  return h(
    "span",
    { class: "votes", role: "group", "aria-label": "Rate this answer", "data-response-id": responseId },
    button("up", "Good answer", ICONS.thumbUp),
    button("down", "Bad answer", ICONS.thumbDown),
  );
}

function showVote(group, rating) {
  for (const b of group.querySelectorAll("[data-rating]")) b.setAttribute("aria-pressed", b.dataset.rating === rating ? "true" : "false");
}

async function sendFeedback(button) {
  const group = button.closest(".votes");
  const responseId = group && group.dataset.responseId;
  const rating = button.dataset.rating;
  if (!responseId || group.classList.contains("busy")) return;
  const before = savedVote(responseId);
  if (before === rating) return; // already recorded
  showVote(group, rating); // optimistic; undone on error
  group.classList.add("busy");
  try {
    await api("/api/feedback", { method: "POST", body: { response_id: responseId, rating } });
    saveVote(responseId, rating);
  } catch (err) {
    if (group.isConnected) showVote(group, before);
    toast(`Could not send feedback: ${err.message}`);
  } finally {
    group.classList.remove("busy");
  }
}

// Only the last assistant message of the open conversation offers Regenerate, and not while streaming.
function updateRegenerate() {
  const streamingHere = state.stream && state.stream.convId === state.currentId;
  const buttons = el.messages.querySelectorAll("[data-testid=regenerate]");
  const last = el.messages.lastElementChild;
  for (const b of buttons) {
    const msg = b.closest(".message");
    b.hidden = streamingHere || msg !== last || msg.dataset.role !== "assistant";
  }
}

function nearBottom() {
  const t = el.thread;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 120;
}

function scrollToBottom(force = false) {
  if (force || nearBottom()) el.thread.scrollTop = el.thread.scrollHeight;
}

/* ------------------------------------------------------------------ */
/* Composer & streaming                                                 */
/* ------------------------------------------------------------------ */

function updateComposer() {
  const streamingHere = !!(state.stream && state.stream.convId === state.currentId);
  const busy = !!state.stream;
  el.stop.hidden = !streamingHere;
  el.send.hidden = streamingHere;
  el.send.disabled = busy || !el.composer.value.trim() || !currentModel();
  el.app.classList.toggle("is-streaming", streamingHere);
}

function autoGrow() {
  el.composer.style.height = "auto";
  el.composer.style.height = `${Math.min(el.composer.scrollHeight, 240)}px`;
}

async function sendMessage() {
  const text = el.composer.value.trim();
  if (!text || state.stream) return;
  const model = currentModel();
  if (!model) {
    toast("Pick a model first");
    return;
  }
  el.composer.value = "";
  autoGrow();
  updateComposer();

  let convId = state.currentId;
  if (!convId) {
    let conv;
    try {
      conv = await api("/api/conversations", { method: "POST", body: { model } });
    } catch (err) {
      toast(`Could not create a conversation: ${err.message}`);
      el.composer.value = text;
      autoGrow();
      updateComposer();
      return;
    }
    convId = conv.id;
    // open the new (empty) conversation without a round trip
    state.loadToken++;
    state.currentId = convId;
    state.current = conv;
    state.messages = [];
    upsertConversation(conv, { moveToTop: true });
    markActive();
    setTitle(conv.title);
    el.exportBox.hidden = false;
    history.replaceState(null, "", `#/c/${encodeURIComponent(convId)}`);
  }

  const userView = messageView({ role: "user", content: text });
  el.messages.append(userView.root);
  updateEmpty();
  scrollToBottom(true);
  await runStream(convId, `/api/conversations/${encodeURIComponent(convId)}/messages`, { content: text, model }, {
    userView,
    restoreText: text,
  });
}

async function regenerate() {
  if (state.stream || !state.currentId) return;
  const model = currentModel();
  if (!model) {
    toast("Pick a model first");
    return;
  }
  const last = el.messages.lastElementChild;
  let removed = null;
  if (last && last.dataset.role === "assistant") {
    removed = last;
    last.remove();
  }
  const convId = state.currentId;
  await runStream(convId, `/api/conversations/${encodeURIComponent(convId)}/regenerate`, { model }, { removed });
}

// Parses a text/event-stream body, calling onData(dataString) for every event.
async function readEventStream(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let dataLines = [];
  const flushLine = (line) => {
    if (line === "") {
      if (dataLines.length) {
        const data = dataLines.join("\n");
        dataLines = [];
        onData(data);
      }
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const idx = line.indexOf(":");
    const field = idx === -1 ? line : line.slice(0, idx);
    let value = idx === -1 ? "" : line.slice(idx + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") dataLines.push(value);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.search(/\r\n|\r|\n/)) !== -1) {
      const line = buffer.slice(0, nl);
      const sepLen = buffer[nl] === "\r" && buffer[nl + 1] === "\n" ? 2 : 1;
      buffer = buffer.slice(nl + sepLen);
      flushLine(line);
    }
  }
  buffer += decoder.decode();
  if (buffer) flushLine(buffer);
  flushLine("");
}

async function runStream(convId, url, body, { userView = null, restoreText = null, removed = null } = {}) {
  const controller = new AbortController();
  // ids already on screen (or just removed by Regenerate): a later refresh must not mistake them for the new answer
  const knownIds = new Set([...el.messages.querySelectorAll(".message[data-id]")].map((n) => n.dataset.id));
  if (removed && removed.dataset.id) knownIds.add(removed.dataset.id);
  const view = messageView({ role: "assistant", content: "" });
  view.root.classList.add("streaming");
  view.root.dataset.status = "streaming";
  el.messages.append(view.root);
  updateEmpty();
  scrollToBottom(true);

  const stream = { convId, controller, view };
  state.stream = stream;
  updateComposer();
  updateRegenerate();

  let text = "";
  let lastRender = 0;
  let renderTimer = null;
  let finalMessage = null;
  let errorMessage = null;
  let gotAnything = false;

  const render = () => {
    renderTimer = null;
    lastRender = performance.now();
    const stick = nearBottom();
    view.setText(text);
    if (stick && state.currentId === convId) scrollToBottom(true);
  };
  const scheduleRender = () => {
    if (renderTimer) return;
    const wait = RENDER_INTERVAL_MS - (performance.now() - lastRender);
    if (wait <= 0) render();
    else renderTimer = setTimeout(render, wait);
  };

  const onData = (data) => {
    if (data === "[DONE]") return;
    let evt;
    try {
      evt = JSON.parse(data);
    } catch {
      return;
    }
    gotAnything = true;
    if (evt.error) {
      errorMessage = evt.error.message || "The model failed to answer";
      return;
    }
    if (evt.object === "baimo.user_message" && evt.message) {
      if (userView) {
        userView.root.dataset.id = evt.message.id || "";
        userView.root.dataset.status = evt.message.status || "complete";
      }
      return;
    }
    if (evt.object === "baimo.message" && evt.message) {
      finalMessage = evt.message;
      return;
    }
    const choice = evt.choices && evt.choices[0];
    const delta = choice && choice.delta && choice.delta.content;
    if (delta) {
      text += delta;
      scheduleRender();
    }
  };

  let aborted = false;
  try {
    const res = await request(url, { method: "POST", body, signal: controller.signal, headers: { Accept: "text/event-stream" } });
    await readEventStream(res.body, onData);
  } catch (err) {
    if (err.name === "AbortError" || controller.signal.aborted) {
      aborted = true;
    } else if (!gotAnything) {
      // rejected before anything was stored: undo the optimistic UI
      clearTimeout(renderTimer);
      view.root.remove();
      if (userView) userView.root.remove();
      if (removed) el.messages.append(removed);
      if (restoreText && !el.composer.value) {
        el.composer.value = restoreText;
        autoGrow();
      }
      state.stream = null;
      updateEmpty();
      updateComposer();
      updateRegenerate();
      toast(err.message);
      return;
    } else {
      errorMessage = err.message || "Connection lost";
    }
  }
  clearTimeout(renderTimer);
  state.stream = null;

  if (finalMessage) {
    view.finish(finalMessage);
  } else if (errorMessage) {
    view.finish({ role: "assistant", content: text, status: "error", error: errorMessage });
  } else {
    // stopped (or the stream ended early): the server keeps the partial answer as "stopped"
    view.finish({ role: "assistant", content: text, status: "stopped" });
  }
  updateComposer();
  updateRegenerate();
  if (state.currentId === convId) scrollToBottom();

  await refreshAfterStream(convId, { aborted, view, hadFinal: !!finalMessage, errorMessage, knownIds });
}

// After a stream: refresh the sidebar entry (auto title, updated_at) and, for a stopped
// answer, pick up the stored message (with its id and metrics) once the server saved it.
async function refreshAfterStream(convId, { aborted, view, hadFinal, errorMessage, knownIds }) {
  const attempts = aborted || (!hadFinal && !errorMessage) ? 6 : 1;
  for (let i = 0; i < attempts; i++) {
    if (i) await new Promise((r) => setTimeout(r, 250 * i));
    let conv;
    try {
      conv = await api(`/api/conversations/${encodeURIComponent(convId)}`);
    } catch {
      return;
    }
    const { messages = [], ...summary } = conv;
    upsertConversation(summary, { moveToTop: true });
    if (state.currentId === convId) {
      state.current = summary;
      setTitle(summary.title);
    }
    if (hadFinal) return;
    const last = messages[messages.length - 1];
    if (last && last.role === "assistant" && !knownIds.has(last.id)) {
      if (view.root.isConnected && !(state.stream && state.stream.convId === convId)) {
        view.finish(errorMessage ? { ...last, error: errorMessage } : last);
        updateRegenerate();
      }
      return;
    }
  }
}

/* ------------------------------------------------------------------ */
/* Export                                                               */
/* ------------------------------------------------------------------ */

async function exportConversation(format) {
  const id = state.currentId;
  if (!id) return;
  try {
    const res = await request(`/api/conversations/${encodeURIComponent(id)}/export?format=${format}`);
    const blob = await res.blob();
    let filename = `baimo-${id}.${format === "json" ? "json" : "md"}`;
    const cd = res.headers.get("Content-Disposition") || "";
    // RFC 6266: the exact name is in filename* (UTF-8, percent-encoded); filename is an ASCII stand-in
    const star = cd.match(/filename\*=UTF-8''([^;\s]+)/i);
    const plain = cd.match(/filename="?([^";]+)"?/i);
    if (star) filename = decodeURIComponent(star[1]);
    else if (plain) filename = plain[1];
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    toast(`Export failed: ${err.message}`);
  }
}

/* ------------------------------------------------------------------ */
/* Mobile sidebar                                                       */
/* ------------------------------------------------------------------ */

function openSidebar() {
  el.app.classList.add("sidebar-open");
  el.scrim.hidden = false;
}

function closeSidebar() {
  el.app.classList.remove("sidebar-open");
  el.scrim.hidden = true;
}

/* ------------------------------------------------------------------ */
/* Wiring                                                               */
/* ------------------------------------------------------------------ */

function bind() {
  el.newChat.addEventListener("click", () => {
    navigate(null);
    el.composer.focus();
  });

  el.search.addEventListener(
    "input",
    debounce(() => {
      const q = el.search.value.trim();
      if (q !== state.list.query) resetList(q);
    }, SEARCH_DEBOUNCE_MS),
  );

  let scrollQueued = false;
  el.convList.addEventListener(
    "scroll",
    () => {
      if (scrollQueued) return;
      scrollQueued = true;
      requestAnimationFrame(() => {
        scrollQueued = false;
        maybeLoadMore();
      });
    },
    { passive: true },
  );
  window.addEventListener("resize", debounce(maybeLoadMore, 150));

  el.convItems.addEventListener("click", (e) => {
    const item = e.target.closest(".conv-item");
    if (!item) return;
    if (e.target.closest("[data-testid=rename]")) {
      e.preventDefault();
      startRename(item);
    } else if (e.target.closest("[data-testid=delete]")) {
      e.preventDefault();
      deleteConversation(item.dataset.id);
    } else if (e.target.closest(".conv-link")) {
      // plain hash navigation; close the drawer even when re-selecting the same item
      closeSidebar();
    }
  });
  el.convItems.addEventListener("dblclick", (e) => {
    const item = e.target.closest(".conv-item");
    if (item && e.target.closest(".conv-link")) {
      e.preventDefault();
      startRename(item);
    }
  });

  el.messages.addEventListener("click", (e) => {
    if (e.target.closest("[data-testid=regenerate]")) regenerate();
    const vote = e.target.closest(".votes [data-rating]");
    if (vote) sendFeedback(vote);
  });

  el.form.addEventListener("submit", (e) => {
    e.preventDefault();
    sendMessage();
  });
  el.composer.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendMessage();
    }
  });
  el.composer.addEventListener("input", () => {
    autoGrow();
    updateComposer();
  });
  el.stop.addEventListener("click", () => {
    if (state.stream) state.stream.controller.abort();
  });

  el.modelPicker.addEventListener("change", () => {
    storageSet(MODEL_STORAGE, el.modelPicker.value);
    updateComposer();
  });

  for (const a of el.exportBox.querySelectorAll("a[data-format]")) {
    a.addEventListener("click", (e) => {
      e.preventDefault();
      exportConversation(a.dataset.format);
    });
  }

  el.apiKeyButton.addEventListener("click", async () => {
    const key = await askForKey("Enter the API key for this server (leave empty to clear). It is stored in this browser only.");
    if (key !== null || !storageGet(KEY_STORAGE)) {
      loadModels();
      resetList(state.list.query);
    }
  });

  el.menuButton.addEventListener("click", () => {
    if (el.app.classList.contains("sidebar-open")) closeSidebar();
    else openSidebar();
  });
  el.scrim.addEventListener("click", closeSidebar);

  window.addEventListener("hashchange", route);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && el.app.classList.contains("sidebar-open")) closeSidebar();
  });
}

async function main() {
  bind();
  autoGrow();
  updateComposer();
  const modelsLoaded = loadModels();
  const listLoaded = resetList("");
  await modelsLoaded;
  await openConversation(idFromHash());
  await listLoaded;
  markActive();
  document.body.dataset.ready = "true";
}

main();
