"""Rule matching: conditions on a request (persona, language, length, regex, keywords, code, JSON, tools) →
a target."""

from __future__ import annotations

import re

from baimo.config import RuleConfig
from baimo.routing.request import RouteRequest


def rule_matches(rule: RuleConfig, req: RouteRequest) -> bool:
    """True when every condition the rule sets holds for the request."""
    text = req.prompt
    checks = (
        rule.persona is None or req.persona in rule.persona,
        rule.language is None or req.language in rule.language,
        rule.min_chars is None or len(text) >= rule.min_chars,
        rule.max_chars is None or len(text) <= rule.max_chars,
        rule.regex is None or re.search(rule.regex, text) is not None,
        rule.keywords is None or any(k.lower() in text.lower() for k in rule.keywords),
        rule.has_code is None or req.has_code == rule.has_code,
        rule.json_mode is None or req.json_mode == rule.json_mode,
        rule.tools is None or req.tools == rule.tools,
    )
    return all(checks)


def first_match(rules: list[RuleConfig], req: RouteRequest) -> tuple[int, RuleConfig] | None:
    for i, rule in enumerate(rules):
        if rule_matches(rule, req):
            return i, rule
    return None
