"""Parsing model outputs: the grounding answer (a time span), multiple-choice letters, the template.

The grounding template is ``<think>…</think><answer>START - END</answer>`` with times in seconds
(DESIGN.md, RL). Training rewards and evaluation both read outputs through these functions, so a
model is scored the same way wherever its text is parsed.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_THINK_BLOCK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_TAG = re.compile(r"</?(?:think|answer)>", re.I)

_NUM = r"\d+(?:\.\d+)?"
_CLOCK = r"\d+:\d{1,2}(?::\d{1,2})?(?:\.\d+)?"
_TIME = rf"(?:{_CLOCK}|{_NUM})"
TIME_PATTERN = _TIME
"""A time as the parser reads it (seconds or a clock time); `rl.kl` marks the same spans."""
_UNIT = r"(?:\s*(?:seconds?|secs?|s)\b)?"
_SEP = r"\s*(?:--?|–|—|~|\bto\b|\buntil\b|\band\b|,)\s*"
# A time must not continue a word, a number or a negative sign, and must end where the number ends.
_BEFORE = r"(?<![\w.:\-])"
_AFTER = r"(?![\d:%]|\.\d)"
_RANGE = re.compile(rf"{_BEFORE}({_TIME}){_UNIT}{_SEP}({_TIME}){_UNIT}{_AFTER}", re.I)
_SINGLE_TIME = re.compile(rf"{_BEFORE}({_TIME}){_AFTER}")


def answer_text(text: str) -> str:
    """The part of a model output that holds the answer.

    The content of the last complete ``<answer>…</answer>`` block when there is one; otherwise
    the whole text with ``<think>`` blocks removed (an unclosed ``<think>`` runs to the end), so
    numbers in the reasoning are not read as the answer.
    """
    blocks = _ANSWER_BLOCK.findall(text or "")
    if blocks:
        return blocks[-1]
    return _THINK_BLOCK.sub(" ", text or "")


def parse_time(token: str) -> float | None:
    """Seconds from ``12.5``, ``MM:SS(.f)`` or ``HH:MM:SS(.f)``; None when a field is out of range.

    ``MM:SS`` allows any number of minutes (``75:30`` is 4530 s); seconds must be < 60, and in
    ``HH:MM:SS`` minutes too.
    """
    parts = token.strip().split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) > 3 or values[-1] >= 60 or any(v != int(v) for v in values[:-1]):
        return None
    if len(values) == 3 and values[1] >= 60:
        return None
    seconds = 0.0
    for v in values:
        seconds = seconds * 60 + v
    return seconds


def parse_answer(text: str) -> tuple[float, float] | None:
    """``(start_s, end_s)`` from a grounding output, or None when no span can be read.

    Reads `answer_text(text)` (the last ``<answer>`` block, else the text without ``<think>``).
    Accepted: two times joined by ``-``, ``--``, an en or em dash, ``~``, ``to``, ``until``,
    ``and`` or a comma (``12.5 - 17.8``, ``12.5 to 17.8``, ``12.5–17.8``, ``[12.5, 17.8]``,
    ``between 12.5 and 17.8``); each time in seconds or ``MM:SS`` / ``HH:MM:SS`` with optional
    fractional seconds and an optional ``s`` / ``sec`` / ``seconds`` unit. When several spans
    appear, the last one wins (the conclusion). Inside an ``<answer>`` block that has no such
    span but exactly two times (``start: 12.5, end: 17.8`` style), those two are the span.
    Negative numbers, percentages and malformed clock times are not times.

    The pair is returned as given, also when ``start >= end`` or past the video's end: judging
    it is the reward's / metric's job (IoU 0 for an empty span), not the parser's.
    """
    if not text:
        return None
    body = answer_text(text)
    for match in reversed(list(_RANGE.finditer(body))):
        start, end = parse_time(match.group(1)), parse_time(match.group(2))
        if start is not None and end is not None:
            return start, end
    if _ANSWER_BLOCK.search(text):
        times = [parse_time(m.group(1)) for m in _SINGLE_TIME.finditer(body)]
        if len(times) == 2 and None not in times:
            return times[0], times[1]  # type: ignore[return-value]
    return None


def format_ok(text: str) -> bool:
    """True when `text` is exactly ``<think>…</think><answer>…</answer>`` (whitespace around and
    between the blocks allowed), with no other think/answer tags inside and a non-blank answer.
    The reasoning may be empty; whether the answer parses is not part of the format."""
    m = re.fullmatch(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", text or "", re.S)
    if m is None:
        return False
    think, answer = m.group(1), m.group(2)
    return not _TAG.search(think) and not _TAG.search(answer) and bool(answer.strip())


# ------------------------------------------------------------------------------- multiple choice

_BARE_LETTER = re.compile(
    r"[\s*\"'`]*(?:\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])[.:)]?)[\s*\"'`.]*"
)
_LEADING_LETTER = re.compile(
    r"[\s*\"'`]*(?:\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])[.:)](?=\s|$))"
)
_PHRASE_LETTER = re.compile(
    r"\b(?:answer|option|choice)s?\b"
    r"(?:\s+(?:is|would\s+be|should\s+be|will\s+be))?\s*[:=]?\s*"
    r"(?:(?:option|choice|letter)\s+)?[*\"'`]*\s*"
    r"(?:\(\s*([A-Za-z])\s*\)|\[\s*([A-Za-z])\s*\]|([A-Za-z])(?![A-Za-z]))",
    re.I,
)


def _first_group(m: re.Match) -> str:
    return next(g for g in m.groups() if g)


def _phrase_letter_ok(m: re.Match, text: str) -> bool:
    """A letter after "answer is" counts when bracketed, followed by punctuation or the end, or
    (capital letters other than the words "A" and "I") followed by a space."""
    if m.group(1) or m.group(2):
        return True
    letter, rest = m.group(3), text[m.end() :]
    if rest == "" or rest[0] in ".:),;!]*\"'`\n":
        return True
    if rest[0].isspace():
        return letter.isupper() and letter not in "AI" or not rest.strip()
    return False


def _normalise(s: str) -> str:
    s = re.sub(r"[^\w\s]", " ", s.lower())
    return " ".join(s.split())


def _strip_letter_prefix(option: str) -> str:
    """``"A. Apples."`` -> ``"Apples."`` (options written with their letter)."""
    return re.sub(r"^\s*\(?[A-Za-z][.):]\s+", "", option)


def parse_choice(text: str, n_options: int, options: Sequence[str] | None = None) -> int | None:
    """The 0-based option a multiple-choice answer picks, or None.

    Reads `answer_text(text)`. Rules, first hit wins; letters are case-insensitive and must be one
    of the first `n_options` letters (A, B, ...):

    1. the answer is just a letter: ``B``, ``(B)``, ``[B]``, ``B.``, ``B)``, ``b``, ``**B**``;
    2. it starts with a letter and a delimiter: ``B. a red car``, ``(B) a red car``, ``B: ...``;
    3. a phrase ``answer|option|choice [is|:] X`` — the last one in the text: ``Answer: B``,
       ``The answer is B) ...``, ``the correct option is (c)``. The letter must be bracketed or
       followed by punctuation or the end; a capital followed by a space also counts except
       ``A`` and ``I`` ("the answer is A man ..." is English, not option A);
    4. the last non-empty line is just a letter (reasoning, then the letter);
    5. option text, when `options` are given: the answer equals one option's text (case and
       punctuation ignored), else exactly one option's text occurs in it, or the longest of
       several does when no other has the same length ("the red car" picks "red car" over "car").
    """
    if n_options < 1 or n_options > 26:
        raise ValueError("n_options must be between 1 and 26")
    letters = string.ascii_uppercase[:n_options]

    def index(letter: str) -> int | None:
        up = letter.upper()
        return letters.index(up) if up in letters else None

    body = answer_text(text or "").strip()
    if not body:
        return None
    m = _BARE_LETTER.fullmatch(body)
    if m and (i := index(_first_group(m))) is not None:
        return i
    m = _LEADING_LETTER.match(body)
    if m and (i := index(_first_group(m))) is not None:
        return i
    for m in reversed(list(_PHRASE_LETTER.finditer(body))):
        if _phrase_letter_ok(m, body) and (i := index(_first_group(m))) is not None:
            return i
    lines = [line for line in body.splitlines() if line.strip()]
    if len(lines) > 1:
        m = _BARE_LETTER.fullmatch(lines[-1])
        if m and (i := index(_first_group(m))) is not None:
            return i
    if options:
        return _match_option_text(body, [str(o) for o in options[:n_options]])
    return None


def _match_option_text(body: str, options: list[str]) -> int | None:
    said = _normalise(body)
    texts = [_normalise(_strip_letter_prefix(o)) for o in options]
    exact = [i for i, t in enumerate(texts) if t and t == said]
    if len(exact) == 1:
        return exact[0]
    padded = f" {said} "
    found = [i for i, t in enumerate(texts) if t and f" {t} " in padded]
    if len(found) == 1:
        return found[0]
    if found:
        longest = max(len(texts[i]) for i in found)
        top = [i for i in found if len(texts[i]) == longest]
        if len(top) == 1:
            return top[0]
    return None
