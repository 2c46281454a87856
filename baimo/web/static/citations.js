// Citations in the chat: the knowledge passages an answer was given, shown as a compact Sources list
// under it, [n] markers in its text made clickable, and a dialog with the passage itself.
// Plain ES module, no build step; used by app.js.

import { h } from "/static/client.js";

const CITE_MARKER = /\[(\d{1,3})\]/g;

function citationTitle(c) {
  return c.location ? `${c.source} · ${c.location}` : c.source;
}

// Turns [n] in the rendered (already sanitised) answer into buttons that call open(citation n), for
// the numbers that name a citation. Works on text nodes only, so no HTML is ever built from strings;
// code, links and buttons are left alone.
export function linkCitations(container, citations, open) {
  if (!citations || !citations.length) return;
  const byIndex = new Map(citations.map((c) => [Number(c.index), c]));
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      if (node.parentElement && node.parentElement.closest("pre, code, a, button")) return NodeFilter.FILTER_REJECT;
      return /\[\d{1,3}\]/.test(node.nodeValue) ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP;
    },
  });
  const nodes = [];
  while (walker.nextNode()) nodes.push(walker.currentNode);
  for (const node of nodes) {
    const text = node.nodeValue;
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(CITE_MARKER)) {
      const c = byIndex.get(Number(match[1]));
      if (!c) continue;
      if (match.index > last) frag.append(text.slice(last, match.index));
      frag.append(
        h(
          "button",
          {
            type: "button",
            class: "cite",
            "data-testid": "citation-marker",
            "data-index": c.index,
            title: citationTitle(c),
            "aria-label": `Source ${c.index}: ${citationTitle(c)}`,
            onclick: () => open(c),
          },
          match[0],
        ),
      );
      last = match.index + match[0].length;
    }
    if (!last) continue;
    if (last < text.length) frag.append(text.slice(last));
    node.replaceWith(frag);
  }
}

// The compact list under an answer: number, source file and location; the cited ones stand out.
export function sourcesList(citations, open) {
  const items = citations.map((c) =>
    h(
      "li",
      { class: c.cited ? "source cited" : "source", "data-testid": "source", "data-index": c.index, "data-cited": c.cited ? "true" : "false" },
      h(
        "button",
        { type: "button", class: "source-btn", title: `Show passage ${c.index}${c.cited ? " (cited in the answer)" : ""}`, onclick: () => open(c) },
        h("span", { class: "source-num", "aria-hidden": "true" }, String(c.index)),
        h("span", { class: "source-name", "data-testid": "source-name" }, c.source),
        c.location ? h("span", { class: "source-loc" }, c.location) : null,
        h("span", { class: "visually-hidden" }, c.cited ? `, source ${c.index}, cited` : `, source ${c.index}, not cited`),
      ),
    ),
  );
  const cited = citations.filter((c) => c.cited).length;
  return h(
    "section",
    { class: "sources", "data-testid": "sources", "aria-label": "Sources" },
    h("div", { class: "sources-head" }, "Sources", h("span", { class: "sources-note" }, cited ? `${cited} of ${citations.length} cited` : `${citations.length} given, none cited`)),
    h("ol", { class: "sources-list" }, ...items),
  );
}

// Wires the passage <dialog> of index.html and returns open(citation). Esc and the Close buttons
// close it natively (method="dialog"); a click on the backdrop closes it too.
export function passageViewer(dialog) {
  const part = (id) => dialog.querySelector(`#${id}`);
  const num = part("passage-num");
  const title = part("passage-title");
  const meta = part("passage-meta");
  const text = part("passage-text");
  dialog.addEventListener("click", (e) => {
    if (e.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
    if (!inside) dialog.close();
  });
  return function open(c) {
    num.textContent = String(c.index);
    title.textContent = c.source;
    const facts = [c.location, c.knowledge_base ? `knowledge base ${c.knowledge_base}` : null];
    if (c.similarity != null) facts.push(`similarity ${Number(c.similarity).toFixed(2)}`);
    facts.push(c.cited ? "cited in the answer" : "not cited");
    meta.textContent = facts.filter(Boolean).join(" · ");
    text.textContent = c.text || "";
    dialog.dataset.index = String(c.index);
    if (!dialog.open) dialog.showModal();
    text.scrollTop = 0;
  };
}
