"""Answer extraction: the choice letter, the number, the JSON value or the judge's rating in a model's free text.

Models rarely answer with the bare token a suite expects: "答案是：B", "选B", "(C)", a full-width "Ｃ",
"The answer is $1,234.50.", "\\boxed{\\frac{3}{4}}", GSM8K's "#### 42". Every extractor first normalises the text
with Unicode NFKC (full-width letters, digits and punctuation become ASCII), then tries explicit markers from the
most to the least specific, and returns None when nothing usable is found (scored as wrong, never as an error).
"""

from __future__ import annotations

import json
import re
import unicodedata
from fractions import Fraction
from typing import Any

__all__ = ["extract_choice", "extract_exact", "extract_json", "extract_number", "extract_rating", "extract_verdict",
           "normalize", "numbers_match", "parse_number"]

_MARK = r"(?:正确答案|最终答案|答案|答|选项|选择|应选|选|answer|final answer|option|choice)"
_CONNECT = r"\s*(?:应该|应|为|是|is|:|=)?\s*(?:选项|选|option)?\s*"
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|[-+]?\.\d+"
_CURRENCY = "$¥€£₹元"


def normalize(text: str) -> str:
    """NFKC (full-width "Ｃ", "（", "：", "１２" become ASCII), the Unicode minus sign as "-", no zero-width spaces."""
    text = unicodedata.normalize("NFKC", text or "")
    return text.replace("\u2212", "-").replace("\u200b", "").replace("\u3000", " ")


def _boxed(text: str) -> list[str]:
    """The contents of every \\boxed{...} / \\fbox{...}, with nested braces."""
    out = []
    for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            out.append(text[m.end():i - 1])
    return out


