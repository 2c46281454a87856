"""Privacy routing: find personal data in a request, and keep private requests on local or on-premises models.

Detection runs Microsoft Presidio's analyzer (`presidio-analyzer`, maintained, MIT) over recognizers that need no
NLP model, because spaCy's trained pipelines are not on PyPI under their official names and nothing may be
downloaded at run time (Presidio's `NoOpNlpEngine` exists for exactly this set-up). The recognizers:

- Presidio's own: e-mail (its pattern; the domain checked against the public-suffix list *snapshot* shipped in
  `tldextract`, never fetched), phone numbers (Google's libphonenumber via `phonenumbers`, which knows Chinese
  mobile and landline numbering as well as the other regions listed in PHONE_REGIONS), credit cards (Luhn), IBAN
  (ISO 13616 checksum), US SSN and UK postcodes.
- Chinese resident ID numbers (GB 11643-1999, 18 characters): a pattern validated by `python-stdnum`'s `cn.ric`
  (ISO 7064 MOD 11-2 check digit, a real birth date, a known region code), so order numbers and timestamps of the
  same length do not count.
- Chinese person names: jieba's part-of-speech tagger (tag `nr`, from the dictionary jieba ships), kept only when
  the word starts with a surname from Faker's zh_CN list (jieba tags place names such as 王府井大街 `nr` too), plus
  the phrases that introduce a name (我叫, 姓名:, 联系人:, 收件人: ...).
- English person names: a capitalised first name from Faker's English first-name list (7,000 names) followed by a
  capitalised word (scored higher when it is on Faker's en_US surname list, the US Census 2000 top 1,000), or a
  title (Mr, Ms, Dr ...) before a capitalised word, or "my name is" before a known first name.
- Postal addresses: Chinese street addresses (路/街/巷 + number + 号, 小区 + 栋/室) and English street addresses
  (number + capitalised words + Street/Road/Ave ...) and US "City, ST 12345" lines, as Presidio pattern
  recognizers.

Scores are Presidio's (0..1): 1.0 for a checksum- or list-validated match, 0.4 for a phone number (Presidio's
value for a number libphonenumber accepts), 0.45-0.7 for names and addresses. Precision and recall on the
labelled cases in tests/fixtures/pii_cases.jsonl are measured by bench/privacy.py and checked by
tests/unit/test_privacy.py.

Enforcement: `ChatService.open` asks `PrivacyGuard.inspect` once per request. A private request (personal data
found, or a confidential API key or persona) is routed only among models on premises (`RouterSet.plan` calls
`keep_private`), its fallbacks are filtered the same way, a cascade's remote verifier is dropped, and while the
request is being opened every remote backend refuses to send it (`refuse_if_private`, checked right before the
HTTP request leaves) so that no other path (summaries, judges, code added later) can leak it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from baimo.backends.base import message_text
from baimo.errors import BaimoError, ConfigError, UpstreamError

if TYPE_CHECKING:
    from baimo.config import ModelConfig, PrivacyConfig
    from baimo.routing.strategies import RoutePlan

# Entity kinds (Presidio's names where Presidio has one) and how a route reason names them.
KIND_LABELS: dict[str, str] = {
    "PERSON": "person name",
    "PHONE_NUMBER": "phone number",
    "EMAIL_ADDRESS": "e-mail address",
    "CN_RESIDENT_ID": "ID number",
    "US_SSN": "ID number",
    "CREDIT_CARD": "card number",
    "IBAN_CODE": "bank account",
    "ADDRESS": "postal address",
    "UK_POSTCODE": "postal address",
}
# Regions whose national number formats are recognised; numbers written with +country code are found anyway.
PHONE_REGIONS = ("CN", "HK", "TW", "US", "GB", "SG")
LATIN = "latin"  # the analyzer "language" of recognizers that read the text with Chinese characters blanked
_DIGITS = re.compile(r"\d\d")
_DIGIT_KINDS = {"PHONE_NUMBER", "CN_RESIDENT_ID", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "UK_POSTCODE", "ADDRESS"}
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")  # CJK, its punctuation, full-width


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its kind (a KIND_LABELS key), its span [start, end) in the text, a 0..1 score."""

    kind: str
    start: int
    end: int
    score: float

    @property
    def label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind.lower().replace("_", " "))


