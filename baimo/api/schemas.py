"""Typed request bodies at the edge. Unknown fields are rejected; OpenAI fields we cannot honour get a clear 400."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baimo.backends.base import GenerationParams
from baimo.errors import InvalidRequest


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None                 # a tool result answers this call

    def as_text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(Strict):
    include_usage: bool = False
    include_obfuscation: bool | None = None


# OpenAI request fields that Baimo accepts in the schema but cannot honour yet: a clear 400 beats silence.
UNSUPPORTED = {"functions": "legacy function calling; use `tools`",
               "function_call": "legacy function calling; use `tools`", "response_format": "structured output",
               "logprobs": "log-probabilities", "top_logprobs": "log-probabilities",
               "audio": "audio output", "modalities": "non-text modalities", "prediction": "predicted outputs"}


class KnowledgeField(Strict):
    """Baimo extension: answer from knowledge bases (`extra_body={"knowledge": {...}}` in the openai client)."""

    bases: Annotated[list[str], Field(min_length=1, max_length=10)] = Field(description="knowledge base names")
    k: Annotated[int, Field(ge=1, le=50)] | None = Field(default=None, description="passages to put in the prompt")
    grounded: bool = Field(default=False, description="decline when no passage reaches min_relevance")
    min_relevance: Annotated[float, Field(ge=-1, le=1)] | None = None
    mode: Literal["hybrid", "bm25", "dense"] = "hybrid"


class ChatCompletionRequest(Strict):
    model: str = Field(min_length=1)
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    knowledge: KnowledgeField | None = None

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, v: list[ChatMessage]) -> list[ChatMessage]:
        if not v:
            raise ValueError("messages must contain at least one message")
        return v

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        for name, what in UNSUPPORTED.items():
            value = getattr(self, name)
            if value not in (None, False, [], {}):
                if name == "response_format" and value.get("type") in ("text", "json_object"):
                    continue
                raise InvalidRequest(f"`{name}` is not supported by Baimo yet ({what})", param=name)
        if self.logit_bias:
            raise InvalidRequest("`logit_bias` is not supported by Baimo yet", param="logit_bias")
        return self

    def generation_params(self) -> GenerationParams:
        messages: list[dict[str, Any]] = []
        for m in self.messages:
            message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role,
                                       "content": m.as_text()}
            if m.tool_calls:
                message["tool_calls"] = m.tool_calls
                message["content"] = message["content"] or None
            if m.role == "tool":
                if not m.tool_call_id:
                    raise InvalidRequest("a tool message needs the `tool_call_id` it answers", param="messages")
                message["tool_call_id"] = m.tool_call_id
            messages.append(message)
        if all(not (m["content"] or "").strip() and not m.get("tool_calls") for m in messages):
            raise InvalidRequest("every message is empty; send some text", param="messages")
        for tool in self.tools or []:
            fn = tool.get("function")
            if tool.get("type") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest('each tool is {"type": "function", "function": {"name": ..., "parameters": ...}}',
                                     param="tools")
        if self.tool_choice not in (None, "none", "auto", "required") and not isinstance(self.tool_choice, dict):
            raise InvalidRequest("tool_choice must be none, auto, required or a function", param="tool_choice")
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return GenerationParams(
            messages=messages, max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature, top_p=self.top_p, stop=stop, seed=self.seed,
            presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
            json_mode=(self.response_format or {}).get("type") == "json_object",
            tools=self.tools or None, tool_choice=self.tool_choice if self.tools else None,
            parallel_tool_calls=self.parallel_tool_calls if self.tools else None)


class EmbeddingRequest(Strict):
    model: str = Field(min_length=1)
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


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


class PersonaCreate(PersonaFields):
    name: str = Field(min_length=1, max_length=64)
