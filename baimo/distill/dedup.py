"""De-duplication of training rows: exact (a hash of the normalised prompt and answer) and near-duplicates
(MinHash LSH over character 5-grams, from the maintained `datasketch` library).

Normalisation: Unicode NFKC (full-width to half-width), lower case, runs of whitespace to one space. Character
5-grams (not words) so that Chinese text, which has no spaces, is compared as well as English. Two rows are
near-duplicates when the estimated Jaccard similarity of the 5-gram sets is at least `threshold` (default 0.85)
for their answers (the last message; LSH finds the candidates) *and* for their prompts (everything before it):
comparing the whole text instead would merge distinct rows of a templated prompt (a long shared instruction, a
short varying request), and when their answers hold the same numbers (answers that differ only in a date or an
amount are different data, however similar their text). The estimate uses 128 permutations (standard error
~ 1/sqrt(128) ~ 0.09 on the similarity; Broder 1997, datasketch's MinHash docs). The first row seen is kept, so
callers order rows best first.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import Any

NUM_PERM = 128
SHINGLE = 5
DEFAULT_THRESHOLD = 0.85
_SPACE = re.compile(r"\s+")
_NUMBERS = re.compile(r"\d+")


def normalise(text: str) -> str:
    """NFKC, lower case, whitespace collapsed and stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().lower()


def row_text(row: dict[str, Any]) -> str:
    """The text a row is compared by: its messages' (or prompt/chosen/rejected's) contents, normalised, joined."""
    parts: list[Any] = row.get("messages") or [*row.get("prompt", []), *row.get("chosen", []),
                                                *row.get("rejected", [])]
    return "\n".join(f"{m.get('role')}: {normalise(str(m.get('content') or ''))}" for m in parts)


def _parts(row: dict[str, Any]) -> tuple[str, str]:
    """(prompt text, answer text) of an SFT row (answer: its last message) or a pair (answer: chosen + rejected)."""
    def text(msgs: list[dict[str, Any]]) -> str:
        return "\n".join(normalise(str(m.get("content") or "")) for m in msgs)

    if "messages" in row:
        return text(row["messages"][:-1]), text(row["messages"][-1:])
    return text(row.get("prompt", [])), text([*row.get("chosen", []), *row.get("rejected", [])])


def row_hash(row: dict[str, Any]) -> str:
    """SHA-256 (hex) of the normalised text of a row."""
    return hashlib.sha256(row_text(row).encode()).hexdigest()


def _minhash(text: str) -> Any:
    from datasketch import MinHash

    m = MinHash(num_perm=NUM_PERM)
    grams = {text[i:i + SHINGLE] for i in range(max(1, len(text) - SHINGLE + 1))}
    m.update_batch([g.encode() for g in grams])
    return m


def dedupe(rows: Iterable[dict[str, Any]], *, near: bool = True,
           threshold: float = DEFAULT_THRESHOLD) -> tuple[list[dict[str, Any]], int, int]:
    """The rows without duplicates, keeping the first of each group; returns (rows, exact dropped, near dropped)."""
    from datasketch import MinHashLSH

    seen: set[str] = set()
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if near else None
    # kept row's digest -> (its prompt's MinHash, its answer's, the answer's numbers); LSH candidates are checked
    # against the threshold, as LSH also returns some pairs below it
    prompts: dict[str, tuple[Any, Any, list[str]]] = {}
    kept: list[dict[str, Any]] = []
    exact = similar = 0
    for row in rows:
        digest = hashlib.sha256(row_text(row).encode()).hexdigest()
        if digest in seen:
            exact += 1
            continue
        seen.add(digest)
        if lsh is not None:
            prompt, answer = _parts(row)
            answer_mh, prompt_mh = _minhash(answer), _minhash(prompt)
            numbers = _NUMBERS.findall(answer)
            if any(prompts[other][2] == numbers and answer_mh.jaccard(prompts[other][1]) >= threshold
                   and prompt_mh.jaccard(prompts[other][0]) >= threshold for other in lsh.query(answer_mh)):
                similar += 1
                continue
            lsh.insert(digest, answer_mh)
            prompts[digest] = (prompt_mh, answer_mh, numbers)
        kept.append(row)
    return kept, exact, similar


def read_jsonl(path: Any) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; raises InvalidRequest naming the line for one that is not a JSON object."""
    from baimo.errors import InvalidRequest

    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot read: {exc.strerror}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{path} line {n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InvalidRequest(f"{path} line {n}: expected a JSON object")
        yield obj


def write_jsonl(path: Any, rows: Iterable[dict[str, Any]], *, append: bool = False) -> int:
    """Write rows as JSONL (UTF-8, no ASCII escaping); returns how many."""
    n = 0
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n
