// Shared by the chat page (app.js), the usage page (usage.js) and the knowledge page (knowledge.js,
// personas.js): storage, DOM helpers, toasts and the HTTP client that sends the stored API key and
// asks for one on 401.
// Plain ES module, no build step.

export const KEY_STORAGE = "baimo.apiKey";

/* ------------------------------------------------------------------ */
/* Storage                                                              */
/* ------------------------------------------------------------------ */

export function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

export function storageSet(key, value) {
  try {
    if (value === null || value === undefined || value === "") localStorage.removeItem(key);
    else localStorage.setItem(key, value);
  } catch {
    /* storage unavailable (private mode): keep working without persistence */
  }
}

/* ------------------------------------------------------------------ */
/* DOM                                                                  */
/* ------------------------------------------------------------------ */

// h("a", { class, text, dataset: {...}, onclick: fn, other: "attr" }, ...children)
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

// A toast in `container` (the page's #toasts) that fades out after a few seconds.
export function toast(container, message, kind = "error") {
  const node = h("div", { class: `toast toast-${kind}`, role: "status", "data-testid": "toast" }, message);
  container.append(node);
  setTimeout(() => node.classList.add("toast-leave"), 4500);
  setTimeout(() => node.remove(), 5000);
}

/* ------------------------------------------------------------------ */
/* Formatting                                                           */
/* ------------------------------------------------------------------ */

export const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");

export function fmtCost(v) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
  const n = Number(v);
  const a = Math.abs(n);
  if (a === 0) return "$0.00";
  if (a < 0.01) return `$${n.toFixed(6)}`;
  if (a < 1) return `$${n.toFixed(4)}`;
  return `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

// Server timestamps are UTC, sometimes without a zone suffix.
export function parseTime(t) {
  if (!t) return null;
  const iso = /[zZ]|[+-]\d\d:?\d\d$/.test(t) ? t : `${t}Z`;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                 */
/* ------------------------------------------------------------------ */

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export async function errorFromResponse(res) {
  let body = null;
  let message = `${res.status} ${res.statusText || "error"}`;
  try {
    body = await res.json();
    const err = body && body.error;
    if (err && err.message) message = err.message;
    else if (body && typeof body.detail === "string") message = body.detail;
  } catch {
    /* not JSON */
  }
  return new ApiError(message, res.status, body);
}

// Builds the API-key <dialog> (one definition for every page) and returns
// askForKey(message): shows the dialog and resolves with the saved key, or null when
// cancelled or cleared. Concurrent calls share one prompt.
export function keyDialog() {
  const input = h("input", { type: "password", id: "key-input", "data-testid": "api-key-input", placeholder: "sk-…",
    autocomplete: "off", "aria-label": "API key" });
  const text = h("p", { id: "key-dialog-text" }, "This server requires an API key. It is stored in this browser only.");
  const cancel = h("button", { type: "button", class: "btn btn-ghost", id: "key-cancel" }, "Cancel");
  const save = h("button", { type: "submit", value: "save", class: "btn btn-primary", id: "key-save",
    "data-testid": "api-key-save" }, "Save");
  const dialog = h("dialog", { id: "key-dialog", class: "dialog", "data-testid": "api-key-dialog" },
    h("form", { method: "dialog", id: "key-form" }, h("h2", {}, "API key"), text, input,
      h("div", { class: "dialog-actions" }, cancel, save)));
  document.body.append(dialog);
  let pending = null;
  cancel.addEventListener("click", () => dialog.close("cancel"));
  return function askForKey(message) {
    if (pending) return pending;
    pending = new Promise((resolve) => {
      text.textContent = message;
      input.value = storageGet(KEY_STORAGE) || "";
      const onClose = () => {
        dialog.removeEventListener("close", onClose);
        pending = null;
        if (dialog.returnValue === "save") {
          const key = input.value.trim();
          storageSet(KEY_STORAGE, key);
          resolve(key || null);
        } else {
          resolve(null);
        }
      };
      dialog.addEventListener("close", onClose);
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
    return pending;
  };
}

// Returns { request, api } bound to askForKey (from keyDialog).
// request(): fetch() with the stored API key; on 401 asks for a key and retries. Returns
// the Response when ok, throws ApiError otherwise. A FormData body is sent as multipart
// (the browser sets its Content-Type and boundary); any other body is sent as JSON.
// api(): request() and the parsed JSON body (null for an empty body).
export function apiClient(askForKey) {
  async function request(path, { method = "GET", body, signal, headers = {} } = {}) {
    const multipart = typeof FormData !== "undefined" && body instanceof FormData;
    for (let attempt = 0; ; attempt++) {
      const hdrs = { ...headers };
      const key = storageGet(KEY_STORAGE);
      if (key) hdrs.Authorization = `Bearer ${key}`;
      if (body !== undefined && !multipart) hdrs["Content-Type"] = "application/json";
      const res = await fetch(path, {
        method,
        headers: hdrs,
        body: body === undefined ? undefined : multipart ? body : JSON.stringify(body),
        signal,
      });
      if (res.status === 401 && attempt < 3) {
        const err = await errorFromResponse(res);
        const msg = key
          ? `The stored API key was rejected (${err.message}). Enter a valid key.`
          : "This server requires an API key. It is stored in this browser only.";
        const newKey = await askForKey(msg);
        if (newKey) continue;
        throw err;
      }
      if (!res.ok) throw await errorFromResponse(res);
      return res;
    }
  }

  async function api(path, opts) {
    const res = await request(path, opts);
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  return { request, api };
}