# Optional imports of Presidio (its Hugging Face NER engine) and of spaCy's thinc that Baimo never uses: with the
# `distill` extra installed, importing them made the detector's start-up ~12 s longer (torch + transformers).
_OPTIONAL_ML_BACKENDS = ("transformers", "torch")


@contextlib.contextmanager
def _without_optional_ml_backends() -> Iterator[None]:
    """Within the block, `import transformers` / `import torch` raise ImportError (a None entry in sys.modules),
    so packages that import them optionally skip them; afterwards they import normally. Modules already imported
    are left alone."""
    blocked = [name for name in _OPTIONAL_ML_BACKENDS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def _build_analyzer() -> Any:
    """Presidio's AnalyzerEngine with Baimo's recognizers (imports spaCy and Presidio: a few seconds, once).

    Two analyzer "languages": `zh` recognizers read the text as it is; `latin` ones read it with Chinese characters
    blanked out (same length, so offsets hold), because Presidio's patterns rely on `\\b`, which never falls
    between a Chinese character and a digit (电话13812345678)."""
    with _without_optional_ml_backends():
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UkPostcodeRecognizer,
        UsSsnRecognizer,
    )

    from baimo import pii_names

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's e-mail recognizer with two changes: the local part may only start where a word starts (a
        lookbehind; Presidio's own pattern retries from every character of a long word, 30 ms per 2k characters),
        and the public-suffix check uses tldextract's bundled snapshot (Presidio's default fetches the list)."""

        PATTERNS = [Pattern("Email (word start)",
                            r"(?<![\w.!#$%&'*+/=?^`{|}~-])[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*"
                            r"@\w+(?:-+\w+)*(?:\.\w+(?:-+\w+)*)+\b", 0.5)]

        def validate_result(self, pattern_text: str) -> bool:
            return _offline_tld()(pattern_text).fqdn != ""

    class ChineseResidentIdRecognizer(PatternRecognizer):
        """18-character resident identity numbers (GB 11643-1999), validated by python-stdnum."""

        def validate_result(self, pattern_text: str) -> bool:
            from stdnum.cn import ric

            return bool(ric.is_valid(pattern_text))

    def patterns(rows: list[tuple[str, str, float]]) -> list[Any]:
        return [Pattern(n, p, s) for n, p, s in rows]

    latin, zh = LATIN, "zh"
    recognizers = [
        OfflineEmailRecognizer(supported_language=latin),
        PhoneRecognizer(supported_language=latin, supported_regions=PHONE_REGIONS),
        CreditCardRecognizer(supported_language=latin),
        IbanRecognizer(supported_language=latin),
        UsSsnRecognizer(supported_language=latin),
        UkPostcodeRecognizer(supported_language=latin),
        ChineseResidentIdRecognizer(supported_entity="CN_RESIDENT_ID", supported_language=latin,
                                    patterns=patterns([("CN resident ID", r"\b[1-9]\d{16}[0-9Xx]\b", 0.3)])),
        PatternRecognizer(supported_entity="ADDRESS", supported_language=latin, name="EnglishAddressRecognizer",
                          patterns=patterns(EN_ADDRESS_PATTERNS)),
        pii_names.EnglishNameRecognizer(supported_language=latin),
        PatternRecognizer(supported_entity="ADDRESS", supported_language=zh, name="ChineseAddressRecognizer",
                          patterns=patterns(ZH_ADDRESS_PATTERNS)),
        PatternRecognizer(supported_entity="PERSON", supported_language=zh, name="ChineseNameIntroRecognizer",
                          patterns=patterns(ZH_NAME_INTRO_PATTERNS)),
        pii_names.ChineseNameRecognizer(supported_language=zh),
    ]
    registry = RecognizerRegistry(supported_languages=[latin, zh])
    for r in recognizers:
        registry.add_recognizer(r)
    nlp = NoOpNlpEngine(models=[{"lang_code": latin, "model_name": "none"}, {"lang_code": zh, "model_name": "none"}])
    nlp.load()
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[latin, zh])


@functools.cache
def _offline_tld() -> Any:
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


# (name, regex, score) for Presidio Pattern objects.
ZH_ADDRESS_PATTERNS = [
    ("zh street + number", r"[\u4e00-\u9fff]{1,12}(?:路|街|大道|巷|弄|胡同)[\u4e00-\u9fff]{0,3}?"
                           r"\d{1,5}(?:-\d{1,5})?\s*(?:号|號)", 0.6),
    ("zh estate + building", r"[\u4e00-\u9fff]{2,10}(?:小区|花园|公寓|大厦|苑|新村)\s*\d{1,4}\s*(?:栋|幢|号楼)"
                             r"(?:\s*\d{1,3}\s*单元)?(?:\s*\d{1,5}\s*(?:室|号))?", 0.6),
]
_STREET_TYPES = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Parkway|Pkwy|"
                 r"Place|Pl|Square|Sq|Terrace|Highway|Hwy|Crescent|Close")
EN_ADDRESS_PATTERNS = [
    ("en street address", rf"\b\d{{1,6}}[A-Za-z]?\s+(?:[A-Z][a-z]+\.?\s+){{1,4}}(?:{_STREET_TYPES})\b\.?", 0.6),
    ("us city, state zip", r"\b[A-Z][a-z]+(?:\s[A-Z][a-z]+)*,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b", 0.6),
]
ZH_NAME_INTRO_PATTERNS = [
    ("zh name introduction",
     r"(?:我叫|名叫|(?:姓名|联系人|收件人|收货人|患者|客户)\s*[:：])\s*[\u4e00-\u9fff]{2,3}", 0.6),
]


class PersonalDataDetector:
    """Finds personal data in text with one Presidio analyzer (built on first use, then reused by every request)."""

    def __init__(self) -> None:
        self._analyzer: Any = None
        self._lock = threading.Lock()

    @property
    def analyzer(self) -> Any:
        if self._analyzer is None:
            with self._lock:  # a request may arrive while the start-up warm-up is still building it
                if self._analyzer is None:
                    self._analyzer = _build_analyzer()
        return self._analyzer

    @functools.cache  # noqa: B019 (one detector per process: the cache lives as long as it does)
    def _supported(self, language: str) -> frozenset[str]:
        return frozenset(self.analyzer.get_supported_entities(language))

    def find(self, text: str, kinds: Iterable[str] | None = None, min_score: float = 0.0) -> list[Finding]:
        """Findings sorted by start offset; `kinds` limits the entity kinds (default: all of KIND_LABELS)."""
        if not text.strip():
            return []
        wanted = set(kinds) if kinds is not None else set(KIND_LABELS)
        if "@" not in text:  # cheap gates: the recognizers of these kinds could not match anyway
            wanted.discard("EMAIL_ADDRESS")
        if not _DIGITS.search(text):
            wanted -= _DIGIT_KINDS
        blanked = _CJK.sub(" ", text)
        results = []
        for language, seen in ((LATIN, blanked), ("zh", text)):
            entities = sorted(wanted & self._supported(language))
            if entities and (language == LATIN or blanked != text):  # the zh pass only for text with CJK
                results += self.analyzer.analyze(text=seen, language=language, entities=entities,
                                                 score_threshold=min_score)
        return sorted((Finding(r.entity_type, r.start, r.end, round(float(r.score), 3)) for r in results),
                      key=lambda f: (f.start, f.end))


@functools.cache
def default_detector() -> PersonalDataDetector:
    """The process's detector: stateless once built, so one instance serves every request and thread."""
    return PersonalDataDetector()


