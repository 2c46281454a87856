"""Typed request bodies at the edge. Unknown fields are rejected; OpenAI fields we cannot honour get a clear 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from baimo.backends.base import GenerationParams, message_text
from baimo.errors import InvalidRequest


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _stop(v: Any) -> Any:
    """`stop` is a string or up to 4 strings; checked here so that a 400 names `stop`, not a union member."""
    if v is None or isinstance(v, str):
        return v
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError("stop must be a string or a list of strings")
    if len(v) > 4:
        raise ValueError(f"stop takes at most 4 sequences; {len(v)} were given")
    return v


Stop = Annotated[str | list[str] | None, BeforeValidator(_stop)]


class ContentPart(BaseModel):
    """One part of a message's content: text, or any other OpenAI part (image_url, input_audio, file, ...),
    kept as sent so that a model that reads it gets it unchanged."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_has_text(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs `text`")
        return self


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None                 # a tool result answers this call

    def as_text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool | None = False
    include_obfuscation: bool | None = None


class KnowledgeField(Strict):
    """Baimo extension: answer from knowledge bases (`extra_body={"knowledge": {...}}` in the openai client)."""

    bases: Annotated[list[str], Field(min_length=1, max_length=10)] = Field(description="knowledge base names")
    k: Annotated[int, Field(ge=1, le=50)] | None = Field(default=None, description="passages to put in the prompt")
    grounded: bool = Field(default=False, description="decline when no passage reaches min_relevance")
    min_relevance: Annotated[float, Field(ge=-1, le=1)] | None = None
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"


# Fields Baimo itself consumes; everything else the client sends is forwarded to the model as it was sent.
OWN_FIELDS = {"model", "messages", "stream", "stream_options", "knowledge"}
# Fields carried in GenerationParams' own attributes (internal callers set them too). `stop` is also kept in
# `extra` as sent (a string, a list or []), so that an upstream gets the form its client chose.
MAPPED_FIELDS = {"temperature", "top_p", "seed", "presence_penalty", "frequency_penalty", "max_tokens",
                 "max_completion_tokens", "tools", "tool_choice", "parallel_tool_calls"}
# metadata keys that steer Baimo (a conversation to store into, a persona) and are not forwarded.
OWN_METADATA = {"conversation_id", "persona"}


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request. Known fields are checked (types and ranges, as OpenAI does); any other
    field is accepted and forwarded unchanged, so vendor extensions and newer OpenAI fields reach the model."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[ChatMessage]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: Stop = Field(default=None, description="a string or up to 4 strings")
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    user: str | None = None
    metadata: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    knowledge: KnowledgeField | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v:
            raise ValueError("messages must contain at least one message")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise InvalidRequest("top_logprobs needs `logprobs: true`", param="top_logprobs")
        from baimo.backends.json_schema import response_schema

        response_schema(self.response_format)  # a malformed response_format is a 400 for every model
        return self

    @property
    def sent(self) -> dict[str, Any]:
        """Every field the client sent (explicit nulls dropped: null means "not set" in OpenAI's API)."""
        fields = {k: getattr(self, k) for k in self.model_fields_set}
        fields.update(self.model_extra or {})
        return {k: v for k, v in fields.items() if v is not None}

    def generation_params(self) -> GenerationParams:
        messages = [m.model_dump(exclude_unset=True) for m in self.messages]
        for m in messages:
            if m["role"] == "tool" and not m.get("tool_call_id"):
                raise InvalidRequest("a tool message needs the `tool_call_id` it answers", param="messages")
        if all(not message_text(m).strip() and not m.get("tool_calls") and not isinstance(m.get("content"), list)
               for m in messages):
            raise InvalidRequest("every message is empty; send some text", param="messages")
        for tool in self.tools or []:
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest('each tool is {"type": "function", "function": {"name": ..., "parameters": ...}}',
                                     param="tools")
        if self.tool_choice not in (None, "none", "auto", "required") and not isinstance(self.tool_choice, dict):
            raise InvalidRequest("tool_choice must be none, auto, required or a function", param="tool_choice")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        extra = {k: v for k, v in self.sent.items() if k not in OWN_FIELDS and k not in MAPPED_FIELDS}
        if "metadata" in extra:
            forwarded = {k: v for k, v in extra["metadata"].items() if k not in OWN_METADATA}
            if forwarded:
                extra["metadata"] = forwarded
            else:
                del extra["metadata"]
        cap_param = "max_completion_tokens" if self.max_completion_tokens is not None else "max_tokens"
        if self.max_completion_tokens is not None and self.max_tokens is not None:
            extra["max_tokens"] = self.max_tokens  # both sent: both go out as they came
        return GenerationParams(
            messages=messages, max_tokens=self.max_completion_tokens or self.max_tokens, max_tokens_param=cap_param,
            temperature=self.temperature, top_p=self.top_p, stop=stop, seed=self.seed,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            json_mode=(self.response_format or {}).get("type") in ("json_object", "json_schema"),
            tools=self.tools or None, tool_choice=self.tool_choice if self.tools else None,
            parallel_tool_calls=self.parallel_tool_calls if self.tools else None, extra=extra)


