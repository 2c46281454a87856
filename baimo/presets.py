"""Provider presets: a remote model in one line of baimo.yaml (`- {id: deepseek, preset: deepseek-chat}`).

The presets are data (`presets.yaml`, shipped in the package): per provider a base URL, API key variable and price
currency; per preset an upstream model name, context window, list prices, a strength prior, and where the numbers
come from (`source`, `checked`, `basis`). `apply_preset` fills a model entry from its preset before validation;
every key the entry sets itself wins.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

PRICE_FIELDS = ("price_input", "price_cached_input", "price_output")
# Keys a provider block may give every preset of that provider (ModelConfig fields).
PROVIDER_MODEL_FIELDS = ("base_url", "api_key_env", "developer_role", "on_premises")
# Keys a preset may set (ModelConfig fields besides prices).
PRESET_MODEL_FIELDS = ("upstream_model", "context_window", "strength", "max_output_tokens", "base_url")


@dataclass(frozen=True)
class Preset:
    """One preset, with its ModelConfig defaults already in USD.

    `model_fields` are the ModelConfig keys it fills (kind, base_url, upstream_model, api_key_env, context_window,
    price_* in USD per million tokens, strength, on_premises, developer_role); a price of None means no list price
    was found. `list_prices` are the prices as the provider lists them, in `currency`."""

    name: str
    provider: str
    provider_name: str
    model_fields: dict[str, Any]
    currency: str
    list_prices: dict[str, float | None]
    basis: str
    source: str
    checked: str
    note: str = ""
    docs: str = ""
    provider_note: str = ""

    @property
    def missing_prices(self) -> list[str]:
        """Price fields the preset cannot fill (no list price found): the model entry must set them."""
        return [k for k in ("price_input", "price_output") if self.model_fields.get(k) is None]

    def row(self) -> dict[str, Any]:
        """A flat dict for listings (`baimo models presets`)."""
        f = self.model_fields
        return {"preset": self.name, "provider": self.provider_name, "upstream_model": f.get("upstream_model"),
                "base_url": f.get("base_url"), "api_key_env": f.get("api_key_env"),
                "context_window": f.get("context_window"), "price_input": f.get("price_input"),
                "price_cached_input": f.get("price_cached_input"), "price_output": f.get("price_output"),
                "currency": self.currency, "list_prices": self.list_prices, "strength": f.get("strength"),
                "on_premises": bool(f.get("on_premises")), "basis": self.basis, "source": self.source,
                "checked": self.checked, "note": " ".join(filter(None, [self.note, self.provider_note]))}


@dataclass(frozen=True)
class PresetBook:
    """Every preset by name, and the exchange rate used for CNY list prices."""

    presets: dict[str, Preset] = field(default_factory=dict)
    usd_per_cny: float = 0.0

    def get(self, name: str) -> Preset:
        """The preset called `name`; ValueError naming the closest preset names when there is none."""
        try:
            return self.presets[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.presets), n=3, cutoff=0.5)
            hint = f"close names: {', '.join(close)}" if close else "`baimo models presets` lists them"
            raise ValueError(f"unknown preset {name!r}; {hint}") from None


def _usd(value: float | None, currency: str, usd_per_cny: float) -> float | None:
    """A list price in USD; a converted CNY price keeps 3 significant digits (the rate is approximate)."""
    if value is None or currency == "USD":
        return value
    if currency != "CNY":
        raise ValueError(f"presets.yaml: unknown currency {currency!r}")
    return float(f"{value * usd_per_cny:.3g}")


def parse_presets(data: dict[str, Any]) -> PresetBook:
    """Build a PresetBook from the parsed presets.yaml (shape documented at the top of that file)."""
    usd_per_cny = float(data["usd_per_cny"])
    defaults = data.get("defaults") or {}
    providers = data["providers"]
    out: dict[str, Preset] = {}
    for name, raw in data["presets"].items():
        prov = providers[raw["provider"]]
        currency = prov.get("currency", "USD")
        fields: dict[str, Any] = {"kind": "openai"}
        fields.update({k: prov[k] for k in PROVIDER_MODEL_FIELDS if k in prov})
        fields.update({k: raw[k] for k in PRESET_MODEL_FIELDS if k in raw})
        list_prices = {k: raw.get(k) for k in PRICE_FIELDS if k in raw}
        fields.update({k: _usd(v, currency, usd_per_cny) for k, v in list_prices.items()})
        out[name] = Preset(name=name, provider=raw["provider"], provider_name=prov["name"], model_fields=fields,
                           currency=currency, list_prices=list_prices, basis=raw["basis"], source=raw["source"],
                           checked=str(raw.get("checked", defaults.get("checked", ""))), note=raw.get("note", ""),
                           docs=prov.get("docs", ""), provider_note=prov.get("note", ""))
    return PresetBook(out, usd_per_cny)


@lru_cache(maxsize=1)
def preset_book() -> PresetBook:
    """The presets shipped with Baimo (read once; the file is package data and never changes at run time)."""
    text = resources.files("baimo").joinpath("presets.yaml").read_text(encoding="utf-8")
    return parse_presets(yaml.safe_load(text))


def apply_preset(entry: dict[str, Any], book: PresetBook | None = None) -> dict[str, Any]:
    """The model entry with its preset's fields filled in where the entry does not set them.

    Raises ValueError for an unknown preset, or when the preset has no list price and the entry sets none."""
    preset = (book or preset_book()).get(str(entry["preset"]))
    merged = {k: v for k, v in preset.model_fields.items() if v is not None}
    merged.update(entry)
    missing = [k for k in preset.missing_prices if merged.get(k) is None]
    if missing:
        raise ValueError(f"preset {preset.name} lists no price ({preset.provider_name} sells token packages or "
                         f"publishes none): set {' and '.join(missing)} in the model entry")
    if "description" not in entry:
        merged["description"] = f"{preset.provider_name}: {merged.get('upstream_model') or entry.get('id')}"
    return merged