def find_personal_data(text: str, kinds: Iterable[str] | None = None, min_score: float = 0.0) -> list[Finding]:
    """Personal data in `text` (Chinese and English): names, phone and ID numbers, e-mail and postal addresses,
    card and bank numbers, as Findings with character offsets. The first call loads Presidio and jieba (~3 s)."""
    return default_detector().find(text, kinds, min_score)


def request_text(messages: Iterable[dict[str, Any]]) -> str:
    """Everything in the messages that a model would read: text contents and tool-call arguments, one per line."""
    parts: list[str] = []
    for m in messages:
        parts.append(message_text(m))
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            parts.append(str(fn.get("arguments") or ""))
    return "\n".join(p for p in parts if p)


# ----------------------------------------------------------------------------------------------------------------
# Enforcement
# ----------------------------------------------------------------------------------------------------------------


class PrivateRequestRefused(BaimoError):
    """A private request that no local or on-premises model may serve, or a confidential one sent to a remote
    model by name: refused before anything leaves the machine."""

    status_code = 403
    error_type = "invalid_request_error"
    code = "private_request"


class RemoteCallBlocked(UpstreamError):
    """The last line of defence: a remote backend asked to send a private request. An UpstreamError, so the chat
    service moves on to the next (local) model exactly as for a failed upstream; nothing was sent."""

    status_code = 403
    code = "private_request"