def extract_choice(text: str, letters: str = "ABCD") -> str | None:
    """The option letter a free-text answer picks, or None.

    Tried in order (the last match of the first pattern that matches wins, since models restate the question's
    options before concluding): \\boxed{B}; a marked answer ("答案是：B", "答案：Ｃ", "选B", "Answer: (D)",
    "the answer is C"); a whole answer that is one letter ("B", "B.", "(B) text"); a parenthesised letter "(C)";
    a lone letter not inside a Latin word ("我认为B对"), preferring any other letter over an English article "A".
    """
    t = normalize(text)
    cls = f"[{letters}{letters.lower()}]"
    for box in reversed(_boxed(t)):
        m = re.search(rf"(?<![A-Za-z]){cls}(?![A-Za-z])", box)
        if m:
            return m.group(0).upper()
    marked = list(re.finditer(rf"{_MARK}{_CONNECT}[\(\[【]?\s*({cls})(?![A-Za-z])", t, re.IGNORECASE))
    if marked:
        return marked[-1].group(1).upper()
    m = re.match(rf"\s*[\(\[【]?\s*([{letters}])\s*(?:[\)\]】.、:,]|$)", t)
    if m:
        return m.group(1)
    parens = re.findall(rf"[\(\[【]\s*([{letters}])\s*[\)\]】]", t)
    if parens:
        return parens[-1]
    lone = [m for m in re.finditer(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z'’])", t)
            if not (m.group(1) == "A" and re.match(r"\s+[a-z]", t[m.end():]))]
    return lone[-1].group(1) if lone else None


def parse_number(token: str) -> Fraction | None:
    """A number token as an exact Fraction: "1,234.5", "-3/4", "\\frac{3}{4}", "$12", "50%" (as 50), "１２"."""
    t = normalize(token).strip()
    frac = re.fullmatch(r"\\d?frac\s*\{\s*([-+]?[\d.]+)\s*\}\s*\{\s*([-+]?[\d.]+)\s*\}", t)
    if frac:
        try:
            return Fraction(frac.group(1)) / Fraction(frac.group(2))
        except (ValueError, ZeroDivisionError):
            return None
    t = t.strip(_CURRENCY + " ").rstrip("%").replace(",", "").replace(" ", "")
    t = t.lstrip("$")
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            return Fraction(num) / Fraction(den)
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def _numbers(text: str) -> list[str]:
    """Number tokens of a text in order ("-$1,200.50" -> "-1,200.50"; a currency sign between sign and digits)."""
    t = re.sub(rf"([-+]?)[{re.escape(_CURRENCY)}]\s*(?=[\d.])", r"\1", text)
    t = re.sub(r"\\d?frac\s*\{\s*(-?[\d.]+)\s*\}\s*\{\s*(-?[\d.]+)\s*\}", r"\1/\2", t)
    return [m.group(0) for m in re.finditer(rf"(?<![\w.])(?:{_NUM})(?![\d])", t)]


def extract_number(text: str) -> str | None:
    """The final numeric answer of a free-text solution in canonical form (see `format_number`: "1234", "-0.75",
    "3/7"), or None.

    Tried in order: GSM8K's "#### N"; \\boxed{...}; a marked answer ("The answer is $1,234.", "答案是 -3/4",
    "Answer: 12 apples"); the last number anywhere in the text. Units and currency signs around the number,
    thousands separators and a percent sign are ignored."""
    t = normalize(text)
    candidates: list[str] = []
    hashes = re.findall(r"####\s*([^\n]*)", t)
    if hashes:
        candidates = _numbers(hashes[-1])
    if not candidates:
        for box in reversed(_boxed(t)):
            candidates = _numbers(box)
            if candidates:
                break
    if not candidates:
        marked = list(re.finditer(r"(?:final answer|answer is|answer:|答案是|答案为|答案:|答案|结果是|=)\s*([^\n]*)",
                                  t, re.IGNORECASE))
        for m in reversed(marked):
            candidates = _numbers(m.group(1))[:1]
            if candidates:
                break
    if not candidates:
        candidates = _numbers(t)[-1:]
    if not candidates:
        return None
    value = parse_number(candidates[0])
    return None if value is None else format_number(value)


def format_number(value: Fraction) -> str:
    """Canonical text of a number: "42", "-0.75", "1/3" (non-terminating fractions stay exact)."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:  # a terminating decimal
        return format(float(value), "f").rstrip("0").rstrip(".") if abs(value) >= 1e-6 else str(float(value))
    return f"{value.numerator}/{value.denominator}"


def numbers_match(got: str | None, expected: str | float | int, rel_tol: float = 1e-6) -> bool:
    """Whether an extracted number equals the expected one (exactly, or within `rel_tol` relative for decimals
    such as 0.3333 against 1/3)."""
    if got is None:
        return False
    a, b = parse_number(str(got)), parse_number(str(expected))
    if a is None or b is None:
        return False
    return a == b or abs(float(a) - float(b)) <= rel_tol * max(1.0, abs(float(b)))


def extract_json(text: str) -> Any:
    """The JSON value an answer holds: the whole text, a ```json fenced block, or the first balanced {...} /
    [...] that parses. Raises ValueError when there is none."""
    t = (text or "").strip()
    tries = [t]
    tries += re.findall(r"```(?:json)?\s*\n?(.*?)```", t, re.DOTALL)
    for opener, closer in (("{", "}"), ("[", "]")):
        start = t.find(opener)
        while start != -1:
            depth, in_str, esc = 0, False, False
            for i in range(start, len(t)):
                ch = t[i]
                if in_str:
                    esc, in_str = (not esc and ch == "\\"), (in_str if esc or ch != '"' else False)
                    continue
                if ch == '"':
                    in_str = True
                elif ch == opener:
                    depth += 1
                elif ch == closer:
                    depth -= 1
                    if depth == 0:
                        tries.append(t[start:i + 1])
                        break
            start = t.find(opener, start + 1)
    for candidate in tries:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("no JSON value in the answer")


def extract_exact(text: str) -> str:
    """A short free answer: the text after the last "Answer:" / "答案：" marker (to the end of that line), else the
    whole text; trimmed of quotes and a final full stop."""
    t = normalize(text).strip()
    marks = list(re.finditer(r"(?:answer|答案)\s*(?:is|是|为)?\s*:?\s*", t, re.IGNORECASE))
    if marks and t[marks[-1].end():].strip():
        t = t[marks[-1].end():].strip().splitlines()[0]
    return t.strip().rstrip("。.").strip("\"'“”「」").rstrip("。.").strip()


def extract_rating(text: str, low: float = 1, high: float = 10) -> float | None:
    """A judge's 1-10 rating: MT-Bench's "Rating: [[7]]" (or "[[7.5]]"), else "Rating: 7" / "评分：7" / "7/10";
    None when absent or outside [low, high]."""
    t = normalize(text)
    for pattern in (r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]", r"(?:rating|score|评分|得分)\s*(?:is)?\s*:?\s*(\d+(?:\.\d+)?)",
                    r"(\d+(?:\.\d+)?)\s*/\s*10\b"):
        found = re.findall(pattern, t, re.IGNORECASE)
        if found:
            value = float(found[-1])
            return value if low <= value <= high else None
    return None


def extract_verdict(text: str) -> str | None:
    """A pairwise judge's verdict, MT-Bench style: "[[A]]", "[[B]]" or "[[C]]" (a tie) -> "A", "B", "tie"."""
    found = re.findall(r"\[\[\s*([ABC])\s*\]\]", normalize(text))
    if not found:
        return None
    return {"A": "A", "B": "B", "C": "tie"}[found[-1]]
