"""Bad input against a real server: schemathesis over every route of /openapi.json (coverage, fuzzing and stateful
phases, bounded), oversized bodies, invalid UTF-8, 100,000-level JSON, and hostile uploads (ZIP bombs wearing
DOCX/XLSX/EPUB suffixes, a 10,000-page PDF): a clear 4xx or a per-file failure, nothing stored half-way, the
server's memory bounded."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docx
import httpx
import openpyxl
import pytest
from ebooklib import epub

from tests.support.hostile_files import many_page_pdf, zip_bomb
from tests.support.remote import remote
from tests.support.resources import rss_mib
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
ADMIN = "sk-admin-reliability-0123456789"
AUTH = {"authorization": f"Bearer {ADMIN}"}
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# Seconds of fuzzing in CI; the README's figures come from longer runs (BAIMO_FUZZ_SECONDS=600).
FUZZ_SECONDS = int(os.environ.get("BAIMO_FUZZ_SECONDS", "15"))


@pytest.fixture(scope="module")
def clean_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    """A server whose only model is healthy, so that any 5xx is Baimo's own fault; auth on with an admin key."""
    with ScriptedUpstream({"good": Behaviour.ok("Fine.")}, record=False) as up, \
            BaimoServer(tmp_path_factory.mktemp("bad-input"), "default_model: good\nmodels:\n"
                        + remote("good", "good", up.base_url), env={"BAIMO_ADMIN_KEY": ADMIN}) as s:
        yield s


def schemathesis(server: BaimoServer, seconds: int, *selection: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCHEMATHESIS, "run", server.url + "/openapi.json", "--phases", "examples,coverage,fuzzing,stateful",
         "--checks", "not_a_server_error", "--max-examples", "5", "--max-time", str(seconds), "--seed", "11",
         "--workers", "1", "--request-timeout", "60", "-H", f"Authorization: Bearer {ADMIN}", "--no-color",
         *selection],
        capture_output=True, text=True, timeout=seconds + 120)


def test_schemathesis_finds_no_server_error(clean_server: BaimoServer) -> None:
    """Every route with generated valid and invalid input: no 5xx. The key routes run last and alone: the stateful
    phase would otherwise find the admin key through GET /api/keys and rotate it away from under the run."""
    keys = "^/api/keys/"
    rest = schemathesis(clean_server, FUZZ_SECONDS * 4 // 5, "--exclude-path-regex", keys)
    assert rest.returncode == 0, rest.stdout[-6000:]
    assert "Authentication failed" not in rest.stdout, rest.stdout[-3000:]  # the routes were really reached
    own = schemathesis(clean_server, max(5, FUZZ_SECONDS // 5), "--include-path-regex", keys)
    assert own.returncode == 0, own.stdout[-6000:]
    print(rest.stdout[-1200:], own.stdout[-600:])  # the summaries (cases generated, phases), shown with -s
    assert httpx.get(clean_server.url + "/readyz").status_code == 200


def post_raw(server: BaimoServer, path: str, content: bytes, **headers: str) -> httpx.Response:
    return httpx.post(server.url + path, content=content, timeout=60,
                      headers={"content-type": "application/json", **AUTH, **headers})


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/api/conversations",
                                  "/api/knowledge", "/api/personas"])
def test_unreadable_json_bodies_are_400(clean_server: BaimoServer, path: str) -> None:
    deep_array = b"[" * 100_000 + b"]" * 100_000
    deep_object = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    bad_utf8 = b'{"model": "good", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}'
    truncated = b'{"model": "good", "messages": [{"role": "us'
    for body in (deep_array, deep_object, bad_utf8, truncated):
        r = post_raw(clean_server, path, body)
        assert r.status_code == 400, (body[:30], r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json", error


def test_oversized_bodies_are_413_with_or_without_a_length(clean_server: BaimoServer) -> None:
    big = b'{"model": "good", "messages": [{"role": "user", "content": "' + b"a" * (9 << 20) + b'"}]}'
    r = post_raw(clean_server, "/v1/chat/completions", big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while the body streams in
        for i in range(0, len(big), 1 << 20):
            yield big[i:i + (1 << 20)]

    r = httpx.post(clean_server.base_url + "/chat/completions", content=chunks(), timeout=60,
                   headers={"content-type": "application/json", **AUTH})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


def office_files(tmp: Path) -> dict[str, tuple[bytes, str]]:
    """Small valid DOCX, XLSX and EPUB files and the XML part of each that a bomb inflates."""
    d = docx.Document()
    d.add_paragraph("A harmless paragraph.")
    b_docx = io.BytesIO()
    d.save(b_docx)
    wb = openpyxl.Workbook()
    wb.active["A1"] = "harmless"
    b_xlsx = io.BytesIO()
    wb.save(b_xlsx)
    book = epub.EpubBook()
    book.set_identifier("bomb")
    book.set_title("Bomb")
    chapter = epub.EpubHtml(title="One", file_name="one.xhtml", content="<h1>One</h1><p>Harmless.</p>")
    book.add_item(chapter)
    book.spine = [chapter]
    book.add_item(epub.EpubNcx())
    epub.write_epub(str(tmp / "b.epub"), book)
    return {"bomb.docx": (b_docx.getvalue(), "word/document.xml"),
            "bomb.xlsx": (b_xlsx.getvalue(), "xl/worksheets/sheet1.xml"),
            "bomb.epub": ((tmp / "b.epub").read_bytes(), "EPUB/one.xhtml")}


def test_hostile_uploads_fail_per_file_store_nothing_and_keep_memory_bounded(clean_server: BaimoServer,
                                                                             tmp_path: Path) -> None:
    api = httpx.Client(base_url=clean_server.url, headers=AUTH, timeout=120)
    assert api.post("/api/knowledge", json={"name": "hostile"}).status_code == 201
    hostile = {name: zip_bomb(data, member) for name, (data, member) in office_files(tmp_path).items()}
    hostile["huge.pdf"] = many_page_pdf(10_000)
    r = api.post("/api/knowledge/hostile/documents", params={"wait": "true"},
                 files={"files": ("first.md", b"# First\n\nLoads the embedder before memory is measured.")})
    assert r.status_code == 200 and r.json()["report"]["added"] == ["first.md"], r.text
    pid = clean_server.proc.pid
    rss_before = rss_mib(pid)

    for name, data in hostile.items():  # one file: a 422 naming it and the reason
        r = api.post("/api/knowledge/hostile/documents", files={"files": (name, data)})
        assert r.status_code == 422, (name, r.text)
        message = r.json()["error"]["message"]
        assert message.startswith(name) and ("ZIP bomb" in message or "10000 pages" in message), message

    files = [("files", (n, d)) for n, d in hostile.items()] + [("files", ("fine.md", b"# Fine\n\nA fine text."))]
    r = api.post("/api/knowledge/hostile/documents", params={"wait": "true"}, files=files)
    assert r.status_code == 200, r.text
    report = r.json()["report"]
    assert report["added"] == ["fine.md"]
    assert sorted(f["source"] for f in report["failed"]) == sorted(hostile)
    stored = sorted(d["source"] for d in api.get("/api/knowledge/hostile/documents").json()["data"])
    assert stored == ["fine.md", "first.md"]  # nothing of the hostile files, not even a catalogue row
    grown = rss_mib(pid) - rss_before
    # the uploads themselves are ~10 MB; an unguarded DOCX bomb of 256 MiB added ~510 MiB (measured with the guard off)
    assert grown < 100, f"server RSS grew by {grown:.0f} MiB"