@dataclass(frozen=True)
class PrivateRequest:
    """Why a request must stay on premises: `why` names the kinds of personal data found (or the confidential key
    or persona); `confidential` is set when a key or persona says so (then naming a remote model is refused)."""

    why: str
    confidential: bool = False
    allowed: frozenset[str] = frozenset()  # remote models the caller named and may use all the same

    @property
    def reason(self) -> str:
        return f"private: {self.why} -> local only"


_CURRENT: contextvars.ContextVar[PrivateRequest | None] = contextvars.ContextVar("baimo_private_request",
                                                                                 default=None)


def refuse_if_private(model: ModelConfig) -> None:
    """Raise RemoteCallBlocked when the request being opened in this task is private and `model` is remote."""
    private = _CURRENT.get()
    if private is not None and not model.is_on_premises and model.id not in private.allowed:
        raise RemoteCallBlocked(f"{model.id} is not on premises and this request is private ({private.why})",
                                param="model")


def mark_private(private: PrivateRequest | None) -> contextvars.Token[PrivateRequest | None]:
    """Mark the current task's request as private (or not) for `refuse_if_private`; reset with `unmark`."""
    return _CURRENT.set(private)


def unmark(token: contextvars.Token[PrivateRequest | None]) -> None:
    _CURRENT.reset(token)


def keep_private(plan: RoutePlan, private: PrivateRequest, models: Mapping[str, ModelConfig],
                 candidates: Iterable[str] = ()) -> RoutePlan:
    """The plan restricted to on-premises models, its reason saying so. When none of the plan's models is on
    premises, the router's other `candidates` that are take their place (in the router's order). A cascade keeps
    its local steps and drops a remote verifier (answers are then judged by their token log-probabilities).
    Raises PrivateRequestRefused when no model is left."""
    kept = [m for m in plan.models if models[m].is_on_premises]
    dropped = [m for m in plan.models if m not in kept]
    if not kept:
        kept = [m for m in candidates if m in models and models[m].is_on_premises]
    if not kept:
        raise PrivateRequestRefused(
            f"This request is private ({private.why}) and none of the models this router may use runs on premises "
            f"({', '.join(dict.fromkeys([*plan.models, *candidates]))}); add a local model or mark one "
            "`on_premises: true`.", param="model")
    reason = f"{private.reason} | {plan.reason}"
    if dropped:
        reason += f" | skipped remote {', '.join(dropped)} -> {kept[0]}"
    cascade = plan.cascade
    if cascade is not None and cascade.verifier and not models[cascade.verifier].is_on_premises:
        cascade = replace(cascade, verifier=None, scorer="logprob")
        reason += f" | verifier {plan.cascade.verifier} is remote: judged by logprob"  # type: ignore[union-attr]
    return replace(plan, models=kept, reason=reason, cascade=cascade,
                   probabilities={m: p for m, p in plan.probabilities.items() if m in kept})


