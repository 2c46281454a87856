"""`baimo distill compare`: a fine-tuned model against its base and its teacher on a held-out suite, and the router
setting that would send that domain's traffic to it.

The three are scored in one evaluation run (baimo/evaluation/runner.py: cached, resumable, stored), so the report,
the HTML frontier and `baimo eval compare` all apply to it. The verdict follows the issue's acceptance: the
fine-tuned model beats its base when the lower end of its 95 % Wilson interval is above the upper end of the
base's (intervals that do not overlap), and McNemar's exact test on the paired items is given beside it. The
saving is the teacher's billed cost per item against the fine-tuned model's (a local model bills nothing).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

from baimo.distill.dedup import read_jsonl
from baimo.distill.promote import coverage, domain_rule, rule_yaml
from baimo.distill.register import model_id
from baimo.distill.train import OPTIONS_FILE, run_dir
from baimo.errors import InvalidRequest
from baimo.evaluation.compare import outcomes
from baimo.evaluation.stats import paired_mcnemar


def training_options(home: Path, name: str) -> dict[str, Any]:
    """The options NAME was trained with (BAIMO_HOME/distill/NAME/options.json), {} when it was not trained here."""
    path = run_dir(home, name) / OPTIONS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def training_rows(options: dict[str, Any], limit: int = 2000) -> list[dict[str, Any]]:
    """The first `limit` rows of the training data NAME was trained on ([] when the file is gone)."""
    data = options.get("data")
    if not data or not Path(data).is_file():
        return []
    return list(islice(read_jsonl(data), limit))


def teacher_of(rows: list[dict[str, Any]]) -> str | None:
    """The teacher most of the training rows name (`meta.teacher`, from `baimo distill generate`), if any."""
    names = Counter(str(r["meta"]["teacher"]) for r in rows if isinstance(r.get("meta"), dict)
                    and r["meta"].get("teacher"))
    return names.most_common(1)[0][0] if names else None


def user_prompts(rows: list[dict[str, Any]]) -> list[str]:
    """The first user message of each chat row."""
    out = []
    for r in rows:
        for m in r.get("messages") or []:
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                out.append(m["content"])
                break
    return out


def verdict(run: dict[str, Any], tuned: str, other: str) -> dict[str, Any]:
    """tuned against other in `run`: accuracies with their intervals, whether the intervals separate, and
    McNemar's exact p on the paired items."""
    by_id = {t["id"]: t for t in run["targets"]}
    a, b = by_id[tuned], by_id[other]
    paired = paired_mcnemar(outcomes(run, tuned), outcomes(run, other))
    return {"model": other, "accuracy": b["accuracy"], "ci95": b["ci95"], "delta": a["accuracy"] - b["accuracy"],
            "beats_outside_ci": a["ci95"][0] > b["ci95"][1], "worse_outside_ci": a["ci95"][1] < b["ci95"][0],
            "mcnemar_p": paired["p_value"], "paired": paired["n"],
            "cost_per_item_usd": b["cost_per_item_usd"]}


async def compare(state: Any, name: str, suite: str, *, base: str | None = None, teacher: str | None = None,
                  limit: int | None = None, concurrency: int = 2, max_tokens: int = 128,
                  progress: Any = None, on_start: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate local/NAME, its base and its teacher on `suite` (an evaluation SUITE argument) and propose the
    routing rule for the domain. Returns {"run": run JSON, "model", "base": verdict, "teacher": verdict | None,
    "rule": baimo.yaml rule, "coverage": share of the suite's prompts the rule matches, "saving_per_1k_usd"}.

    Raises InvalidRequest (param "base") when the base is neither given nor recorded by `baimo distill train`,
    and BaimoError from the evaluation (unknown suite or model)."""
    from baimo.evaluation.runner import run_suite
    from baimo.evaluation.suites import load_suite

    tuned = model_id(name)
    options = training_options(state.settings.home, name)
    base = base or options.get("base")
    if not base:
        raise InvalidRequest(f"{tuned} was not trained here: say which model it was trained from with --base",
                             param="base")
    rows = training_rows(options)
    teacher = teacher or teacher_of(rows)
    targets = [tuned, base] + ([teacher] if teacher and teacher not in (tuned, base) else [])
    run = await run_suite(state, suite, targets, limit=limit, concurrency=concurrency, max_tokens=max_tokens,
                          progress=progress, on_start=on_start)
    loaded = load_suite(suite)
    prompts = [str(i["question"]) for i in loaded.items[: limit or None]]
    rule = domain_rule(name, user_prompts(rows) or prompts)
    by_id = {t["id"]: t for t in run["targets"]}
    result: dict[str, Any] = {
        "run": run, "model": {"id": tuned, "accuracy": by_id[tuned]["accuracy"], "ci95": by_id[tuned]["ci95"],
                              "cost_per_item_usd": by_id[tuned]["cost_per_item_usd"]},
        "base": verdict(run, tuned, base), "teacher": verdict(run, tuned, teacher) if len(targets) > 2 else None,
        "rule": rule_yaml(rule), "coverage": coverage(rule, prompts)}
    if result["teacher"] is not None:
        saved = result["teacher"]["cost_per_item_usd"] - result["model"]["cost_per_item_usd"]
        result["saving_per_1k_usd"] = round(saved * 1000, 6)
    return result
