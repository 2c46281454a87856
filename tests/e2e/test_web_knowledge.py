"""Browser test of the knowledge page (/knowledge, /personas) and of citations in the chat.

Through the UI only: create a knowledge base, upload an English Markdown file and a French text file, watch the
ingestion finish, search, create a persona that uses the base, chat with it, and open a cited passage from the
Sources list. Same setup as tests/e2e/test_web_ui.py: the real `baimo serve` from the `server` fixture (SmolLM2-135M,
whose answers are poor: only the Sources UI is checked, not the answer) driven through Debian chromium.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.support.browser import ANSWER_TIMEOUT_MS, ARTIFACTS, assistant_messages, open_app, send

pytestmark = pytest.mark.e2e

SMALL = "local/smollm2-135m"
FACT = "The Zorblax reactor runs at 42 kelvin."


def wait_ready(page) -> None:
    page.wait_for_function("document.body.dataset.ready === 'true'")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_knowledge_base_persona_and_citations(page, server, tmp_path):
    uid = uuid.uuid4().hex[:6]
    kb, persona = f"reactors-{uid}", f"engineer-{uid}"
    md = tmp_path / "zorblax.md"
    md.write_text(f"# Zorblax reactor\n\n{FACT} It was switched on in 2031 by the Kappa team.\n", encoding="utf-8")
    txt = tmp_path / "tarte.txt"
    txt.write_text("La tarte Tatin est un dessert français aux pommes caramélisées, servi tiède avec de la crème.\n",
                   encoding="utf-8")

    # the chat page links to the knowledge page
    open_app(page, server)
    page.get_by_test_id("knowledge-link").click()
    page.wait_for_url("**/knowledge")
    wait_ready(page)
    expect(page.get_by_test_id("tab-knowledge")).to_have_attribute("aria-selected", "true")

    # create a knowledge base: it is listed and opened
    page.get_by_test_id("kb-name").fill(kb)
    page.get_by_test_id("kb-description").fill("Facts about reactors")
    page.get_by_test_id("kb-create").click()
    expect(page.get_by_test_id("kb-title")).to_have_text(kb)
    item = page.locator(f"[data-testid=kb-item][data-name='{kb}']")
    expect(item).to_be_visible()
    expect(page.get_by_test_id("doc-empty")).to_be_visible()

    # upload two files through the file input: the job panel follows the ingestion to the end
    page.get_by_test_id("kb-files").set_input_files([str(md), str(txt)])
    job = page.get_by_test_id("ingest-job")
    expect(job).to_be_visible()
    expect(job).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.get_by_test_id("job-counts")).to_contain_text("2 / 2 files")
    expect(page.get_by_test_id("job-report")).to_contain_text("Added 2")
    expect(page.get_by_test_id("job-failed-file")).to_have_count(0)
    expect(page.get_by_test_id("doc-row")).to_have_count(2)
    expect(page.locator("[data-testid=doc-row][data-source='zorblax.md']")).to_be_visible()
    expect(page.locator("[data-testid=doc-row][data-source='tarte.txt']")).to_be_visible()
    expect(item.get_by_test_id("kb-item-facts")).to_contain_text("2 docs")

    # search: the Markdown fact comes first, with its scores
    page.get_by_test_id("kb-query").fill("How cold is the Zorblax reactor?")
    page.get_by_test_id("kb-search").click()
    hit = page.get_by_test_id("kb-hit").first
    expect(hit).to_have_attribute("data-source", "zorblax.md")
    expect(hit.get_by_test_id("hit-text")).to_contain_text("42 kelvin")
    expect(hit).to_contain_text("similarity")
    shot(page, "knowledge.png")

    # a persona with that knowledge base, on SmolLM2
    page.get_by_test_id("tab-personas").click()
    page.wait_for_url("**/personas")
    expect(page.get_by_test_id("tab-personas")).to_have_attribute("aria-selected", "true")
    choice = page.get_by_test_id("persona-kb-choice").filter(has_text=kb)
    expect(choice).to_have_count(1)
    page.get_by_test_id("persona-name").fill(persona)
    page.get_by_test_id("persona-description").fill("Knows the Zorblax reactor")
    page.get_by_test_id("persona-instructions").fill("You are a reactor engineer. Answer briefly.")
    page.get_by_test_id("persona-model").select_option(SMALL)
    choice.locator("input[type=checkbox]").check()
    page.get_by_test_id("persona-budget").fill("5")
    page.get_by_test_id("persona-save").click()
    card = page.locator(f"[data-testid=persona-card][data-name='{persona}']")
    expect(card).to_be_visible()
    expect(card.get_by_test_id("persona-kb")).to_have_text(kb)
    expect(card.get_by_test_id("persona-model-text")).to_have_text(SMALL)
    expect(card.get_by_test_id("persona-budget-text")).to_contain_text("$5.00 / month")
    shot(page, "personas.png")

    # the chat link opens the chat with the persona picked; the picker lists it under Personas
    card.get_by_test_id("persona-chat").click()
    page.wait_for_url(server.url + "/")
    wait_ready(page)
    picker = page.get_by_test_id("model-picker")
    option = page.locator(f"[data-testid=persona-group] option[value='persona/{persona}']")
    expect(option).to_have_count(1)
    expect(option).to_have_attribute("title", re.compile("Knows the Zorblax reactor"))
    expect(picker).to_have_value(f"persona/{persona}")
    picker.select_option(f"persona/{persona}")

    send(page, "How cold does the Zorblax reactor run?")
    answer = assistant_messages(page).last
    answer.get_by_test_id("message-meta").wait_for(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_attribute("data-status", "complete")
    sources = answer.get_by_test_id("sources")
    expect(sources).to_be_visible()
    source = sources.get_by_test_id("source").filter(has_text="zorblax.md")
    expect(source).to_have_count(1)

    # any [n] marker the model wrote is a button only when source n exists
    given = {int(i) for i in sources.get_by_test_id("source").evaluate_all("ns => ns.map(n => n.dataset.index)")}
    marked = answer.get_by_test_id("citation-marker").evaluate_all("ns => ns.map(n => n.dataset.index)")
    assert {int(i) for i in marked} <= given

    # a source opens its passage; Esc and the Close button both close it
    source.locator("button").click()
    dialog = page.get_by_test_id("passage-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_test_id("passage-source")).to_have_text("zorblax.md")
    expect(dialog.get_by_test_id("passage-text")).to_contain_text("42 kelvin")
    shot(page, "citations.png")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    source.locator("button").click()
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("passage-close").click()
    expect(dialog).to_be_hidden()

    # after a reload the stored citations come back; [n] in the text links to source n, except in code and
    # when no source n exists (the stored text is rewritten in transit to make that deterministic)
    index = int(source.get_attribute("data-index"))
    missing = max(given) + 1

    def rewrite(route):
        response = route.fetch()
        body = response.json()
        body["messages"][-1]["content"] = f"It runs cold [{index}]. Not [{missing}], nor `[{index}]`."
        route.fulfill(status=response.status, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/api/conversations/[^/?]+$"), rewrite)
    page.reload()
    wait_ready(page)
    answer = assistant_messages(page).last
    expect(answer.get_by_test_id("source").filter(has_text="zorblax.md")).to_have_count(1)
    markers = answer.get_by_test_id("citation-marker")
    expect(markers).to_have_count(1)
    expect(markers).to_have_text(f"[{index}]")
    expect(answer.get_by_test_id("message-content")).to_contain_text(f"[{missing}]")
    markers.click()
    expect(dialog.get_by_test_id("passage-text")).to_contain_text("42 kelvin")
    page.keyboard.press("Escape")
    page.unroute(re.compile(r".*/api/conversations/[^/?]+$"))

    # the persona's salary slip counts the request against its budget
    page.goto(server.url + "/personas")
    wait_ready(page)
    card = page.locator(f"[data-testid=persona-card][data-name='{persona}']")
    card.get_by_test_id("persona-usage").click()
    slip = page.get_by_test_id("persona-usage-dialog")
    expect(slip).to_be_visible()
    assert int(slip.get_by_test_id("slip-requests").inner_text().replace(",", "")) >= 1
    expect(slip.locator(f"[data-testid=slip-row][data-model='{SMALL}']")).to_have_count(1)
    expect(slip.get_by_test_id("slip-month")).to_contain_text("of $5.00")
    shot(page, "persona_usage.png")
    page.keyboard.press("Escape")
    expect(slip).to_be_hidden()

    # narrow screen and dark theme, for a human to look at
    page.goto(server.url + f"/knowledge#{kb}")
    wait_ready(page)
    expect(page.get_by_test_id("kb-title")).to_have_text(kb)
    page.set_viewport_size({"width": 390, "height": 800})
    shot(page, "knowledge_mobile.png")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)  # let colour transitions finish
    shot(page, "knowledge_dark.png")


def test_edit_delete_and_drop(page, server):
    """Editing and deleting a persona, dropping files (one unsupported), removing a document, deleting a base."""
    uid = uuid.uuid4().hex[:6]
    kb, persona = f"notes-{uid}", f"helper-{uid}"
    page.on("dialog", lambda d: d.accept())  # every confirm() below is answered yes
    page.goto(server.url + "/knowledge")
    wait_ready(page)
    page.get_by_test_id("kb-name").fill(kb)
    page.get_by_test_id("kb-create").click()
    expect(page.get_by_test_id("kb-title")).to_have_text(kb)

    # drag and drop two files: the supported one is added, the other is reported with its reason
    drop = page.evaluate_handle("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["Le réacteur Zorblax fonctionne à 42 kelvins."], "reacteur.txt", {type: "text/plain"}));
        dt.items.add(new File([new Uint8Array([77, 90, 144, 0])], "setup.exe", {type: "application/octet-stream"}));
        dt.items.add(new File(["Second note."], "second.md", {type: "text/markdown"}));
        return dt;
    }""")
    page.get_by_test_id("dropzone").dispatch_event("drop", {"dataTransfer": drop})
    job = page.get_by_test_id("ingest-job")
    expect(job).to_have_attribute("data-status", "done", timeout=60_000)
    expect(page.get_by_test_id("job-report")).to_contain_text("Added 2")
    failed = page.get_by_test_id("job-failed-file")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("setup.exe")
    expect(failed).to_contain_text("unsupported")
    expect(page.get_by_test_id("doc-row")).to_have_count(2)

    # remove one document
    page.locator("[data-testid=doc-row][data-source='second.md']").get_by_test_id("doc-remove").click()
    expect(page.get_by_test_id("doc-row")).to_have_count(1)
    facts = page.locator(f"[data-testid=kb-item][data-name='{kb}'] [data-testid=kb-item-facts]")
    expect(facts).to_contain_text("1 doc ")

    # a persona: create, edit (grounded on, budget cleared), delete
    page.get_by_test_id("tab-personas").click()
    page.get_by_test_id("persona-name").fill(persona)
    page.get_by_test_id("persona-budget").fill("2.5")
    page.get_by_test_id("persona-kb-choice").filter(has_text=kb).locator("input").check()
    page.get_by_test_id("persona-save").click()
    card = page.locator(f"[data-testid=persona-card][data-name='{persona}']")
    expect(card.get_by_test_id("persona-budget-text")).to_have_text("$2.50 / month")
    expect(card.get_by_test_id("persona-grounded-badge")).to_have_count(0)
    card.get_by_test_id("persona-edit").click()
    expect(page.get_by_test_id("persona-name")).to_have_value(persona)
    expect(page.get_by_test_id("persona-budget")).to_have_value("2.5")
    page.get_by_test_id("persona-grounded").check()
    page.get_by_test_id("persona-budget").fill("")
    page.get_by_test_id("persona-save").click()
    expect(card.get_by_test_id("persona-budget-text")).to_have_text("no budget")
    expect(card.get_by_test_id("persona-grounded-badge")).to_be_visible()
    expect(card.get_by_test_id("persona-kb")).to_have_text(kb)
    card.get_by_test_id("persona-delete").click()
    expect(card).to_have_count(0)

    # delete the base
    page.get_by_test_id("tab-knowledge").click()
    expect(page.get_by_test_id("kb-title")).to_have_text(kb)
    page.get_by_test_id("kb-delete").click()
    expect(page.locator(f"[data-testid=kb-item][data-name='{kb}']")).to_have_count(0)
    expect(page.get_by_test_id("kb-none")).to_be_visible()
