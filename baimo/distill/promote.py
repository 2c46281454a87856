"""The router setting that sends one domain's traffic to a fine-tuned model, and `baimo distill promote`.

A domain is recognised by a rule of a rules router (baimo/routing/rules.py): by default a regular expression
anchored on the longest common prefix of the domain's prompts (a narrow task's prompts share their instruction:
the synthetic tasks of baimo/distill/tasks do), or the operator's own `--regex`, `--keywords` or `--persona`.
Promotion writes the router `baimo/distilled` into baimo.yaml: its rules send each promoted domain to its model,
its default is the previous default model (e.g. `baimo/auto`), and it becomes the default model, so traffic
outside the domains is routed exactly as before.
"""

from __future__ import annotations

import os
import re
from typing import Any

from baimo.config import BaimoConfig, RouterConfig, RuleConfig, Settings, load_config
from baimo.config_edit import edit_config
from baimo.distill.register import model_id
from baimo.errors import InvalidRequest, NotFound
from baimo.routing.request import RouteRequest
from baimo.routing.rules import rule_matches

ROUTER_ID = "baimo/distilled"
MIN_PREFIX_CHARS = 16  # a shorter shared prefix is too generic to mark a domain ("Please ", "What is ")


def common_prefix(prompts: list[str]) -> str:
    """The longest prefix every prompt shares, cut back to a word boundary ("" for no prompts)."""
    if not prompts:
        return ""
    prefix = os.path.commonprefix(prompts)
    if all(len(p) == len(prefix) for p in prompts) or not prefix:
        return prefix
    cut = max(prefix.rfind(" "), prefix.rfind("\n"))
    return prefix[:cut + 1] if cut >= 0 else ""


def domain_rule(name: str, prompts: list[str], *, regex: str | None = None, keywords: list[str] | None = None,
                persona: list[str] | None = None) -> RuleConfig:
    """The rule sending the domain of `prompts` to `local/NAME`: the operator's conditions when given, else a
    regex on the prompts' common prefix. Raises InvalidRequest (param "regex") when the prompts share no prefix of
    at least MIN_PREFIX_CHARS characters and no condition was given."""
    target = model_id(name)
    if regex or keywords or persona:
        return RuleConfig(name=f"distilled:{name}", model=target, regex=regex, keywords=keywords, persona=persona)
    prefix = common_prefix(prompts).strip()
    if len(prefix) < MIN_PREFIX_CHARS:
        raise InvalidRequest(f"the suite's prompts share no instruction of {MIN_PREFIX_CHARS}+ characters to "
                             "recognise the domain by; say how with --regex, --keywords or --persona",
                             param="regex")
    return RuleConfig(name=f"distilled:{name}", model=target, regex="^" + readable_escape(prefix))


def readable_escape(text: str) -> str:
    """`re.escape` without the escapes a regex does not need outside verbose mode (spaces, `#`, `~`, `&`, `-`
    outside brackets), and newlines as `\\n`: the rule stays readable in baimo.yaml and matches the same text."""
    out = re.escape(text)
    for char in (" ", "#", "~", "&", "-"):
        out = out.replace("\\" + char, char)
    return out.replace("\\\n", "\\n")


def coverage(rule: RuleConfig, prompts: list[str]) -> float:
    """The share of `prompts` (user messages) the rule matches, 0..1 (1.0 for no prompts)."""
    if not prompts:
        return 1.0
    hits = sum(rule_matches(rule, RouteRequest([{"role": "user", "content": p}])) for p in prompts)
    return hits / len(prompts)


def rule_yaml(rule: RuleConfig) -> dict[str, Any]:
    """The rule as baimo.yaml writes it (only the conditions it sets)."""
    return rule.model_dump(exclude_none=True, by_alias=True)


def promote(settings: Settings, name: str, rule: RuleConfig, router_id: str = ROUTER_ID) -> BaimoConfig:
    """Write `rule` into the rules router `router_id` (created when missing, replacing a rule of the same name)
    and make that router the default model; its default is the previous default model. Returns the new config.

    Raises NotFound (param "name") when local/NAME is not a configured model, InvalidRequest (param "router")
    when `router_id` names a model or a router of another strategy, ConfigError when the result does not
    validate."""
    config = load_config(settings)
    target = model_id(name)
    if target not in {m.id for m in config.models}:
        raise NotFound(f"{target} is not in baimo.yaml: train and register it first (baimo distill train)",
                       param="name")
    existing = next((r for r in config.routers if r.id == router_id), None)
    if existing is not None and existing.strategy != "rules":
        raise InvalidRequest(f"{router_id} is a {existing.strategy} router; promote into a rules router",
                             param="router")
    if router_id in {m.id for m in config.models}:
        raise InvalidRequest(f"{router_id} is a model id", param="router")
    previous = config.default_model if config.default_model != router_id else (existing.default if existing
                                                                                else None)

    def mutate(doc: dict[str, Any]) -> None:
        routers = doc.setdefault("routers", [])
        entry = next((r for r in routers if isinstance(r, dict) and r.get("id") == router_id), None)
        if entry is None:
            entry = {"id": router_id, "strategy": "rules",
                     "description": "Fine-tuned models for their domains (baimo distill promote); the rest as before",
                     "rules": [], "default": previous}
            routers.append(entry)
        rules = entry.setdefault("rules", [])
        rules[:] = [r for r in rules if not (isinstance(r, dict) and r.get("name") == rule.name)]
        rules.insert(0, rule_yaml(rule))
        if not entry.get("default") and previous:
            entry["default"] = previous
        doc["default_model"] = router_id

    return edit_config(settings, mutate, f"promoting {target}")


def current_rule(config: BaimoConfig, name: str, router_id: str = ROUTER_ID) -> RuleConfig | None:
    """The promoted rule of local/NAME in `router_id`, if any."""
    router: RouterConfig | None = next((r for r in config.routers if r.id == router_id), None)
    if router is None:
        return None
    return next((r for r in router.rules if r.name == f"distilled:{name}"), None)
