"""Browser tests of the web chat UI (baimo/web/static), driving Debian chromium with Playwright.

They run against the real `baimo serve` from the `server` fixture (tests/conftest.py) with the
SmolLM2-135M model: fast, but its text is incoherent, so the assertions are about behaviour
(streaming, metering line, persistence, rename/delete, search, stop), never about wording.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.browser import (
    ANSWER_TIMEOUT_MS,
    ARTIFACTS,
    assistant_messages,
    current_conversation_id,
    open_app,
    pick_small_model,
    send,
    wait_until,
)

pytestmark = pytest.mark.e2e


# Records, on every DOM change, the length of the last assistant message and whether the
# Stop button is showing; read back as window.__baimoObs.
OBSERVER_JS = """
() => {
  window.__baimoObs = [];
  const record = () => {
    const msgs = document.querySelectorAll('[data-testid=message][data-role=assistant]');
    const last = msgs[msgs.length - 1];
    const content = last && last.querySelector('[data-testid=message-content]');
    const stop = document.querySelector('[data-testid=stop]');
    window.__baimoObs.push({
      len: content ? content.textContent.length : -1,
      streaming: !!last && last.classList.contains('streaming'),
      stop: !!stop && !stop.hidden && stop.offsetParent !== null,
    });
  };
  new MutationObserver(record).observe(document.body, {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ['hidden', 'class', 'data-status'],
  });
}
"""




def test_chat_streams_meters_persists_and_regenerates(page, server, api):
    open_app(page, server)
    expect(page.get_by_test_id("message")).to_have_count(0)
    model = pick_small_model(page)
    page.evaluate(OBSERVER_JS)

    prompt = "Write two short sentences about the sea."
    send(page, prompt)
    user_msg = page.locator("[data-testid=message][data-role=user]")
    expect(user_msg).to_have_count(1)
    expect(user_msg).to_have_text(prompt)
    expect(page.get_by_test_id("composer")).to_have_value("")

    answer = assistant_messages(page).last
    meta = answer.get_by_test_id("message-meta")
    meta.wait_for(timeout=ANSWER_TIMEOUT_MS)

    obs = page.evaluate("window.__baimoObs")
    assert any(o["stop"] for o in obs), "the Stop button never showed while streaming"
    lengths = sorted({o["len"] for o in obs if o["streaming"] and o["len"] > 0})
    final_text = answer.get_by_test_id("message-content").inner_text()
    assert final_text.strip(), "the assistant answer is empty"
    assert len(lengths) >= 2 or len(final_text) < 20, f"the answer did not grow token by token: {lengths}"

    expect(answer).to_have_attribute("data-status", "complete")
    meta_text = meta.inner_text()
    assert model in meta_text
    assert re.search(r"\d+ in / \d+ out tokens", meta_text), meta_text
    assert re.search(r"[\d,]+ ms", meta_text), meta_text
    assert "TTFT" in meta_text, meta_text
    assert re.search(r"\$\d+\.\d{6}\b", meta_text), meta_text
    expect(page.get_by_test_id("stop")).to_be_hidden()
    expect(page.get_by_test_id("send")).to_be_visible()

    # the new conversation is in the URL and at the top of the sidebar, with the server's title
    conv_id = current_conversation_id(page)
    item = page.locator(f"[data-testid=conversation-item][data-id='{conv_id}']")
    expect(item).to_be_visible()
    expect(page.get_by_test_id("conversation-item").first).to_have_attribute("data-id", conv_id)
    stored = api.get(f"/api/conversations/{conv_id}").json()
    expect(item).to_have_text(stored["title"])
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    first_answer_id = stored["messages"][1]["id"]

    # reload: the hash selects the conversation and the messages come back from the server
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    item = page.locator(f"[data-testid=conversation-item][data-id='{conv_id}']")
    expect(item).to_be_visible()
    expect(item).to_have_class(re.compile(r"\bactive\b"))
    expect(page.get_by_test_id("message")).to_have_count(2)
    expect(page.locator("[data-testid=message][data-role=user]")).to_have_text(prompt)
    answer = assistant_messages(page).last
    expect(answer).to_have_attribute("data-id", first_answer_id)
    expect(answer.get_by_test_id("message-meta")).to_contain_text(model)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_ui.png"))

    # Markdown is rendered (and sanitised) from the stored text
    assert answer.get_by_test_id("message-content").locator("script").count() == 0

    # Regenerate replaces the last answer with a new one
    regen = answer.get_by_test_id("regenerate")
    expect(regen).to_be_visible()
    page.evaluate(OBSERVER_JS)
    regen.click()
    expect(assistant_messages(page)).to_have_count(1)
    new_answer = assistant_messages(page).last
    new_answer.get_by_test_id("message-meta").wait_for(timeout=ANSWER_TIMEOUT_MS)
    assert any(o["stop"] for o in page.evaluate("window.__baimoObs"))
    expect(page.get_by_test_id("message")).to_have_count(2)
    expect(new_answer).not_to_have_attribute("data-id", first_answer_id)
    stored = api.get(f"/api/conversations/{conv_id}").json()
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]
    assert stored["messages"][1]["id"] != first_answer_id
    expect(new_answer).to_have_attribute("data-id", stored["messages"][1]["id"])

    # extra looks for a human: narrow screen and dark theme
    page.set_viewport_size({"width": 390, "height": 800})
    page.wait_for_timeout(400)  # let the sidebar finish sliding away
    page.screenshot(path=str(ARTIFACTS / "web_ui_mobile.png"))
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "web_ui_dark.png"))


def test_rename_and_delete(page, server, api):
    uid = uuid.uuid4().hex[:8]
    keep = api.post("/api/conversations", json={"title": f"E2E keep {uid}"}).json()
    doomed = api.post("/api/conversations", json={"title": f"E2E delete {uid}"}).json()

    open_app(page, server)
    item = page.locator(f"[data-testid=conversation-item][data-id='{keep['id']}']")
    expect(item).to_have_text(f"E2E keep {uid}")

    # rename inline: Escape cancels, Enter saves
    item.hover()
    item.get_by_test_id("rename").click()
    field = item.get_by_test_id("rename-input")
    field.fill("never saved")
    field.press("Escape")
    expect(item).to_have_text(f"E2E keep {uid}")

    new_title = f"Renamed {uid}"
    item.hover()
    item.get_by_test_id("rename").click()
    field = item.get_by_test_id("rename-input")
    expect(field).to_have_value(f"E2E keep {uid}")
    field.fill(new_title)
    field.press("Enter")
    expect(item).to_have_text(new_title)
    wait_until(lambda: api.get(f"/api/conversations/{keep['id']}").json()["title"] == new_title)
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    expect(item).to_have_text(new_title)

    # export the open conversation as Markdown and JSON downloads
    item.locator("a").click()
    page.wait_for_url(f"**#/c/{keep['id']}")
    with page.expect_download() as dl:
        page.get_by_test_id("export-markdown").click()
    assert dl.value.suggested_filename.endswith(".md")
    assert new_title in Path(dl.value.path()).read_text(encoding="utf-8")
    with page.expect_download() as dl:
        page.get_by_test_id("export-json").click()
    assert dl.value.suggested_filename.endswith(".json")
    assert json.loads(Path(dl.value.path()).read_text(encoding="utf-8"))["title"] == new_title

    # delete: open it, dismissing the confirm keeps it, accepting removes it
    target = page.locator(f"[data-testid=conversation-item][data-id='{doomed['id']}']")
    target.locator("a").click()
    page.wait_for_url(f"**#/c/{doomed['id']}")
    expect(page.get_by_test_id("conversation-title")).to_have_text(f"E2E delete {uid}")
    page.once("dialog", lambda d: d.dismiss())
    target.hover()
    target.get_by_test_id("delete").click()
    expect(target).to_have_count(1)
    assert api.get(f"/api/conversations/{doomed['id']}").status_code == 200

    messages: list[str] = []
    page.once("dialog", lambda d: (messages.append(d.message), d.accept()))
    target.hover()
    target.get_by_test_id("delete").click()
    expect(target).to_have_count(0)
    assert messages and f"E2E delete {uid}" in messages[0]
    assert api.get(f"/api/conversations/{doomed['id']}").status_code == 404
    expect(page.get_by_test_id("conversation-title")).to_have_text("New chat")
    assert "#/c/" not in page.url
    expect(item).to_have_text(new_title)  # the other one is untouched


def test_stop_keeps_partial_answer_and_search_finds_it(page, server, api):
    uid = uuid.uuid4().hex[:8]
    word = f"quokka{uid}"
    decoy = api.post("/api/conversations", json={"title": f"E2E decoy {uid}"}).json()

    open_app(page, server)
    pick_small_model(page)
    page.get_by_test_id("new-chat").click()
    send(page, f"Tell me a very long story about the {word} planet, with many chapters.")
    answer = assistant_messages(page).last
    page.wait_for_function(
        """() => {
          const m = [...document.querySelectorAll('[data-testid=message][data-role=assistant]')].pop();
          return m && m.classList.contains('streaming')
            && m.querySelector('[data-testid=message-content]').textContent.length > 20;
        }""",
        timeout=ANSWER_TIMEOUT_MS,
    )
    stop = page.get_by_test_id("stop")
    expect(stop).to_be_visible()
    stop.click()
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.get_by_test_id("message-status")).to_have_text(re.compile("stopped", re.I))
    expect(stop).to_be_hidden()
    expect(page.get_by_test_id("send")).to_be_visible()
    partial = answer.get_by_test_id("message-content").inner_text()
    assert partial.strip()

    conv_id = current_conversation_id(page)

    def stored_stop():
        msgs = api.get(f"/api/conversations/{conv_id}").json()["messages"]
        return msgs if msgs and msgs[-1]["role"] == "assistant" else None

    msgs = wait_until(stored_stop)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[-1]["status"] == "stopped"
    assert msgs[-1]["content"].strip()
    # the UI picks up the stored message (its id) once the server has saved it
    expect(answer).to_have_attribute("data-id", msgs[-1]["id"])

    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    answer = assistant_messages(page).last
    expect(answer).to_have_attribute("data-status", "stopped")
    expect(answer.get_by_test_id("message-status")).to_be_visible()
    expect(answer.get_by_test_id("regenerate")).to_be_visible()

    # search is by content: give the conversation a title without the word first
    assert api.patch(f"/api/conversations/{conv_id}", json={"title": f"Story {uid}"}).status_code == 200
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    items = page.get_by_test_id("conversation-item")
    expect(page.locator(f"[data-testid=conversation-item][data-id='{decoy['id']}']")).to_be_visible()

    search = page.get_by_test_id("search")
    search.fill(word)
    expect(items).to_have_count(1)
    expect(items.first).to_have_attribute("data-id", conv_id)
    expect(items.first).to_have_text(f"Story {uid}")

    search.fill(f"nothing-matches-{uid}")
    expect(items).to_have_count(0)
    expect(page.locator("#conv-status")).to_have_text("No matching conversations")

    search.fill("")
    expect(page.locator(f"[data-testid=conversation-item][data-id='{decoy['id']}']")).to_be_visible()
    expect(page.locator(f"[data-testid=conversation-item][data-id='{conv_id}']")).to_be_visible()


def test_api_key_prompt_on_401(page, server):
    """A 401 opens the key dialog; the key is stored and sent on every later request."""
    seen_auth: list[str | None] = []

    def models(route, request):
        auth = request.headers.get("authorization")
        seen_auth.append(auth)
        if auth != "Bearer sk-e2e-test":
            body = {
                "error": {
                    "message": "Invalid API key",
                    "type": "authentication_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            }
            route.fulfill(status=401, content_type="application/json", body=json.dumps(body))
        else:
            route.continue_()

    page.route("**/v1/models", models)
    page.goto(server.url + "/")
    dialog = page.get_by_test_id("api-key-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("api-key-input").fill("sk-e2e-test")
    page.get_by_test_id("api-key-save").click()
    expect(dialog).to_be_hidden()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    expect(page.get_by_test_id("model-picker").locator("option").first).not_to_have_text(
        re.compile("Loading|unavailable")
    )
    assert page.evaluate("localStorage.getItem('baimo.apiKey')") == "sk-e2e-test"
    assert seen_auth[0] is None and seen_auth[-1] == "Bearer sk-e2e-test"

    # after a reload the stored key goes out with the first request
    with page.expect_request("**/api/conversations?*") as req:
        page.reload()
    assert req.value.headers.get("authorization") == "Bearer sk-e2e-test"
    expect(dialog).to_be_hidden()
