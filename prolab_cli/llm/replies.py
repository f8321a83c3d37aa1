"""Reply text -> candidate lines (bullets, numbered lists, JSON arrays) -> validated descriptions."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Iterable

from ..description_rules import boilerplate, has_number_prefix

_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2013\u2014+])\s+(.*\S)\s*$")
_NUMBERED = re.compile(r"^\s*\(?\d{1,3}[.)]\s+(.*\S)\s*$")
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*\s*/?>")
_NUMBER = re.compile(r"\d+(?:st|nd|rd|th)?")


def parse_reply(text: str, parser: str = "auto") -> list[str]:
    """Candidate description lines of a reply, in order.

    ``bullets``: lines starting with ``-``, ``*``, ``•``; ``numbered``: ``1.`` / ``1)``;
    ``json``: a JSON array of strings (or an object holding one), also inside a code fence;
    ``auto``: a JSON array when the reply holds one, else bullet and numbered lines.
    Lines without a list marker (preambles, headings) are never candidates.
    """
    if parser == "json":
        return _json_items(text) or []
    if parser == "bullets":
        return _marked(text, (_BULLET,))
    if parser == "numbered":
        return _marked(text, (_NUMBERED,))
    if parser == "auto":
        items = _json_items(text)
        return items if items is not None else _marked(text, (_BULLET, _NUMBERED))
    raise ValueError(f"unknown reply parser {parser!r}")


def _marked(text: str, patterns: tuple[re.Pattern, ...]) -> list[str]:
    lines = []
    for line in text.splitlines():
        for pattern in patterns:
            match = pattern.match(line)
            if match:
                lines.append(match.group(1))
                break
    return lines


def _json_items(text: str) -> list[str] | None:
    """The strings of the first JSON array in ``text``, or None when there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        start = candidate.find("[")
        brace = candidate.find("{")
        if brace != -1 and (start == -1 or brace < start):
            start = brace
        if start == -1:
            continue
        try:
            value, _ = json.JSONDecoder().raw_decode(candidate[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            lists = [v for v in value.values() if isinstance(v, list)]
            value = lists[0] if len(lists) == 1 else None
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
    return None


def _content_words(text: str) -> set[str]:
    """Words of three letters or more, lower-cased, with a plural or past-tense ending cut off."""
    return {re.sub(r"(?:ed|es|s)$", "", w) for w in re.findall(r"[a-z]{3,}", text.casefold())}


def _copies_example(line: str, example_words: list[set[str]]) -> bool:
    """True when most (>= 60 %) of ``line``'s content words are those of one example line."""
    words = _content_words(line)
    return bool(words) and any(len(words & ex) >= 0.6 * len(words) for ex in example_words)


@dataclass
class Validated:
    """The kept descriptions and why the others were dropped (reason -> lines)."""

    kept: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, line: str) -> None:
        """Record ``line`` as dropped for ``reason``."""
        self.dropped.setdefault(reason, []).append(line)


def norm(text: str) -> str:
    """Comparison form of a line: case-folded, white space collapsed, final full stop removed."""
    return " ".join(text.casefold().split()).rstrip(".").strip()


def repeat_key(text: str) -> str:
    """Form in which two lines are duplicates: :func:`norm` with numbers ignored, so a small
    model counting "1st floor", "2nd floor", ... repeats itself."""
    return _NUMBER.sub("#", norm(text))


def validate(
    lines: list[str],
    *,
    class_name: str,
    prompt_text: str = "",
    allowed_echo: Iterable[str] = (),
    truncated: bool = False,
    max_chars: int = 300,
    max_descriptions: int | None = None,
    example_lines: Iterable[str] = (),
    lint: bool = False,
) -> Validated:
    """Clean candidate lines: strip quotes and markup (``**``, HTML tags), drop empty lines,
    duplicates (case-insensitive; lines differing only in numbers count as duplicates, which
    catches a small model counting "1st floor", "2nd floor", ...), the class name alone, headings ending in ``:``, lines copied from the
    prompt (except ``allowed_echo``, the example lines of the class itself), lines without a
    letter, over-long lines, and the last line of a reply cut off by the token limit. With ``lint``
    (a small local model's replies) also lines starting with a number, boilerplate
    (:mod:`prolab_cli.description_rules`) and lines whose words mostly come from one of
    ``example_lines`` (the few-shot examples leaking into the answer)."""
    result = Validated()
    if truncated and lines:
        result.drop("cut off by max_tokens", lines[-1])
        lines = lines[:-1]
    prompt_lines = {norm(line.lstrip("-*• ")) for line in prompt_text.splitlines()} - {""}
    allowed = {norm(line) for line in allowed_echo or ()}
    names = {norm(class_name), norm(class_name.replace("_", " "))}
    example_words = [_content_words(line) for line in example_lines if norm(line) not in allowed]
    seen: set[str] = set()
    for raw in lines:
        line = _TAG.sub("", raw).strip().strip("`\"'").replace("**", "").strip()
        key = norm(line)
        dup_key = repeat_key(line)
        if not key:
            result.drop("empty", raw)
        elif not any(ch.isalpha() for ch in key):
            result.drop("no words", raw)
        elif key in names or key.rstrip(":").strip() in names:
            result.drop("class name alone", raw)
        elif key.endswith(":"):
            result.drop("heading", raw)
        elif len(line) > max_chars:
            result.drop("too long", raw)
        elif key in prompt_lines and key not in allowed:
            result.drop("echoed prompt", raw)
        elif lint and has_number_prefix(line):
            result.drop("number prefix", raw)
        elif lint and boilerplate(line):
            result.drop("boilerplate", raw)
        elif lint and _copies_example(line, example_words):
            result.drop("copied from an example", raw)
        elif dup_key in seen:
            result.drop("duplicate", raw)
        elif max_descriptions is not None and len(result.kept) >= max_descriptions:
            result.drop("over max_descriptions", raw)
        else:
            seen.add(dup_key)
            result.kept.append(line)
    return result