class CompletionRequest(BaseModel):
    """A legacy text completion request (/v1/completions); fields other than these are forwarded unchanged."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]] = Field(description="text, texts or token ids")
    stream: bool | None = False
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    echo: bool | None = None
    suffix: str | None = None
    stop: Stop = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, v: Any) -> Any:
        if v == [] or v == [[]]:
            raise ValueError("prompt must not be empty")
        return v


class EmbeddingRequest(Strict):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string or up to 2048 strings (token-id arrays: see the error message)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None

    def texts(self) -> list[str]:
        """The inputs as strings; raises 400 (param `input`) for empty input or token-id arrays."""
        if isinstance(self.input, str):
            texts = [self.input]
        elif not self.input:
            raise InvalidRequest("input must not be empty: send a string or a non-empty list of strings",
                                 param="input")
        elif all(isinstance(t, str) for t in self.input):
            texts = list(self.input)  # type: ignore[arg-type]
        else:
            raise InvalidRequest("input as token ids is not supported by Baimo's local embedders (they use their "
                                 "own tokenizers); send the text itself. In LangChain's OpenAIEmbeddings set "
                                 "check_embedding_ctx_length=False", param="input", code="token_input_unsupported")
        if len(texts) > 2048:
            raise InvalidRequest("input may hold at most 2048 strings", param="input")
        for i, t in enumerate(texts):
            if not t:
                raise InvalidRequest(f"input[{i}] is an empty string; every input must contain text"
                                     if not isinstance(self.input, str) else "input must not be an empty string",
                                     param="input")
        return texts


class Feedback(Strict):
    response_id: str = Field(min_length=1, description="the `id` of a chat completion, or a message's response_id")
    rating: Literal["up", "down"] | None = None
    score: Annotated[float, Field(ge=0, le=1)] | None = None
    comment: str | None = Field(default=None, max_length=4000)

    @model_validator(mode="after")
    def _one_of(self) -> Feedback:
        if (self.rating is None) == (self.score is None):
            raise InvalidRequest("give exactly one of `rating` (up/down) or `score` (0..1)", param="rating")
        return self

    @property
    def value(self) -> float:
        return self.score if self.score is not None else (1.0 if self.rating == "up" else 0.0)


class ConversationCreate(Strict):
    title: str | None = Field(default=None, max_length=200)
    model: str | None = None


class ConversationPatch(Strict):
    title: str = Field(min_length=1, max_length=200)


class ConversationMessage(Strict):
    content: str = Field(min_length=1)
    model: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None


class Regenerate(Strict):
    model: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None


class KnowledgeBaseCreate(Strict):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    embedder: str | None = None
    chunk_size: Annotated[int, Field(ge=100, le=8000)] | None = None
    chunk_overlap: Annotated[int, Field(ge=0, le=2000)] | None = None


class KnowledgeSearch(Strict):
    query: str = Field(min_length=1)
    k: Annotated[int, Field(ge=1, le=100)] = 5
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"


class PersonaFields(Strict):
    description: str | None = None
    instructions: str | None = None
    model: str | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    knowledge: list[str] | None = None
    grounded: bool | None = None
    min_relevance: Annotated[float, Field(ge=-1, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1, le=50)] | None = None
    budget_usd: Annotated[float, Field(ge=0)] | None = None
    confidential: bool | None = Field(default=None, description="served only by models on premises")


class PersonaCreate(PersonaFields):
    name: str = Field(min_length=1, max_length=64)
