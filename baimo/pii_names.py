"""Person-name recognizers for Presidio that need no NLP model: jieba's POS tagger for Chinese, name lists for English.

Name sources are PyPI packages' data, read once: jieba's dictionary and HMM (tag `nr` = person name), and Faker's
person providers (zh_CN surnames; English first names; en_US surnames, the US Census 2000 top 1,000).
"""

from __future__ import annotations

import functools
import re
from typing import Any

from presidio_analyzer import LocalRecognizer, RecognizerResult

_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# Words jieba tags `nr` that end like a place or an organisation: 王府井大街, 张江路.
_NOT_A_NAME_END = set("街路井山河湖江海省市区县村镇府楼桥门站店厂园院所局")
# "First Last": two capitalised words; the lookahead lets overlapping pairs match (Ann Lee Smith).
_EN_PAIR = re.compile(r"\b(?=([A-Z][a-z]+)\s+([A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b)")
_EN_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?")
_EN_INTRO = re.compile(r"\b(?:[Mm]y name is|I am|I'm|[Cc]ontact|[Dd]ear)\s+([A-Z][a-z]+)")
_STREET_WORDS = {"Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Way", "Drive", "Court", "Place", "Square",
                 "Boulevard", "Parkway", "Terrace", "Highway", "Close", "Crescent"}
# Capitalised words that are first names but much more often something else at the start of a sentence.
_AMBIGUOUS_FIRST = {"May", "June", "April", "August", "Will", "Bill", "Mark", "Grace", "Hope", "Faith", "Joy",
                    "Rose", "Summer", "Autumn", "Winter", "Dawn", "Page", "Art", "Sunny", "Lane", "Chase", "Hunter",
                    "Rich", "Sky", "River", "Apple", "China", "Paris", "Sydney", "Austin", "Dallas", "Florence",
                    "Georgia", "Virginia", "Carolina", "Jordan", "Israel", "India", "Asia", "Kenya", "Holly",
                    "Ivy", "Iris", "Daisy", "Lily", "Violet", "Ruby", "Pearl", "Jade", "Crystal", "Amber",
                    "Berry", "Major", "Royal", "Prince", "King", "Young", "Long", "Sterling", "Windows", "Gene",
                    "Harley", "Mercedes", "Tesla", "Dell", "Ford", "Chevy", "Mac", "Max", "Pat", "Sam", "Ben",
                    "Don", "Guy", "Ray", "Sue", "Ted", "Van", "Tim", "Jack", "Jean", "Ken", "Bob", "Al"}


@functools.cache
def zh_surnames(top: int = 100) -> frozenset[str]:
    """The `top` most common surnames of Faker's zh_CN list (ordered by population share; the top 100 cover about
    85 % of people in China), plus its compound ones. Rarer surnames are also common words (华, 阳, 银)."""
    from faker.providers.person.zh_CN import Provider

    ranked = list(Provider.last_names)
    return frozenset(ranked[:top]) | {s for s in ranked if len(s) > 1}


@functools.cache
def en_names() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames) in title case."""
    from faker.providers.person.en import Provider as En
    from faker.providers.person.en_US import Provider as EnUS

    firsts = set(En.first_names) | set(EnUS.first_names_female) | set(EnUS.first_names_male)
    lasts = set(EnUS.last_names) | set(En.last_names)
    return frozenset(n.title() for n in firsts), frozenset(n.title() for n in lasts)


@functools.cache
def _jieba_posseg() -> Any:
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba.posseg


class ChineseNameRecognizer(LocalRecognizer):
    """Chinese person names: jieba words tagged `nr`, 2-4 characters, starting with a known surname (score 0.6)."""

    SCORE = 0.6

    def __init__(self, supported_language: str = "zh") -> None:
        super().__init__(supported_entities=["PERSON"], supported_language=supported_language,
                         name="ChineseNameRecognizer")

    def load(self) -> None:
        _jieba_posseg()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        posseg = _jieba_posseg()
        surnames = zh_surnames()
        out: list[RecognizerResult] = []
        for run in _CJK_RUN.finditer(text):
            pos = run.start()
            for pair in posseg.cut(run.group(), HMM=True):
                word, flag = pair.word, pair.flag
                if flag == "nr" and 2 <= len(word) <= 4 and word[-1] not in _NOT_A_NAME_END \
                        and (word[0] in surnames or word[:2] in surnames):
                    out.append(RecognizerResult("PERSON", pos, pos + len(word), self.SCORE))
                pos += len(word)
        return out


class EnglishNameRecognizer(LocalRecognizer):
    """English person names from name lists: "First Last" (0.7 when Last is a known surname, else 0.45), a title
    before a capitalised word (0.6), "my name is" before a known first name (0.6)."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_entities=["PERSON"], supported_language=supported_language,
                         name="EnglishNameRecognizer")

    def load(self) -> None:
        en_names()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        firsts, lasts = en_names()
        out: list[RecognizerResult] = []
        for m in _EN_PAIR.finditer(text):
            first, last = m.group(1), m.group(2)
            if first not in firsts or last in firsts and last not in lasts:
                continue
            if first in _AMBIGUOUS_FIRST and last not in lasts or last in _STREET_WORDS:
                continue
            out.append(RecognizerResult("PERSON", m.start(1), m.end(2), 0.7 if last in lasts else 0.45))
        for m in _EN_TITLE.finditer(text):
            out.append(RecognizerResult("PERSON", m.start(), m.end(), 0.6))
        for m in _EN_INTRO.finditer(text):
            if m.group(1) in firsts and m.group(1) not in _AMBIGUOUS_FIRST:
                out.append(RecognizerResult("PERSON", m.start(1), m.end(1), 0.6))
        return out
