"""Knowledge base throughput and latency on this CPU: ingest chunks/s, and hybrid query p50/p99 at 10k and 100k.

    .venv/bin/python bench/knowledge.py [--chunks 10000] [--scale 10] [--queries 200]

Ingestion goes through the real path (parse Markdown, chunk, embed with the default multilingual USE encoder,
write to LanceDB, build the full-text index) on documents made from GSM8K's train questions, ten per document
under headings. The 100k-chunk table is the 10k real chunks bulk-added `--scale` times with jittered vectors and
tagged text (embedding 100k chunks would take ~10 minutes and measure the same encoder again); it then gets the
same index maintenance as a real base, including the approximate vector index. A query = embed the question +
BM25 search + vector search + reciprocal rank fusion, exactly as chat retrieval does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import EmbedderConfig, KnowledgeConfig  # noqa: E402
from baimo.embeddings import EmbedderRegistry  # noqa: E402
from baimo.knowledge.bases import KnowledgeService  # noqa: E402
from baimo.knowledge.chunking import chunk_document  # noqa: E402
from baimo.knowledge.ingest import Ingestor, SourceFile  # noqa: E402
from baimo.knowledge.parsing import parse_bytes  # noqa: E402
from baimo.knowledge.retrieval import Retriever  # noqa: E402
from baimo.knowledge.store import ChunkRecord  # noqa: E402
from baimo.store.database import Database  # noqa: E402

GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "eval" / "gsm8k" / "train.jsonl"
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
    embedders = EmbedderRegistry([EmbedderConfig(id="local/multilingual-use", kind="use", threads=threads)])
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
    """Where the time of one query goes: embedding, BM25, vector search (p50 ms each)."""
    row = svc.get(base)
    embedder = svc.embedder_for(row)
    emb, bm, vec = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        v = embedder.embed([q], is_query=True)[0]
        t1 = time.perf_counter()
        svc.store.text_search(row.id, q, 20)
        t2 = time.perf_counter()
        svc.store.vector_search(row.id, v, 20)
        t3 = time.perf_counter()
        emb.append((t1 - t0) * 1000)
        bm.append((t2 - t1) * 1000)
        vec.append((t3 - t2) * 1000)
    return {"embed": statistics.median(emb), "bm25": statistics.median(bm), "vector": statistics.median(vec)}


def scale_up(svc: KnowledgeService, base: str, times: int) -> int:
    """Bulk-add copies of the base's chunks (tagged text, jittered vectors) to reach a larger table."""
    row = svc.get(base)
    table = svc.store._table(row.id)  # type: ignore[attr-defined]
    original = table.to_arrow().to_pylist()
    rng = np.random.default_rng(0)
    for copy in range(1, times):
        records = []
        for r in original:
            v = np.asarray(r["vector"], dtype=np.float32) + rng.normal(scale=0.02, size=len(r["vector"]))
            v = (v / np.linalg.norm(v)).astype(np.float32)
            records.append(ChunkRecord(chunk_id=f"{r['chunk_id']}#{copy}", doc_id=f"{r['doc_id']}#{copy}",
                                       doc_sha=r["doc_sha"], source=f"copy{copy}/{r['source']}",
                                       location=r["location"], heading=r["heading"], ordinal=r["ordinal"],
                                       text=r["text"], search_text=f"{r['search_text']} copy{copy}", vector=v))
        svc.store.add(row.id, records)
        print(f"  scaled to {svc.store.count(row.id)} chunks", file=sys.stderr)
    t = time.perf_counter()
    svc.store.maintain(row.id)
    print(f"  index maintenance at {svc.store.count(row.id)} chunks: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return svc.store.count(row.id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1, help="encoder threads (the server default is 1)")
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        svc = service(Path(tmp), args.threads)
        svc.create("bench")
        docs, questions = documents(args.chunks)
        rng = np.random.default_rng(1)
        queries = [questions[i] for i in rng.choice(len(questions), size=args.queries, replace=False)]
        print(f"ingesting {len(docs)} documents...", file=sys.stderr)
        report = Ingestor(svc).add("bench", docs)
        rate = report.chunks / report.seconds
        print(f"  {report.chunks} chunks in {report.seconds:.1f} s: {rate:.0f} chunks/s", file=sys.stderr)
        n_small = svc.store.count(svc.get("bench").id)
        retriever = Retriever(svc)
        small = query_latency(retriever, "bench", queries)
        small_stages = stage_latency(svc, "bench", queries[:50])
        n_large = scale_up(svc, "bench", args.scale) if args.scale > 1 else n_small
        large = query_latency(retriever, "bench", queries)
        large_stages = stage_latency(svc, "bench", queries[:50])
        svc.close()
        svc.db.close()
    print(f"\ningestion: {svc.config.ingest_workers} embedding worker processes; queries: the encoder in process, "
          f"{args.threads} thread(s)\n")
    print("| measure | result | goal | result / goal |\n|---|---|---|---|")
    print(f"| ingest ({report.chunks} chunks, {len(docs)} files) | {rate:.0f} chunks/s | {GOAL_INGEST:.0f} chunks/s "
          f"| {rate / GOAL_INGEST:.2f} |")
    print(f"| hybrid query at {n_small:,} chunks | p50 {small['p50']:.1f} ms, p99 {small['p99']:.1f} ms | — | — |")
    print(f"| hybrid query at {n_large:,} chunks | p50 {large['p50']:.1f} ms, p99 {large['p99']:.1f} ms "
          f"| p50 ≤ {GOAL_P50_MS:.0f} ms | {large['p50'] / GOAL_P50_MS:.2f} |")
    for n, st in ((n_small, small_stages), (n_large, large_stages)):
        print(f"| stages at {n:,} (p50) | embed {st['embed']:.1f} ms, BM25 {st['bm25']:.1f} ms, "
              f"vector {st['vector']:.1f} ms | — | — |")


if __name__ == "__main__":
    main()
