"""Browser test of the Evaluation page (/eval): a real `baimo eval run` of three scripted remote models (right and
paid, wrong and free, wrong and dear) is listed, and its report shows the cost–quality frontier with the Pareto
front named; `baimo eval compare` reads the same stored run."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.support.browser import ARTIFACTS
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
MODELS = {"strong": (Behaviour.ok("The answer is 42."), 5.0), "free": (Behaviour.ok("The answer is 41."), 0.0),
          "dear": (Behaviour.ok("The answer is 40."), 20.0)}


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({name: b for name, (b, _) in MODELS.items()}) as up:
        yield up


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, upstream: ScriptedUpstream) -> Iterator[BaimoServer]:
    models = "".join(f"  - id: remote/{name}\n    kind: openai\n    base_url: {upstream.base_url}\n"
                     f"    upstream_model: {name}\n    price_input: {price}\n    price_output: {price}\n"
                     for name, (_, price) in MODELS.items())
    config = f"default_model: remote/strong\nprivacy: {{mode: 'off'}}\nmodels:\n{models}"
    with BaimoServer(tmp_path_factory.mktemp("eval-web"), config) as server:
        yield server


@pytest.fixture(scope="module")
def run_id(server: BaimoServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    suite = tmp_path_factory.mktemp("suite") / "sixtimesseven.jsonl"
    suite.write_text("\n".join([json.dumps({"suite": {"name": "sixtimesseven", "kind": "numeric", "license": "MIT"}}),
                                *(json.dumps({"id": f"q{i}", "question": f"Q{i}: six times seven?", "answer": 42})
                                  for i in range(6))]) + "\n")
    out = subprocess.run([BAIMO, "eval", "run", str(suite), "--models", "remote/strong,remote/free,remote/dear",
                          "--json"], env=server.env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["run_id"]


def test_the_evaluation_page_lists_the_run_and_shows_its_frontier(page, server, run_id) -> None:
    page.goto(server.url + "/")
    page.get_by_test_id("eval-link").click()
    page.wait_for_function("document.body.dataset.ready === 'true'")
    row = page.locator(f"[data-testid=run-row][data-run='{run_id}']")
    expect(row).to_contain_text("sixtimesseven")
    expect(row).to_contain_text("remote/strong, remote/free, remote/dear")
    row.click()
    frame = page.frame_locator("[data-testid=eval-report]")
    svg = frame.locator("[data-testid=frontier] svg")
    expect(svg).to_be_visible(timeout=60_000)  # the server's first report imports matplotlib
    front = svg.locator("text", has_text="★")
    expect(front).to_have_count(2)
    assert sorted(t.strip() for t in front.all_text_contents()) == ["★ remote/free", "★ remote/strong"]
    expect(frame.locator("tr.front")).to_have_count(2)  # remote/dear (wrong and dearest) is dominated
    expect(frame.locator("tr[data-target='remote/dear']")).to_contain_text("0.0 % [0.0, 39.0]")
    assert page.url.endswith(f"#/run/{run_id}")
    page.screenshot(path=str(ARTIFACTS / "eval.png"), full_page=True)


def test_compare_reads_a_stored_run_and_a_run_json(server, run_id, tmp_path: Path) -> None:
    stored = httpx.get(f"{server.url}/api/eval/runs/{run_id}").json()
    assert stored["run_id"] == run_id and len(stored["items"]) == 18
    # the later run: the same run JSON with remote/strong's answers all turned wrong
    for item in stored["items"]:
        if item["target"] == "remote/strong":
            item["correct"] = False
    (tmp_path / "b.json").write_text(json.dumps({**stored, "run_id": "b"}))
    out = subprocess.run([BAIMO, "eval", "compare", run_id, str(tmp_path / "b.json"), "--json"],
                         env=server.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    by = {t["target"]: t for t in json.loads(out.stdout)["targets"]}
    assert (by["remote/strong"]["lost"], by["remote/strong"]["p_value"]) == (6, pytest.approx(2 * 0.5 ** 6))
    assert by["remote/strong"]["direction"] == "worse" and by["remote/free"]["direction"] == "same"
