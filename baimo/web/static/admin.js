// Baimo admin page (/admin): API keys (create, revoke, rotate; a secret is shown once) and teams.
// Needs an admin key when auth is on (the local user is an admin while it is off). Plain ES module, no build step.

import { apiClient, h, keyDialog, toast as showToast } from "/static/client.js";

const $ = (id) => document.getElementById(id);
const askForKey = keyDialog();
const { api } = apiClient(askForKey);

function toast(message, kind = "error") {
  showToast($("toasts"), message, kind);
}

function status(text) {
  $("admin-status").textContent = text;
  $("admin-status").hidden = !text;
}

function showSecret(title, record) {
  $("secret-title").textContent = title;
  $("secret").textContent = record.key;
  $("secret-panel").hidden = false;
}

async function act(fn) {
  try {
    await fn();
    await load();
  } catch (err) {
    toast(err.message);
  }
}

function keyRow(k) {
  const flags = [k.admin && "admin", k.confidential && "confidential"].filter(Boolean).join(", ");
  const actions = k.revoked ? [] : [
    h("button", { type: "button", class: "btn btn-ghost btn-small", "data-testid": `rotate-${k.name}`,
      onclick: () => act(async () => showSecret(`New secret for ${k.name}`,
        await api(`/api/keys/${k.id}/rotate`, { method: "POST" }))) }, "Rotate"),
    h("button", { type: "button", class: "btn btn-ghost btn-small", "data-testid": `revoke-${k.name}`,
      onclick: () => act(() => api(`/api/keys/${k.id}`, { method: "DELETE" })) }, "Revoke"),
  ];
  return h("tr", { class: k.revoked ? "admin-revoked" : null, dataset: { key: k.name } },
    h("td", { text: k.name }), h("td", { text: k.user }), h("td", { text: k.team || "—" }),
    h("td", {}, h("code", { text: `${k.prefix}…` })), h("td", { text: k.models ? k.models.join(", ") : "all" }),
    h("td", { text: flags || "—" }), h("td", { text: k.revoked ? "revoked" : "active" }), h("td", {}, ...actions));
}

async function load() {
  let keys, teams;
  try {
    [keys, teams] = await Promise.all([api("/api/keys"), api("/api/teams")]);
  } catch (err) {
    const admin = err.status === 403;
    status(admin ? "This page needs an admin key." : err.message);
    if (admin) {
      const again = h("button", { type: "button", class: "btn btn-primary btn-small", "data-testid": "enter-key",
        onclick: async () => { if (await askForKey("Enter an admin API key.")) load(); } }, "Enter an admin key");
      $("admin-status").append(" ", again);
    }
    for (const id of ["create-panel", "keys-panel", "teams-panel"]) $(id).hidden = true;
    return;
  }
  status("");
  $("keys-table").querySelector("tbody").replaceChildren(...keys.data.map(keyRow));
  $("keys-note").textContent = `${keys.data.filter((k) => !k.revoked).length} active`;
  $("teams-table").querySelector("tbody").replaceChildren(...teams.data.map((t) =>
    h("tr", {}, h("td", { text: t.name }), h("td", { class: "num", text: t.keys }), h("td", {}, h("code", { text: t.id })))));
  $("team-names").replaceChildren(...teams.data.map((t) => h("option", { value: t.name })));
  for (const id of ["create-panel", "keys-panel", "teams-panel"]) $(id).hidden = false;
}

$("create-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const models = String(f.get("models") || "").split(",").map((m) => m.trim()).filter(Boolean);
  const body = { name: String(f.get("name")).trim(), user: String(f.get("user") || "").trim() || null,
    team: String(f.get("team") || "").trim() || null, models: models.length ? models : null,
    admin: f.get("admin") === "on", confidential: f.get("confidential") === "on" };
  act(async () => {
    showSecret(`New key ${body.name}`, await api("/api/keys", { method: "POST", body }));
    ev.target.reset();
  });
});

$("team-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const name = String(new FormData(ev.target).get("name")).trim();
  act(async () => {
    await api("/api/teams", { method: "POST", body: { name } });
    ev.target.reset();
  });
});

$("secret-hide").addEventListener("click", () => {
  $("secret").textContent = "";
  $("secret-panel").hidden = true;
});

load();
