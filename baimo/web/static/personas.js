// The Personas tab of the knowledge page: list personas, create and edit them (instructions, model,
// knowledge bases, grounding, budget), delete them, and show each one's usage ("salary slip").
// Plain ES module, no build step; mounted by knowledge.js with its API client and toast.

import { fmtCost, fmtInt, h, storageSet } from "/static/client.js";

const MODEL_STORAGE = "baimo.model"; // the chat page's model picker remembers its choice here
const PREFIX = "persona/";

const $ = (id) => document.getElementById(id);

export function mountPersonas({ api, toast }) {
  const el = {
    list: $("persona-list"),
    status: $("persona-status"),
    newButton: $("persona-new"),
    form: $("persona-form"),
    formTitle: $("persona-form-title"),
    name: $("persona-name"),
    description: $("persona-description"),
    instructions: $("persona-instructions"),
    model: $("persona-model"),
    temperature: $("persona-temperature"),
    knowledge: $("persona-knowledge-list"),
    grounded: $("persona-grounded"),
    confidential: $("persona-confidential"),
    minRelevance: $("persona-min-relevance"),
    topK: $("persona-top-k"),
    budget: $("persona-budget"),
    cancel: $("persona-cancel"),
    save: $("persona-save"),
    slip: $("slip-dialog"),
  };

  const state = { personas: [], models: [], bases: [], editing: null, loaded: false, pending: Promise.resolve() };
  const enc = encodeURIComponent;

  /* ---------------------------- loading ---------------------------- */

  function refresh() {
    state.pending = load();
    return state.pending;
  }

  async function load() {
    let personas, models, bases;
    try {
      [personas, models, bases] = await Promise.all([api("/api/personas"), api("/v1/models"), api("/api/knowledge")]);
    } catch (err) {
      el.status.hidden = false;
      el.status.textContent = `Could not load personas: ${err.message}`;
      toast(`Could not load personas: ${err.message}`);
      return;
    }
    state.personas = (personas && personas.data) || [];
    // a persona runs on a model or a router: never on another persona, and embedders cannot chat
    state.models = ((models && models.data) || []).filter((m) => !["persona", "embedding"].includes(m.baimo && m.baimo.kind));
    state.bases = (bases && bases.data) || [];
    state.loaded = true;
    renderList();
    const editing = state.editing && state.personas.find((p) => p.name === state.editing);
    fillChoices(editing ? editing : currentChoices());
  }

  /* ----------------------------- list ------------------------------ */

  function budgetText(p) {
    return p.budget_usd === null || p.budget_usd === undefined ? "no budget" : `${fmtCost(p.budget_usd)} / month`;
  }

  function renderList() {
    el.status.hidden = state.personas.length > 0;
    el.status.textContent = "No personas yet: create one with the form.";
    el.list.replaceChildren(...state.personas.map(personaCard));
  }

  function markEditing() {
    for (const card of el.list.children) card.classList.toggle("editing", card.dataset.name === state.editing);
  }

  function personaCard(p) {
    const kb = p.knowledge || [];
    const fact = (label, ...value) => h("div", { class: "fact" }, h("dt", {}, label), h("dd", {}, ...value));
    const button = (text, testid, onclick, extra = {}) =>
      h("button", { type: "button", class: "btn btn-ghost btn-small", "data-testid": testid, "aria-label": `${text} ${p.name}`, onclick, ...extra }, text);
    return h(
      "li",
      { class: state.editing === p.name ? "persona-card editing" : "persona-card", "data-testid": "persona-card", "data-name": p.name },
      h(
        "div",
        { class: "persona-top" },
        h("span", { class: "persona-avatar", "aria-hidden": "true" }, p.name.slice(0, 1).toUpperCase()),
        h("div", { class: "persona-id" }, h("strong", { class: "persona-name" }, p.name), h("code", {}, p.id || PREFIX + p.name)),
        p.grounded ? h("span", { class: "badge badge-ok", "data-testid": "persona-grounded-badge", title: "Declines when its knowledge has nothing relevant" }, "Grounded") : null,
        p.confidential ? h("span", { class: "badge", "data-testid": "persona-confidential-badge", title: "Answered only by models on premises" }, "Confidential") : null,
      ),
      p.description ? h("p", { class: "persona-desc muted" }, p.description) : null,
      h(
        "dl",
        { class: "persona-facts" },
        fact("Model", p.model ? h("span", { "data-testid": "persona-model-text" }, p.model) : h("span", { class: "muted" }, "server default")),
        fact("Knowledge", ...(kb.length ? kb.map((k) => h("span", { class: "tag", "data-testid": "persona-kb" }, k)) : [h("span", { class: "muted" }, "none")])),
        fact("Budget", h("span", { "data-testid": "persona-budget-text" }, budgetText(p))),
        p.temperature !== null && p.temperature !== undefined ? fact("Temperature", String(p.temperature)) : null,
      ),
      h(
        "div",
        { class: "persona-actions" },
        h(
          "a",
          {
            class: "btn btn-ghost btn-small",
            href: "/",
            "data-testid": "persona-chat",
            "aria-label": `Chat with ${p.name}`,
            onclick: () => storageSet(MODEL_STORAGE, p.id || PREFIX + p.name),
          },
          "Chat",
        ),
        button("Usage", "persona-usage", () => showSlip(p)),
        button("Edit", "persona-edit", () => edit(p)),
        button("Delete", "persona-delete", () => remove(p), { class: "btn btn-ghost btn-small btn-danger-text" }),
      ),
    );
  }

  /* ----------------------------- form ------------------------------ */

  // The form's current model and knowledge picks, so refilling the choices keeps them.
  function currentChoices() {
    return { model: el.model.value || null, knowledge: [...el.knowledge.querySelectorAll("input:checked")].map((i) => i.value) };
  }

  function fillChoices({ model, knowledge }) {
    const option = (m) => h("option", { value: m.id, title: (m.baimo && m.baimo.description) || null }, m.id);
    const routers = state.models.filter((m) => m.baimo && m.baimo.kind === "router");
    const plain = state.models.filter((m) => !(m.baimo && m.baimo.kind === "router"));
    const groups = [h("option", { value: "" }, "Server default")];
    if (routers.length) groups.push(h("optgroup", { label: "Routers" }, ...routers.map(option)));
    if (plain.length) groups.push(routers.length ? h("optgroup", { label: "Models" }, ...plain.map(option)) : plain.map(option));
    el.model.replaceChildren(...groups.flat());
    if (model && !state.models.some((m) => m.id === model)) el.model.append(h("option", { value: model }, `${model} (not available)`));
    el.model.value = model || "";

    const chosen = new Set(knowledge || []);
    const names = [...state.bases.map((b) => b.name), ...[...chosen].filter((n) => !state.bases.some((b) => b.name === n))];
    el.knowledge.replaceChildren(
      ...names.map((name) => {
        const b = state.bases.find((x) => x.name === name);
        return h(
          "label",
          { class: "check choice", "data-testid": "persona-kb-choice" },
          h("input", { type: "checkbox", value: name, checked: chosen.has(name) }),
          h("span", {}, name),
          h("span", { class: "muted small" }, b ? `${fmtInt(b.documents)} docs` : "missing"),
        );
      }),
    );
    if (!names.length && state.loaded) el.knowledge.append(h("p", { class: "muted small" }, "No knowledge bases yet: create one in the Knowledge bases tab."));
  }

  const numberOrNull = (input) => (input.value.trim() === "" ? null : Number(input.value));

  function values() {
    return {
      description: el.description.value.trim(),
      instructions: el.instructions.value,
      model: el.model.value || null,
      temperature: numberOrNull(el.temperature),
      knowledge: currentChoices().knowledge,
      grounded: el.grounded.checked,
      confidential: el.confidential.checked,
      min_relevance: numberOrNull(el.minRelevance),
      top_k: numberOrNull(el.topK),
      budget_usd: numberOrNull(el.budget),
    };
  }

  function setNumber(input, v) {
    input.value = v === null || v === undefined ? "" : String(v);
  }

  function resetForm() {
    state.editing = null;
    el.form.reset();
    el.name.readOnly = false;
    el.formTitle.textContent = "New persona";
    el.save.textContent = "Create persona";
    el.form.dataset.mode = "create";
    fillChoices({ model: null, knowledge: [] });
    markEditing();
  }

  function edit(p) {
    state.editing = p.name;
    el.form.dataset.mode = "edit";
    el.formTitle.textContent = `Edit ${p.name}`;
    el.save.textContent = "Save changes";
    el.name.value = p.name;
    el.name.readOnly = true;
    el.description.value = p.description || "";
    el.instructions.value = p.instructions || "";
    setNumber(el.temperature, p.temperature);
    el.grounded.checked = !!p.grounded;
    el.confidential.checked = !!p.confidential;
    setNumber(el.minRelevance, p.min_relevance);
    setNumber(el.topK, p.top_k);
    setNumber(el.budget, p.budget_usd);
    fillChoices({ model: p.model, knowledge: p.knowledge || [] });
    markEditing();
    el.form.scrollIntoView({ block: "nearest", behavior: "smooth" });
    el.description.focus();
  }

  async function save(e) {
    e.preventDefault();
    if (!el.form.reportValidity()) return;
    const v = values();
    const editing = state.editing;
    el.save.disabled = true;
    try {
      let saved;
      if (editing) {
        // PATCH: empty fields are sent as null, which clears them back to the default
        saved = await api(`/api/personas/${enc(editing)}`, { method: "PATCH", body: v });
      } else {
        const body = { name: el.name.value.trim() };
        for (const [k, val] of Object.entries(v)) if (val !== null && val !== "") body[k] = val;
        saved = await api("/api/personas", { method: "POST", body });
      }
      toast(editing ? `Saved ${saved.name}` : `Created persona ${saved.name}`, "ok");
      resetForm();
      await refresh();
    } catch (err) {
      toast(`Could not save the persona: ${err.message}`);
    } finally {
      el.save.disabled = false;
    }
  }

  async function remove(p) {
    if (!window.confirm(`Delete the persona “${p.name}”? Its usage records stay.`)) return;
    try {
      await api(`/api/personas/${enc(p.name)}`, { method: "DELETE" });
    } catch (err) {
      if (err.status !== 404) {
        toast(`Could not delete ${p.name}: ${err.message}`);
        return;
      }
    }
    if (state.editing === p.name) resetForm();
    await refresh();
  }

  /* ------------------------- salary slip --------------------------- */

  async function showSlip(p) {
    let u;
    try {
      u = await api(`/api/personas/${enc(p.name)}/usage`);
    } catch (err) {
      toast(`Could not load the usage of ${p.name}: ${err.message}`);
      return;
    }
    $("slip-title").textContent = `${p.name}: usage`;
    $("slip-requests").textContent = fmtInt(u.requests);
    $("slip-tokens").textContent = `${fmtInt(u.prompt_tokens)} / ${fmtInt(u.completion_tokens)}`;
    $("slip-cost").textContent = fmtCost(u.cost);
    $("slip-month").textContent = u.budget_usd == null ? fmtCost(u.this_month_cost) : `${fmtCost(u.this_month_cost)} of ${fmtCost(u.budget_usd)}`;

    const track = $("slip-track");
    const fill = $("slip-fill");
    const note = $("slip-budget-note");
    track.hidden = u.budget_usd == null;
    if (u.budget_usd == null) {
      note.textContent = "No monthly budget: this persona can spend without limit.";
    } else {
      const used = u.budget_usd > 0 ? u.this_month_cost / u.budget_usd : u.this_month_cost > 0 ? 1 : 0;
      fill.style.width = `${Math.min(100, used * 100).toFixed(1)}%`;
      track.classList.toggle("over", used >= 1);
      track.setAttribute("role", "meter");
      track.setAttribute("aria-label", "Share of this month's budget spent");
      track.setAttribute("aria-valuemin", "0");
      track.setAttribute("aria-valuemax", "100");
      track.setAttribute("aria-valuenow", Math.min(100, used * 100).toFixed(1));
      note.textContent =
        used >= 1
          ? "Budget spent: requests to this persona are refused until next month."
          : `${(used * 100).toFixed(used < 0.1 ? 1 : 0)}% used · ${fmtCost(u.budget_usd - u.this_month_cost)} left this month (UTC)`;
    }

    const rows = u.models || [];
    $("slip-empty").hidden = rows.length > 0;
    $("slip-models").hidden = !rows.length;
    $("slip-models").tBodies[0].replaceChildren(
      ...rows.map((r) => {
        const share = Number(r.share || 0) * 100;
        return h(
          "tr",
          { "data-testid": "slip-row", "data-model": r.model || "" },
          h("td", {}, r.model ? h("span", { class: "model-name" }, r.model) : h("span", { class: "muted" }, "failed (no model)")),
          h("td", { class: "num" }, fmtInt(r.requests)),
          h(
            "td",
            { class: "share-col" },
            h(
              "span",
              { class: "share", title: `${share.toFixed(1)}% of this persona's requests` },
              h("span", { class: "share-track" }, h("span", { class: "share-fill", style: `width:${share.toFixed(2)}%;background:var(--accent)` })),
              h("span", { class: "share-pct" }, `${share.toFixed(share >= 10 || share === 0 ? 0 : 1)}%`),
            ),
          ),
          h("td", { class: "num nowrap" }, `${fmtInt(r.prompt_tokens)} / ${fmtInt(r.completion_tokens)}`),
          h("td", { class: "num" }, fmtCost(r.cost)),
        );
      }),
    );
    el.slip.dataset.persona = p.name;
    el.slip.showModal();
  }

  /* ---------------------------- wiring ----------------------------- */

  el.form.addEventListener("submit", save);
  el.cancel.addEventListener("click", resetForm);
  el.newButton.addEventListener("click", () => {
    resetForm();
    el.name.focus();
  });
  resetForm();

  return { refresh, loaded: () => state.pending };
}
