"""Keys and teams through the real server with `auth: required`: the admin key printed once at first start, the
admin API and page, model-restricted keys, rotation and revocation, and the `baimo keys`/`baimo teams` CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.support.server import BaimoServer
from tests.support.upstream import ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
PRINTED = re.compile(r"created admin key (bm-\S+)")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({}) as u:
        yield u


@pytest.fixture(scope="module")
def server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    models = "".join(f"  - id: remote/{m}\n    kind: openai\n    base_url: {upstream.base_url}\n"
                     f"    upstream_model: ok\n    on_premises: true\n" for m in ("a", "b"))
    config = f"auth:\n  mode: required\n  trusted_header: X-Forwarded-User\ndefault_model: remote/a\nmodels:\n{models}"
    with BaimoServer(tmp_path_factory.mktemp("keys-admin"), config) as s:
        yield s


@pytest.fixture(scope="module")
def admin_key(server: BaimoServer) -> str:
    found = PRINTED.findall(server.log())
    assert len(found) == 1, server.log()
    return found[0]


def http(server: BaimoServer, key: str | None) -> httpx.Client:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def wait_status(client: httpx.Client, path: str, status: int) -> None:
    deadline = time.monotonic() + 10
    while (code := client.get(path).status_code) != status:
        assert time.monotonic() < deadline, f"{path} stayed {code}, expected {status}"
        time.sleep(0.2)


def test_required_auth_prints_one_admin_key_that_manages_keys(server: BaimoServer, admin_key: str) -> None:
    with http(server, None) as anonymous:
        r = anonymous.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with http(server, admin_key) as admin:
        me = admin.get("/api/me").json()
        assert me["is_admin"] and me["auth"] is True and admin_key not in json.dumps(me)
        r = admin.post("/api/keys", json={"name": "carol", "team": "ops"})
        assert r.status_code == 201 and r.json()["key"].startswith("bm-") and r.json()["team"] == "ops"
        listed = admin.get("/api/keys").json()["data"]
        assert {k["name"] for k in listed} >= {"admin", "carol"}
        assert all("key" not in k and "key_hash" not in k for k in listed)  # secrets are never listed
        assert r.json()["key"] not in json.dumps(listed)
        teams = admin.get("/api/teams").json()["data"]
        assert [(t["name"], t["keys"]) for t in teams] == [("ops", 1)]
        r = admin.post("/api/teams", json={"name": "ops"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "name"
        r = admin.post("/api/keys", json={"name": "x", "models": ["remote/nope"]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_a_key_restricted_to_some_models_sees_only_those(server: BaimoServer, admin_key: str) -> None:
    with http(server, admin_key) as admin:
        secret = admin.post("/api/keys", json={"name": "narrow", "models": ["remote/a"]}).json()["key"]
    client = openai.OpenAI(base_url=server.base_url, api_key=secret, max_retries=0)
    assert [m.id for m in client.models.list()] == ["remote/a"]
    reply = client.chat.completions.create(model="remote/a", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    for model in ("remote/b", "remote/missing"):  # allowed-but-hidden and missing answer the same
        with pytest.raises(openai.NotFoundError) as exc:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert exc.value.body["code"] == "model_not_found"
        assert exc.value.body["message"] == f"The model '{model}' does not exist"
    with pytest.raises(openai.NotFoundError) as exc:
        client.completions.create(model="remote/b", prompt="hi", max_tokens=2)
    assert exc.value.body["message"] == "The model 'remote/b' does not exist"
    for embedder in ("local/multilingual-use", "local/missing"):
        with pytest.raises(openai.NotFoundError) as exc:
            client.embeddings.create(model=embedder, input="hi")
        assert exc.value.body["message"] == f"The embedding model '{embedder}' does not exist"
    with http(server, secret) as narrow:
        assert narrow.get("/v1/models/remote/b").status_code == 404
        r = narrow.get("/api/keys")
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_rotation_and_revocation_take_effect(server: BaimoServer, admin_key: str) -> None:
    with http(server, admin_key) as admin:
        created = admin.post("/api/keys", json={"name": "rotor"}).json()
        rotated = admin.post(f"/api/keys/{created['id']}/rotate").json()
        assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
        with http(server, created["key"]) as old, http(server, rotated["key"]) as new:
            wait_status(old, "/v1/models", 401)
            assert new.get("/v1/models").status_code == 200
            assert admin.delete(f"/api/keys/{created['id']}").json()["revoked"] is True
            wait_status(new, "/v1/models", 401)


def test_cli_creates_lists_rotates_and_revokes(server: BaimoServer) -> None:
    env = {**server.env}

    def baimo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BAIMO, *args], env=env, capture_output=True, text=True, timeout=60)

    out = baimo("keys", "create", "--name", "dave", "--team", "ops", "--models", "remote/b", "--json")
    assert out.returncode == 0, out.stderr
    assert "created admin key" not in out.stderr  # the CLI starts the same state: an admin key exists, none made
    created = json.loads(out.stdout)
    assert (created["team"], created["models"], created["user"]) == ("ops", ["remote/b"], "dave")
    rotated = json.loads(baimo("keys", "rotate", "dave", "--json").stdout)
    assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
    with http(server, rotated["key"]) as dave:
        assert [m["id"] for m in dave.get("/v1/models").json()["data"]] == ["remote/b"]
        assert dave.get("/api/me").json()["team"] == "ops"
    bad = baimo("keys", "create", "--name", "x", "--models", "remote/nope")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: The model 'remote/nope' does not exist"

def test_admin_page_creates_a_key_shown_once_and_revokes_it(page, server: BaimoServer, admin_key: str) -> None:
    page.goto(server.url + "/admin")
    page.get_by_test_id("api-key-input").fill(admin_key)
    page.get_by_test_id("api-key-save").click()
    page.get_by_test_id("key-name").fill("erin")
    page.get_by_test_id("key-team").fill("web")
    page.get_by_test_id("key-create").click()
    expect(page.get_by_test_id("secret")).to_have_text(re.compile(r"^bm-"))
    secret = page.get_by_test_id("secret").inner_text()
    assert secret.startswith("bm-")
    row = page.locator("[data-testid=keys-table] tr[data-key=erin]")
    assert "web" in row.inner_text() and secret not in page.get_by_test_id("keys-table").inner_text()
    with http(server, secret) as erin:
        assert erin.get("/api/me").json()["team"] == "web"
        page.get_by_test_id("revoke-erin").click()
        page.locator("[data-testid=keys-table] tr[data-key=erin] >> text=revoked").wait_for()
        wait_status(erin, "/api/me", 401)
    page.reload()  # the secret is never shown again
    page.get_by_test_id("keys-table").wait_for()
    assert secret not in page.content()


def test_a_trusted_proxy_header_signs_users_in(server: BaimoServer, admin_key: str) -> None:
    with httpx.Client(base_url=server.url, headers={"x-forwarded-user": "zoe"}, timeout=30) as zoe, \
            httpx.Client(base_url=server.url, headers={"x-forwarded-user": "yan"}, timeout=30) as yan:
        me = zoe.get("/api/me").json()
        assert (me["user"], me["owner"], me["is_admin"]) == ("zoe", "user:zoe", False)
        conv = zoe.post("/api/conversations", json={"title": "zoe's"}).json()
        assert zoe.get(f"/api/conversations/{conv['id']}").status_code == 200
        assert yan.get(f"/api/conversations/{conv['id']}").status_code == 404
        assert zoe.get("/api/keys").status_code == 403
        with http(server, admin_key) as admin:
            assert admin.delete("/api/keys/sso:zoe").json()["user"] == "zoe"
        wait_status(zoe, "/api/me", 401)
        assert yan.get("/api/me").status_code == 200
