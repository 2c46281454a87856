"""Field cases F18, F19 and F20 (../shared/field-cases): knowledge-base uploads through a real `baimo serve`
(multipart API) and the `baimo kb` CLI as a subprocess.

- F18: files with no text (an image-only PDF, a 0-byte file, a whitespace-only file) are reported by name with
  the reason: a single-file upload is a 422, a batch reports them in the job and indexes the rest, the CLI exits 1
  with the same one line. No document is listed with 0 chunks, no job is left running.
- F19: a PDF AES-encrypted with an empty user password is indexed (Baimo depends on `cryptography`); one that
  needs a password is reported by name ("encrypted PDF: password required").
- F20: Unicode file names are kept (listed, searched, cited); traversal and absolute names never write outside
  BAIMO_HOME and are stored under their base name; a name with nothing left gets a generated one; the RFC 5987
  `filename*=` form works; Content-Disposition headers Baimo sends use RFC 6266 `filename*`.

The input files are made by the cases' own `file.make` snippets (below, in functions); the server's only chat model
is a scripted upstream over real HTTP, so citations are exact; retrieval is real (LanceDB, the USE encoder).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.parse
import zlib
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import httpx
import pytest

from baimo.api.filenames import content_disposition, plain_filename
from baimo.knowledge.ingest import upload_source
from tests.support.server import REPO, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")

SCAN_REASON = "no extractable text: image-only/scanned PDF, OCR found no text"
EMPTY_REASON = "empty file"
BLANK_REASON = "no extractable text: the file contains only whitespace"
PASSWORD_REASON = "encrypted PDF: password required"
UNICODE_NAME = "报告 – été 😀.md"
GOOD_MD = "# Heron sightings\n\nThe grey heron was seen at the north pond on Tuesday.\n"


# --- the cases' `file.make` snippets ------------------------------------------------------------------------------

def _pdf(objs: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offs = []
    for i, body in enumerate(objs, 1):
        offs.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    x = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offs)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, x)
    return bytes(out)


def _stream(s: bytes, extra: bytes = b"") -> bytes:
    return b"<< " + extra + b"/Length %d >>\nstream\n" % len(s) + s + b"\nendstream"


CAT = b"<< /Type /Catalog /Pages 2 0 R >>"
PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"


def make_f18(folder: Path) -> None:
    w, h = 400, 100
    rows = b"".join(b"\x00" + bytes(0 if (y // 10) % 2 and (x // 7) % 3 else 255 for x in range(w)) for y in range(h))
    img = zlib.compress(rows)
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /XObject << "
            b"/Im1 5 0 R >> >> >>")
    imgobj = _stream(img, b"/Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                          b"/BitsPerComponent 8 /Filter /FlateDecode /DecodeParms << /Predictor 15 /Colors 1 "
                          b"/BitsPerComponent 8 /Columns %d >> " % (w, h, w))
    content = _stream(b"q %d 0 0 %d 72 600 cm /Im1 Do Q" % (w, h))
    (folder / "scan_no_text.pdf").write_bytes(_pdf([CAT, PAGES, page, content, imgobj]))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("\n\n   \n")


def _text_pdf(text: str) -> bytes:
    s = b"BT /F1 14 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << "
            b"/F1 5 0 R >> >> >>")
    return _pdf([CAT, PAGES, page, _stream(s), b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"])


def make_f19(folder: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    (folder / "plain.pdf").write_bytes(_text_pdf("The secret word is pelican."))
    for name, upw in (("secured_nopw.pdf", ""), ("secured_pw.pdf", "secret")):
        w = PdfWriter(clone_from=PdfReader(io.BytesIO((folder / "plain.pdf").read_bytes())))
        w.encrypt(user_password=upw, owner_password="owner-only", algorithm="AES-256")
        w.write(folder / name)


def make_f20(folder: Path) -> None:
    (folder / "report.md").write_text("# 季度报告\nThe code word is heron.\n", encoding="utf-8")


TRAVERSAL_NAMES = ["../../../../tmp/baimo_traversal.md", "..\\..\\baimo_traversal2.md", "/etc/baimo_abs.md"]


# --- fixtures and helpers -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("field-case-files")
    make_f18(folder)
    make_f19(folder)
    make_f20(folder)
    return folder


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({"citer": Behaviour.ok("The code word is heron [1].")}) as u:
        yield u


@pytest.fixture(scope="module")
def kb_server(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    config = (f"default_model: remote/citer\nmodels:\n  - id: remote/citer\n    kind: openai\n"
              f"    base_url: {upstream.base_url}\n    upstream_model: citer\n")
    with BaimoServer(tmp_path_factory.mktemp("kb-field-cases"), config) as s:
        yield s


def cli(server: BaimoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAIMO_HOME": str(server.home)}
    return subprocess.run([BAIMO, *args], capture_output=True, text=True, env=env, timeout=180)


def create_kb(server: BaimoServer, name: str) -> str:
    r = httpx.post(f"{server.url}/api/knowledge", json={"name": name})
    assert r.status_code == 201, r.text
    return f"{server.url}/api/knowledge/{name}"


def upload(kb: str, parts: list[tuple[str, bytes]], *, wait: bool = True) -> httpx.Response:
    r = httpx.post(f"{kb}/documents", params={"wait": "true"} if wait else None, timeout=120,
                   files=[("files", (name, data, "application/octet-stream")) for name, data in parts])
    assert r.status_code < 500, r.text
    return r


def raw_upload(kb: str, disposition: bytes, data: bytes) -> httpx.Response:
    """One part with exactly this Content-Disposition (httpx's `files=` would write its own)."""
    boundary = "baimo-field-case-7d1f"
    body = (f"--{boundary}\r\n".encode() + b"Content-Disposition: " + disposition
            + b"\r\nContent-Type: text/markdown\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    r = httpx.post(f"{kb}/documents", params={"wait": "true"}, content=body, timeout=120,
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code < 500, r.text
    return r


def finished(server: BaimoServer, job: dict) -> dict:
    deadline = time.monotonic() + 120
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.1)
        job = httpx.get(f"{server.url}/api/knowledge-jobs/{job['id']}").json()
    return job


def documents(kb: str) -> dict[str, dict]:
    docs = httpx.get(f"{kb}/documents").json()["data"]
    assert all(d["chunks"] > 0 for d in docs), docs  # never a document listed with 0 chunks
    return {d["source"]: d for d in docs}


def search(kb: str, query: str) -> list[dict]:
    r = httpx.post(f"{kb}/search", json={"query": query, "k": 10})
    assert r.status_code == 200, r.text
    return r.json()["data"]


# --- F18: no text to index --------------------------------------------------------------------------------------

F18_SINGLES = [("scan_no_text.pdf", SCAN_REASON), ("empty.txt", EMPTY_REASON), ("blank.md", BLANK_REASON)]


@pytest.mark.parametrize("wait", [False, True], ids=["async", "wait"])
@pytest.mark.parametrize(("name", "reason"), F18_SINGLES, ids=[n for n, _ in F18_SINGLES])
def test_f18_single_file_without_text_is_422_naming_it(kb_server: BaimoServer, files: Path, name: str,
                                                       reason: str, wait: bool) -> None:
    kb = create_kb(kb_server, f"f18-{name.replace('.', '-')}-{int(wait)}")
    r = upload(kb, [(name, (files / name).read_bytes())], wait=wait)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["message"] == f"{name}: {reason}"
    assert error["param"] == "files" and error["type"] == "invalid_request_error"
    assert documents(kb) == {}
    # the base stays usable
    assert upload(kb, [("good.md", GOOD_MD.encode())]).json()["report"]["added"] == ["good.md"]
    assert search(kb, "grey heron north pond")[0]["source"] == "good.md"


@pytest.mark.parametrize("wait", [False, True], ids=["async", "wait"])
def test_f18_batch_reports_each_bad_file_and_indexes_the_rest(kb_server: BaimoServer, files: Path,
                                                              wait: bool) -> None:
    kb = create_kb(kb_server, f"f18-batch-{int(wait)}")
    parts = [(n, (files / n).read_bytes()) for n, _ in F18_SINGLES] + [("good.md", GOOD_MD.encode())]
    r = upload(kb, parts, wait=wait)
    assert r.status_code == (200 if wait else 202), r.text
    job = finished(kb_server, r.json())
    assert job["status"] == "done", job
    assert job["report"]["added"] == ["good.md"]
    assert {f["source"]: f["reason"] for f in job["report"]["failed"]} == dict(F18_SINGLES)
    assert list(documents(kb)) == ["good.md"]
    assert search(kb, "grey heron north pond")[0]["source"] == "good.md"


def test_f18_batch_of_only_bad_files_finishes(kb_server: BaimoServer, files: Path) -> None:
    kb = create_kb(kb_server, "f18-all-bad")
    r = upload(kb, [(n, (files / n).read_bytes()) for n, _ in F18_SINGLES], wait=False)
    assert r.status_code == 202, r.text
    job = finished(kb_server, r.json())
    assert job["status"] == "done" and job["report"]["added"] == [] and len(job["report"]["failed"]) == 3
    assert documents(kb) == {}


@pytest.mark.parametrize(("name", "reason"), F18_SINGLES, ids=[n for n, _ in F18_SINGLES])
def test_f18_cli_add_single_file_fails_with_one_line(kb_server: BaimoServer, files: Path, name: str,
                                                     reason: str) -> None:
    kb = f"f18-cli-{name.replace('.', '-')}"
    assert cli(kb_server, "kb", "create", kb).returncode == 0
    r = cli(kb_server, "kb", "add", kb, str(files / name))
    assert r.returncode == 1
    assert r.stderr == f"error: {name}: {reason}\n"
    assert json.loads(cli(kb_server, "kb", "docs", kb, "--json").stdout) == []


def test_f18_cli_add_folder_reports_bad_files_and_adds_the_rest(kb_server: BaimoServer, files: Path,
                                                               tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, _ in F18_SINGLES:
        (folder / name).write_bytes((files / name).read_bytes())
    (folder / "good.md").write_text(GOOD_MD, encoding="utf-8")
    assert cli(kb_server, "kb", "create", "f18-cli-folder").returncode == 0
    r = cli(kb_server, "kb", "add", "f18-cli-folder", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["added"] == ["good.md"]
    assert {f["source"]: f["reason"] for f in report["failed"]} == dict(F18_SINGLES)
    docs = json.loads(cli(kb_server, "kb", "docs", "f18-cli-folder", "--json").stdout)
    assert [(d["source"], d["chunks"] > 0) for d in docs] == [("good.md", True)]


# --- F19: encrypted PDFs ----------------------------------------------------------------------------------------

def test_f19_cryptography_is_a_runtime_dependency() -> None:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    assert any(re.match(r"cryptography\b", d) for d in deps), deps
    import cryptography  # noqa: F401 - installed with Baimo, so pypdf can decrypt AES


@pytest.mark.parametrize("name", ["plain.pdf", "secured_nopw.pdf"])
def test_f19_pdf_with_empty_user_password_is_indexed(kb_server: BaimoServer, files: Path, name: str) -> None:
    kb_name = f"f19-{name.split('.')[0].replace('_', '-')}"
    kb = create_kb(kb_server, kb_name)
    r = upload(kb, [(name, (files / name).read_bytes())])
    assert r.status_code == 200, r.text
    assert r.json()["report"]["added"] == [name] and r.json()["report"]["failed"] == []
    assert documents(kb)[name]["format"] == "pdf"
    r = cli(kb_server, "kb", "search", kb_name, "pelican", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)
    assert hits[0]["source"] == name and "pelican" in hits[0]["text"]


def test_f19_password_protected_pdf_is_reported_by_name(kb_server: BaimoServer, files: Path) -> None:
    kb = create_kb(kb_server, "f19-locked")
    data = (files / "secured_pw.pdf").read_bytes()
    r = upload(kb, [("secured_pw.pdf", data)])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"] == f"secured_pw.pdf: {PASSWORD_REASON}"
    # in a batch: reported in the job, the other PDF indexed
    r = upload(kb, [("secured_pw.pdf", data), ("secured_nopw.pdf", (files / "secured_nopw.pdf").read_bytes())])
    assert r.status_code == 200, r.text
    report = r.json()["report"]
    assert report["added"] == ["secured_nopw.pdf"]
    assert report["failed"] == [{"source": "secured_pw.pdf", "reason": PASSWORD_REASON}]
    assert list(documents(kb)) == ["secured_nopw.pdf"]
    # the CLI says the same in one line
    assert cli(kb_server, "kb", "create", "f19-locked-cli").returncode == 0
    r = cli(kb_server, "kb", "add", "f19-locked-cli", str(files / "secured_pw.pdf"))
    assert r.returncode == 1 and r.stderr == f"error: secured_pw.pdf: {PASSWORD_REASON}\n"


# --- F20: file names --------------------------------------------------------------------------------------------

def test_f20_unicode_name_is_listed_searched_and_cited(kb_server: BaimoServer, files: Path) -> None:
    kb = create_kb(kb_server, "f20-unicode")
    r = upload(kb, [(UNICODE_NAME, (files / "report.md").read_bytes())])
    assert r.status_code == 200, r.text
    assert r.json()["report"]["added"] == [UNICODE_NAME]
    assert list(documents(kb)) == [UNICODE_NAME]
    assert search(kb, "heron")[0]["source"] == UNICODE_NAME
    chat = httpx.post(f"{kb_server.url}/v1/chat/completions", timeout=60, json={
        "model": "remote/citer", "messages": [{"role": "user", "content": "What is the code word?"}],
        "knowledge": {"bases": ["f20-unicode"]}})
    assert chat.status_code == 200, chat.text
    cite = chat.json()["citations"][0]
    assert cite["source"] == UNICODE_NAME and cite["cited"]
    # only the text is stored: no file under BAIMO_HOME carries the uploaded name
    assert not [p for p in kb_server.home.rglob("*") if "报告" in p.name]
    # the name works in the document URL
    r = httpx.delete(f"{kb}/documents/{urllib.parse.quote(UNICODE_NAME)}")
    assert r.status_code == 200 and r.json()["source"] == UNICODE_NAME
    assert documents(kb) == {}


@pytest.mark.parametrize("how", ["httpx", "raw"])
@pytest.mark.parametrize("name", TRAVERSAL_NAMES, ids=["dotdot", "backslashes", "absolute"])
def test_f20_traversal_names_stay_inside_and_keep_the_base_name(kb_server: BaimoServer, files: Path, name: str,
                                                                how: str, tmp_path: Path) -> None:
    base_name = re.split(r"[\\/]", name)[-1]
    outside = [Path("/tmp/baimo_traversal.md"), Path("/etc/baimo_abs.md")] + [
        d / "baimo_traversal2.md" for d in (kb_server.home.parent, kb_server.home.parent.parent, Path.cwd().parent,
                                             Path.cwd().parent.parent, tmp_path.parent)]
    assert not any(p.exists() for p in outside), "left over from an earlier run: remove it first"
    kb = create_kb(kb_server, f"f20-{how}-{base_name.split('.')[0].replace('_', '-')}")
    data = (files / "report.md").read_bytes()
    if how == "httpx":
        r = upload(kb, [(name, data)])
    else:  # as curl -F "file=@report.md;filename=..." writes it, backslashes unescaped
        r = raw_upload(kb, b'form-data; name="file"; filename="' + name.encode() + b'"', data)
    assert r.status_code == 200, r.text
    assert r.json()["report"]["added"] == [base_name]
    assert list(documents(kb)) == [base_name]
    assert search(kb, "heron")[0]["source"] == base_name
    assert not any(p.exists() for p in outside)
    assert not [p for p in Path("/tmp").glob("baimo_traversal*")]


def test_f20_name_that_sanitizes_to_nothing_gets_a_generated_one(kb_server: BaimoServer, files: Path) -> None:
    kb = create_kb(kb_server, "f20-nothing")
    data = (files / "report.md").read_bytes()
    r = upload(kb, [(".md", data)])
    assert r.status_code == 200, r.text
    (source,) = r.json()["report"]["added"]
    assert re.fullmatch(r"upload-[0-9a-f]{12}\.md", source), source
    assert search(kb, "heron")[0]["source"] == source
    again = upload(kb, [(".md", data)]).json()["report"]  # the name comes from the content: same file, same name
    assert again["unchanged"] == [source]


@pytest.mark.parametrize(("kb_name", "disposition"), [
    ("f20-star", b"form-data; name=\"file\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.md"),
    ("f20-star-and-plain",
     b"form-data; name=\"files\"; filename=\"fallback.md\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.md"),
    ("f20-star-language", b"form-data; name=files; filename*=utf-8'zh'%E6%8A%A5%E5%91%8A.md"),
])
def test_f20_rfc5987_filename_star(kb_server: BaimoServer, files: Path, kb_name: str, disposition: bytes) -> None:
    kb = create_kb(kb_server, kb_name)
    r = raw_upload(kb, disposition, (files / "report.md").read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["report"]["added"] == ["报告.md"]
    assert search(kb, "heron")[0]["source"] == "报告.md"


def test_f20_upload_errors_are_4xx(kb_server: BaimoServer) -> None:
    kb = create_kb(kb_server, "f20-errors")
    not_a_file = raw_upload(kb, b'form-data; name="files"', b"just text")
    assert not_a_file.status_code == 400 and "not a file" in not_a_file.json()["error"]["message"]
    r = httpx.post(f"{kb}/documents", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]
    r = httpx.post(f"{kb}/documents", content=b"garbage", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400, r.text
    r = upload(kb, [("notes.xyz", b"data")])
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("notes.xyz: unsupported file type .xyz")
    assert httpx.post(f"{kb_server.url}/api/knowledge/nope/documents", files=[("files", ("a.md", b"x"))]).status_code \
        == 404


def test_f20_content_disposition_is_rfc6266(kb_server: BaimoServer) -> None:
    conv = httpx.post(f"{kb_server.url}/api/conversations", json={"title": "报告 – été 😀"}).json()
    for fmt in ("json", "markdown"):
        r = httpx.get(f"{kb_server.url}/api/conversations/{conv['id']}/export", params={"format": fmt})
        assert r.status_code == 200
        value = r.headers["content-disposition"]
        assert value.isascii() and "filename*=UTF-8''" in value
        msg = Message()
        msg["content-disposition"] = value
        assert msg.get_filename() == f"conversation-{conv['id']}.{'json' if fmt == 'json' else 'md'}"
    # any name: the exact name in filename*, an ASCII stand-in in filename
    value = content_disposition(UNICODE_NAME)
    assert value.isascii() and value.encode("latin-1")
    msg = Message()
    msg["content-disposition"] = value
    assert msg.get_params(header="content-disposition")[1] == ("filename", "__ _ ete _.md")
    assert urllib.parse.unquote(value.split("filename*=UTF-8''")[1]) == UNICODE_NAME


@pytest.mark.parametrize(("sent", "source"), [
    ("报告 – été 😀.md", "报告 – été 😀.md"),
    ("sub/notes.md", "sub/notes.md"),  # harmless folders stay, as with `baimo kb add FOLDER`
    ("./sub//notes.md", "sub/notes.md"),
    ("../../../../tmp/baimo_traversal.md", "baimo_traversal.md"),
    ("..\\..\\baimo_traversal2.md", "baimo_traversal2.md"),
    ("/etc/baimo_abs.md", "baimo_abs.md"),
    ("C:\\Users\\ann\\report.md", "report.md"),
    ("sub/../../x.md", "x.md"),
    ("e\u0301te\u0301.md", "été.md"),  # NFD (macOS) and NFC are one name
    ("bad\x00name\r\n.md", "badname.md"),
    (".md", "upload-{sha}.md"),
    ("...", "upload-{sha}"),
    ("", "upload-{sha}"),
    ("/", "upload-{sha}"),
    ("x" * 300 + ".pdf", "x" * 251 + ".pdf"),
])
def test_upload_source_names(sent: str, source: str) -> None:
    import hashlib

    data = b"content"
    assert upload_source(sent, data) == source.format(sha=hashlib.sha256(data).hexdigest()[:12])


def test_plain_filename_leaves_ordinary_headers_alone() -> None:
    plain = 'form-data; name="files"; filename="报告.md"'.encode()
    assert plain_filename(plain) is plain
    assert plain_filename(b'form-data; name="files"; filename*=UTF-8\'\'a%22b.md') == \
        b'form-data; name="files"; filename="a\\"b.md"'