class PrivacyGuard:
    """Decides, once per request, whether it is private; says which models may then serve it.

    `models` maps model id -> ModelConfig (with `on_premises` resolved); `key_confidential` and
    `persona_confidential` answer whether an API key id / persona name is marked confidential.
    """

    def __init__(self, config: PrivacyConfig, models: Mapping[str, ModelConfig],
                 key_confidential: Callable[[str], bool] | None = None,
                 persona_confidential: Callable[[str], bool] | None = None,
                 detector: PersonalDataDetector | None = None) -> None:
        unknown = set(config.entities or []) - set(KIND_LABELS)
        if unknown:
            raise ConfigError(f"privacy.entities: unknown kinds {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(KIND_LABELS)}")
        self.config = config
        self.models = models
        self.key_confidential = key_confidential
        self.persona_confidential = persona_confidential
        self.detector = detector or default_detector()

    @property
    def active(self) -> bool:
        return self.config.mode != "off"

    def warm(self) -> None:
        """Build the analyzer and load jieba's dictionary now (start-up) rather than on the first request."""
        if self.active:
            self.detector.find("张伟 13812345678 110105198803151232 John Smith, 1 Main Street, zw@example.com")

    def inspect(self, messages: Iterable[dict[str, Any]], *, api_key_id: str | None = None,
                persona: str | None = None) -> PrivateRequest | None:
        """A PrivateRequest when the key or persona is confidential or the messages carry personal data of the
        configured kinds at or above `min_score`; None otherwise (and always None when privacy mode is off)."""
        if not self.active:
            return None
        if api_key_id and self.key_confidential and self.key_confidential(api_key_id):
            return PrivateRequest("the API key is confidential", confidential=True)
        if persona and self.persona_confidential and self.persona_confidential(persona):
            return PrivateRequest(f"persona {persona} is confidential", confidential=True)
        findings = self.detector.find(request_text(messages), self.config.entities, self.config.min_score)
        if not findings:
            return None
        labels = list(dict.fromkeys(f.label for f in findings))
        return PrivateRequest(", ".join(labels))

    def on_premises(self, model_id: str) -> bool:
        return self.models[model_id].is_on_premises

    def check_direct(self, model_id: str, private: PrivateRequest | None) -> None:
        """A request naming a remote model: allowed with personal data (the caller chose that model), refused when
        the key or persona is confidential or `privacy.enforce_direct` is set. An allowed remote model is let
        through `refuse_if_private` for the rest of this request (its fallbacks are not)."""
        if private is None or self.on_premises(model_id):
            return
        if private.confidential or self.config.enforce_direct:
            raise PrivateRequestRefused(
                f"This request is private ({private.why}) and {model_id} does not run on premises; "
                "name a local model or a router.", param="model")
        mark_private(replace(private, allowed=private.allowed | {model_id}))

    def direct_reason(self, model_id: str, private: PrivateRequest | None) -> str:
        """The route of a request that named its model."""
        if private is None:
            return f"direct -> {model_id}"
        where = "local" if self.on_premises(model_id) else "remote, as requested"
        return f"private: {private.why} ({where}) | direct -> {model_id}"

    def fallbacks(self, order: list[str], chosen: list[str], private: PrivateRequest | None) -> list[str]:
        """The fallback chain with remote fallbacks removed from a private request (the chosen models stay)."""
        if private is None:
            return order
        return [m for m in order if m in chosen or self.on_premises(m)]


def score_cases(cases: Iterable[Mapping[str, Any]], find: Callable[[str], list[Finding]]) -> dict[str, dict[str, Any]]:
    """Precision and recall of a detector on labelled cases ({"text", "kinds": [...]}), judged per case: for each
    kind, and for "any" (does the text hold personal data at all: the routing decision). Returns
    {kind: {"tp", "fp", "fn", "precision", "recall"}}."""
    counts: dict[str, list[int]] = {}
    for case in cases:
        got, want = {f.kind for f in find(case["text"])}, set(case["kinds"])
        for kind in got | want:
            c = counts.setdefault(kind, [0, 0, 0])
            c[0 if kind in got and kind in want else 1 if kind in got else 2] += 1
        c = counts.setdefault("any", [0, 0, 0])
        if got or want:
            c[0 if got and want else 1 if got else 2] += 1
    return {kind: {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else 1.0,
                   "recall": tp / (tp + fn) if tp + fn else 1.0} for kind, (tp, fp, fn) in counts.items()}
