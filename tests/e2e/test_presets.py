"""Provider presets: every preset, one line each in baimo.yaml, chatting through a real `baimo serve` to the scripted
upstream (base_url overridden): the upstream gets the preset's model name and the key from the preset's variable,
and the cost is metered at the preset's prices."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest
import yaml

from baimo.config import Settings, load_config
from baimo.errors import ConfigError
from baimo.metering.usage import cost_usd
from baimo.presets import apply_preset, parse_presets, preset_book
from tests.support.server import BAIMO, BaimoServer
from tests.support.upstream import ScriptedUpstream
from tests.support.upstream_rich import CACHED_TOKENS

pytestmark = pytest.mark.e2e
BOOK = preset_book()
NAMES = sorted(BOOK.presets)
USER = [{"role": "user", "content": "Say hello."}]
# Presets without a list price (token packages) need prices in the entry: the test gives them.
EXTRA_PRICES = {"price_input": 1.5, "price_output": 3.0}


def secret(provider: str) -> str:
    return f"sk-test-{provider}"


def entry(name: str, base_url: str, **extra: object) -> str:
    fields = {"id": f"p/{name}", "preset": name, "base_url": base_url, "timeout": 5, "connect_timeout": 1,
              **(EXTRA_PRICES if BOOK.presets[name].missing_prices else {}), **extra}
    return "  - " + json.dumps(fields) + "\n"  # JSON is YAML: one flow mapping per model


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream({}) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream, tmp_path_factory):
    url = upstream.base_url
    config = "models:\n" + "".join(entry(n, url) for n in NAMES)
    # Any preset field can be overridden: here the upstream model (a behaviour reporting cached tokens) and a price.
    config += entry("deepseek-chat", url, id="cached/deepseek", upstream_model="rich", price_output=2.0)
    env = {p.model_fields["api_key_env"]: secret(p.provider) for p in BOOK.presets.values()}
    with BaimoServer(tmp_path_factory.mktemp("presets"), config, env=env) as s:
        yield s


@pytest.mark.parametrize("name", NAMES)
def test_preset_reaches_its_upstream_with_its_key_and_is_metered_at_its_prices(name, gateway, upstream) -> None:
    preset = BOOK.presets[name]
    r = httpx.post(gateway.base_url + "/chat/completions", json={"model": f"p/{name}", "messages": USER},
                   timeout=30)
    assert r.status_code == 200, r.text
    sent = [q for q in upstream.requests_for("/chat/completions") if q.json["messages"] == USER][-1]
    assert sent.model == (preset.model_fields.get("upstream_model") or f"p/{name}")
    assert sent.authorization == f"Bearer {secret(preset.provider)}"
    usage = r.json()["usage"]
    config = load_config(Settings(home=gateway.home), create=False).models
    model = next(m for m in config if m.id == f"p/{name}")
    for key in ("price_input", "price_output", "context_window", "strength", "api_key_env"):
        expected = preset.model_fields.get(key)
        if expected is not None and not (key.startswith("price") and preset.missing_prices):
            assert getattr(model, key) == expected, key
    assert model.is_on_premises == bool(preset.model_fields.get("on_premises"))
    expected_cost = cost_usd(model, usage["prompt_tokens"], usage["completion_tokens"])
    assert float(r.headers["x-baimo-cost"]) == pytest.approx(expected_cost, rel=1e-6, abs=1e-8)
    assert expected_cost > 0 or (model.price_input == 0 and model.price_output == 0)


def test_overrides_win_and_cached_tokens_use_the_cached_price(gateway, upstream) -> None:
    r = httpx.post(gateway.base_url + "/chat/completions", json={"model": "cached/deepseek", "messages": USER},
                   timeout=30)
    assert r.status_code == 200, r.text
    assert upstream.last_request.model == "rich"
    usage = r.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == CACHED_TOKENS
    preset = BOOK.presets["deepseek-chat"].model_fields
    cost = ((usage["prompt_tokens"] - CACHED_TOKENS) * preset["price_input"]
            + CACHED_TOKENS * preset["price_cached_input"] + usage["completion_tokens"] * 2.0) / 1e6
    assert float(r.headers["x-baimo-cost"]) == pytest.approx(cost, rel=1e-6)


def test_presets_cover_the_providers_and_engines() -> None:
    providers = {p.provider for p in BOOK.presets.values()}
    assert {"deepseek", "dashscope", "zhipu", "moonshot", "minimax", "baichuan", "qianfan", "spark", "hunyuan", "ark",
            "openai", "anthropic", "vllm", "sglang", "ollama", "llama-server"} <= providers
    for p in BOOK.presets.values():
        assert p.source.startswith("http") and p.checked and p.basis in ("provider-page", "third-party", "unconfirmed")
        assert p.model_fields["api_key_env"].endswith(("_KEY", "_PASSWORD"))
        if p.model_fields.get("on_premises"):
            assert p.model_fields["price_input"] == 0 and p.model_fields["base_url"].startswith("http://localhost")
    engines = {n: BOOK.presets[n].model_fields["base_url"] for n in ("vllm", "sglang", "ollama", "llama-server")}
    assert engines == {"vllm": "http://localhost:8000/v1", "sglang": "http://localhost:30000/v1",
                       "ollama": "http://localhost:11434/v1", "llama-server": "http://localhost:8080/v1"}


def test_cny_list_prices_are_converted_at_the_stated_rate() -> None:
    data = {"usd_per_cny": 0.5, "providers": {"x": {"name": "X", "base_url": "http://x/v1", "api_key_env": "X_KEY",
                                                   "currency": "CNY"}},
            "presets": {"x-1": {"provider": "x", "upstream_model": "m", "price_input": 3, "price_output": 7,
                                "basis": "unconfirmed", "source": "http://x"}}}
    book = parse_presets(data)
    fields = book.get("x-1").model_fields
    assert (fields["price_input"], fields["price_output"]) == (1.5, 3.5)
    assert book.get("x-1").list_prices == {"price_input": 3, "price_output": 7}
    merged = apply_preset({"id": "a", "preset": "x-1", "price_output": 9}, book)
    assert merged["price_output"] == 9 and merged["base_url"] == "http://x/v1" and merged["kind"] == "openai"


def test_unknown_preset_is_one_config_line_naming_close_ones(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text("models:\n  - {id: ds, preset: deepsek-chat}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(Settings(home=home))
    assert "unknown preset 'deepsek-chat'" in e.value.message and "deepseek-chat" in e.value.message
    done = subprocess.run([str(BAIMO), "models"], env={"BAIMO_HOME": str(home), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "close names: deepseek-chat" in done.stderr


def test_preset_without_a_list_price_must_be_given_one(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text("models:\n  - {id: s, preset: spark-max}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(Settings(home=home))
    assert "set price_input and price_output" in e.value.message


def test_cli_lists_presets_as_json_and_table() -> None:
    done = subprocess.run([str(BAIMO), "models", "presets", "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert sorted(r["preset"] for r in rows) == NAMES
    ds = next(r for r in rows if r["preset"] == "deepseek-chat")
    assert ds["api_key_env"] == "DEEPSEEK_API_KEY" and ds["source"].startswith("https://api-docs.deepseek.com")
    done = subprocess.run([str(BAIMO), "models", "presets", "--provider", "ollama"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "ollama" in done.stdout and "deepseek" not in done.stdout


def test_presets_yaml_is_package_data() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "presets.yaml" in pyproject["tool"]["setuptools"]["package-data"]["baimo"]
    assert yaml.safe_load(Path(__file__).resolve().parents[2].joinpath("baimo", "presets.yaml").read_text())
