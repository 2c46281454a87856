"""Browser tests of response feedback (thumbs up/down), the router-aware model picker and the usage page (/usage).

Same setup as tests/e2e/test_web_ui.py: the real `baimo serve` from the `server` fixture with SmolLM2-135M,
driven through Debian chromium with Playwright. SmolLM2 is not routed, so feedback is accepted but records
no routing outcome (`outcome_recorded` is false).
"""

from __future__ import annotations

import copy
import json
import re

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
)

pytestmark = pytest.mark.e2e

SMALL = "local/smollm2-135m"


def wait_ready(page) -> None:
    page.wait_for_function("document.body.dataset.ready === 'true'")


def vote(page, button, rating: str) -> dict:
    """Clicks a thumbs button; returns the POST /api/feedback request body and response."""
    with page.expect_response(lambda r: r.url.endswith("/api/feedback") and r.request.method == "POST") as info:
        button.click()
    response = info.value
    assert response.status == 200, response.text()
    sent = response.request.post_data_json
    assert sent["rating"] == rating
    return {"sent": sent, "body": response.json()}


def test_feedback_then_usage_page(page, server, api):
    open_app(page, server)
    assert pick_small_model(page) == SMALL
    send(page, "Name three colours of the rainbow.")
    answer = assistant_messages(page).last
    meta = answer.get_by_test_id("message-meta")
    meta.wait_for(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_attribute("data-status", "complete")

    # the stored message carries the response id the buttons rate; the route is the meta line's tooltip
    conv_id = current_conversation_id(page)
    stored = api.get(f"/api/conversations/{conv_id}").json()["messages"][-1]
    assert stored["role"] == "assistant" and stored["response_id"]
    response_id = stored["response_id"]
    expect(answer).to_have_attribute("data-response-id", response_id)
    expect(meta).to_contain_text(SMALL)
    if stored.get("route"):
        expect(meta).to_have_attribute("title", f"Route: {stored['route']}")
        assert SMALL in meta.get_attribute("title")

    up = answer.get_by_test_id("thumbs-up")
    down = answer.get_by_test_id("thumbs-down")
    expect(up).to_be_visible()
    expect(down).to_be_visible()
    expect(up).to_have_attribute("aria-pressed", "false")
    expect(down).to_have_attribute("aria-pressed", "false")
    # the user's own message has no rating buttons
    assert page.locator("[data-testid=message][data-role=user] [data-testid^=thumbs]").count() == 0

    # thumbs down: POST /api/feedback succeeds, the button shows as pressed
    result = vote(page, down, "down")
    assert result["sent"] == {"response_id": response_id, "rating": "down"}
    assert result["body"]["response_id"] == response_id
    assert result["body"]["model"] == SMALL
    assert result["body"]["score"] == 0.0
    assert result["body"]["outcome_recorded"] is False  # SmolLM2 is not behind a router
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")

    # change of mind: thumbs up is sent again, then back to thumbs down
    assert vote(page, up, "up")["body"]["score"] == 1.0
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    vote(page, down, "down")
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")

    # a failed POST shows a toast and keeps the previous vote
    def reject(route, request):
        body = {"error": {"message": "feedback store offline", "type": "server_error", "param": None, "code": None}}
        route.fulfill(status=503, content_type="application/json", body=json.dumps(body))

    page.route("**/api/feedback", reject)
    up.click()
    expect(page.get_by_test_id("toast").filter(has_text="feedback store offline")).to_be_visible()
    expect(down).to_have_attribute("aria-pressed", "true")
    expect(up).to_have_attribute("aria-pressed", "false")
    page.unroute("**/api/feedback")
    page.evaluate("document.getElementById('toasts').replaceChildren()")

    # the vote survives a reload (remembered in localStorage by response id)
    assert json.loads(page.evaluate("localStorage.getItem('baimo.feedback')")) == {response_id: "down"}
    page.reload()
    wait_ready(page)
    answer = assistant_messages(page).last
    expect(answer.get_by_test_id("thumbs-down")).to_have_attribute("aria-pressed", "true")
    expect(answer.get_by_test_id("thumbs-up")).to_have_attribute("aria-pressed", "false")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    answer.get_by_test_id("thumbs-down").hover()
    page.screenshot(path=str(ARTIFACTS / "feedback.png"))

    # the sidebar links to the usage page
    page.get_by_test_id("usage-link").click()
    page.wait_for_url("**/usage")
    wait_ready(page)
    usage = api.get("/api/usage").json()

    table = page.get_by_test_id("usage-table")
    expect(table).to_be_visible()
    rows = table.get_by_test_id("usage-row")
    expect(rows).to_have_count(len(usage["by_model"]))
    row = table.locator(f"[data-testid=usage-row][data-model='{SMALL}']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(SMALL)
    requests = int(row.locator("td").nth(1).inner_text().replace(",", ""))
    assert requests >= 1
    assert requests == next(r["requests"] for r in usage["by_model"] if r["model"] == SMALL)
    expect(row.locator(".share-fill")).to_have_count(1)
    expect(row).to_contain_text("%")

    chart = page.get_by_test_id("usage-chart")
    expect(chart).to_be_visible()
    assert chart.evaluate("n => n.tagName.toLowerCase()") == "svg"
    bars = chart.locator("rect.bar")
    assert bars.count() >= 1
    assert page.locator(f"[data-testid=usage-chart] rect.bar[data-model='{SMALL}']").count() >= 1
    height = float(bars.first.get_attribute("height"))
    assert height > 0
    expect(page.get_by_test_id("usage-legend")).to_contain_text(SMALL)

    totals = usage["totals"]
    expect(page.get_by_test_id("total-requests")).to_have_text(f"{totals['requests']:,}")
    saving = page.get_by_test_id("saving")
    expect(saving).to_be_visible()
    assert totals["strongest_model"] == SMALL and totals["cost_if_all_to_strongest"] > 0
    expect(saving).to_have_text(re.compile(r"^-?\d+(\.\d)?%$"))
    expect(page.get_by_test_id("baseline-cost")).to_have_text(re.compile(r"^\$\d"))

    recent = page.get_by_test_id("recent-table").get_by_test_id("recent-row")
    expect(recent).to_have_count(min(20, len(usage["recent"])))
    mine = page.locator(f"[data-testid=recent-table] [data-testid=recent-row][data-model='{SMALL}']").first
    expect(mine).to_contain_text(re.compile(r"\d[\d,]* ms|\d+\.\d s"))  # latency: "830 ms" or "11.0 s"
    expect(mine).to_contain_text(re.compile(r"\d+ / \d+"))
    expect(page.get_by_test_id("usage-empty")).to_be_hidden()

    # usage by owner: key by default, then team and persona (the local user has no key, team or persona)
    owners = page.get_by_test_id("owners-panel")
    expect(owners).to_be_visible()
    expect(page.get_by_test_id("owner-by-key")).to_have_attribute("aria-selected", "true")
    for by, none in (("key", "no key (local)"), ("team", "no team"), ("persona", "no persona")):
        report = api.get("/api/usage", params={"by": by}).json()["report"]
        if by != "key":
            with page.expect_response(lambda r, by=by: f"/api/usage?by={by}" in r.url):
                page.get_by_test_id(f"owner-by-{by}").click()
        expect(page.get_by_test_id(f"owner-by-{by}")).to_have_attribute("aria-selected", "true")
        rows = owners.get_by_test_id("owner-row")
        expect(rows).to_have_count(len(report["data"]))
        local = next(r for r in report["data"] if r["key"] is None)
        row = owners.locator(f"[data-testid=owner-row][data-owner='{none}']")
        expect(row.locator("td").nth(1)).to_have_text(f"{local['requests']:,}")
        bar = owners.locator(f"[data-testid=owner-bar][data-owner='{none}']")
        assert int(bar.get_attribute("data-requests")) == local["requests"]
        assert float(bar.get_attribute("height")) > 0

    page.screenshot(path=str(ARTIFACTS / "usage.png"), full_page=True)
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(ARTIFACTS / "usage_dark.png"), full_page=True)
    page.emulate_media(color_scheme="light")

    # and back to the chat
    page.get_by_test_id("chat-link").click()
    page.wait_for_url(re.compile(r"/(#.*)?$"))
    wait_ready(page)


def test_router_picker_and_empty_usage(page, server):
    """Routers from /v1/models are grouped apart from models; /usage on an empty database says so."""

    def with_router(route, request):
        listing = route.fetch().json()
        router = copy.deepcopy(next(m for m in listing["data"] if m["id"] == SMALL))
        router["id"] = "baimo/e2e-router"
        router["baimo"] = {"kind": "router", "strategy": "rules", "description": "test router",
                           "candidates": [SMALL], "default": False}
        listing["data"].append(router)
        route.fulfill(status=200, content_type="application/json", body=json.dumps(listing))

    page.route("**/v1/models", with_router)
    open_app(page, server)
    picker = page.get_by_test_id("model-picker")
    groups = picker.locator("optgroup")
    expect(groups).to_have_count(2)
    assert groups.evaluate_all("gs => gs.map(g => g.label)") == ["Routers", "Models"]
    routers = groups.nth(0).locator("option").evaluate_all("os => os.map(o => o.value)")
    models = groups.nth(1).locator("option").evaluate_all("os => os.map(o => o.value)")
    assert routers == ["baimo/e2e-router"]
    assert SMALL in models and "baimo/e2e-router" not in models
    assert not any("e5" in m for m in models)  # embedders cannot chat
    assert "rules" in groups.nth(0).locator("option").first.get_attribute("title")
    picker.select_option("baimo/e2e-router")
    assert picker.input_value() == "baimo/e2e-router"
    page.unroute("**/v1/models")

    empty = {"by_model": [], "by_day": [], "recent": [],
             "totals": {"requests": 0, "cost": 0, "strongest_model": SMALL, "cost_if_all_to_strongest": 0.0}}
    page.route("**/api/usage*", lambda route, request: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(empty)))
    page.goto(server.url + "/usage")
    wait_ready(page)
    expect(page.get_by_test_id("usage-empty")).to_be_visible()
    expect(page.get_by_test_id("usage-empty")).to_contain_text("No usage yet")
    expect(page.get_by_test_id("usage-table")).to_be_hidden()
    expect(page.get_by_test_id("recent-table")).to_be_hidden()
    assert page.get_by_test_id("usage-chart").count() == 0
    expect(page.get_by_test_id("owners-panel")).to_be_hidden()
    expect(page.get_by_test_id("total-requests")).to_have_text("0")
    expect(page.get_by_test_id("saving")).to_have_text("–")
    page.screenshot(path=str(ARTIFACTS / "usage_empty.png"))
