"""What a good class description is, as rules a machine can check.

One home for the rules that the shipped description files are held to (``tests/test_shipped_descriptions.py``)
and that filter a local model's replies (:mod:`prolab_cli.describe`): no number or list marker in front,
no boilerplate ("may have a variety of ..."), no class name inside its own description, a length in words
between bounds, no repeated line within a class. Truth is not checkable here: that is the review's job
(``label_spaces/descriptions/REVIEW.md``). Standard library only.

``python -m prolab_cli.description_rules FILE.json [--classes LIST]`` prints every violation of a
``{class: [descriptions]}`` file, one per line, and exits 1 when there is any.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

MIN_WORDS = 2
MAX_WORDS = 16
MAX_CHARS = 120
MIN_PER_CLASS = 8
MAX_PER_CLASS = 12

#: phrases that say nothing about what a thing looks like (matched case-insensitively, on word bounds)
BOILERPLATE_PHRASES: tuple[str, ...] = (
    "a variety of",
    "variety of",
    "various",
    "many different",
    "different shapes and sizes",
    "different sizes and shapes",
    "comes in many",
    "come in many",
    "can be found in many",
    "found in many places",
    "can be found anywhere",
    "and more",
    "etc",
    "and so on",
    "such as furniture, appliances",
    "may have",
    "may be",
    "may feature",
    "may include",
    "can vary",
    "varies in",
    "vary in",
    "it is a",
    "it is an",
    "this is a",
    "used for many purposes",
    "has many uses",
)

_BOILERPLATE = re.compile(
    r"(?<![a-z])(?:" + "|".join(re.escape(p) for p in BOILERPLATE_PHRASES) + r")(?![a-z])", re.I
)
#: a list marker, a number, or a stray symbol before the first word
_PREFIX = re.compile(r"^\s*(?:\d|[-*+#>\u2022\u2013\u2014]|\(?[a-z][.)]\s)", re.I)
#: second parts of COCO-Stuff names that only qualify the first ("floor-other" is a floor)
_QUALIFIERS = {"other", "stuff", "merged"}
_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class Violation:
    """One broken rule: the class, the description (empty for class-level rules), the rule and why."""

    class_name: str
    description: str
    rule: str
    detail: str

    def line(self) -> str:
        """The violation as one readable line."""
        where = f"{self.class_name!r}" + (f": {self.description!r}" if self.description else "")
        return f"{where}: {self.rule} ({self.detail})"


def own_names(class_name: str) -> list[str]:
    """The names a description of ``class_name`` must not contain: the whole name (``-``, ``_`` and
    ``,`` read as a space), its first comma-separated term (ADE20K-847 lists synonyms after it), and for a
    COCO-Stuff ``X-other``/``X-stuff``/``X-merged`` the head ``X``."""
    whole = " ".join(re.sub(r"[,_-]", " ", class_name).casefold().split())
    first = " ".join(class_name.split(",")[0].replace("_", " ").replace("-", " ").casefold().split())
    names = {whole, first}
    parts = class_name.casefold().split(",")[0].split("-")
    if len(parts) == 2 and parts[1].strip() in _QUALIFIERS:
        names.add(parts[0].strip())
    return sorted(n for n in names if n)


def _name_pattern(name: str) -> re.Pattern:
    words = [re.escape(w) for w in name.split()]
    words[-1] += r"(?:s|es)?"
    return re.compile(r"(?<![a-z0-9])" + r"[\s-]+".join(words) + r"(?![a-z0-9])", re.I)


def boilerplate(description: str) -> str | None:
    """The boilerplate phrase ``description`` contains, or None."""
    match = _BOILERPLATE.search(description)
    return match.group(0) if match else None


def has_number_prefix(description: str) -> bool:
    """True when ``description`` starts with a digit, a list marker or a stray symbol."""
    return bool(_PREFIX.match(description))


def names_class(description: str, class_name: str) -> str | None:
    """The class's own name as it appears inside ``description``, or None."""
    for name in own_names(class_name):
        match = _name_pattern(name).search(description)
        if match:
            return match.group(0)
    return None


def word_count(description: str) -> int:
    """Words in ``description`` (hyphenated words count once)."""
    return len(_WORD.findall(description.replace("-", "")))


def description_violations(class_name: str, description: str) -> list[Violation]:
    """Every rule one description of ``class_name`` breaks."""
    found: list[Violation] = []

    def add(rule: str, detail: str) -> None:
        found.append(Violation(class_name, description, rule, detail))

    if description != description.strip() or "  " in description or "\n" in description:
        add("white space", "leading, trailing, doubled or newline")
    if has_number_prefix(description):
        add("number prefix", f"starts with {description.strip()[:3]!r}")
    phrase = boilerplate(description)
    if phrase:
        add("boilerplate", f"contains {phrase!r}")
    named = names_class(description, class_name)
    if named:
        add("own name", f"contains {named!r}")
    words = word_count(description)
    if not MIN_WORDS <= words <= MAX_WORDS:
        add("length", f"{words} words, allowed {MIN_WORDS}-{MAX_WORDS}")
    if len(description) > MAX_CHARS:
        add("length", f"{len(description)} characters, allowed {MAX_CHARS}")
    if description.rstrip().endswith((".", ";", ",", ":")):
        add("punctuation", "ends with a punctuation mark")
    if description[:1].islower():
        add("capital", "starts in lower case")
    return found


def _same(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.casefold()).split())


def file_violations(
    descriptions: Mapping[str, Sequence[str]],
    classes: Sequence[str] | None = None,
    per_class: tuple[int, int] = (MIN_PER_CLASS, MAX_PER_CLASS),
) -> list[Violation]:
    """Every rule a ``{class: [descriptions]}`` mapping breaks: the per-description rules, a count of
    descriptions outside ``per_class``, a description repeated within its class, and (given
    ``classes``) keys that are not exactly the class list in its order."""
    found: list[Violation] = []
    if classes is not None and list(descriptions) != list(classes):
        missing = [c for c in classes if c not in descriptions]
        extra = [c for c in descriptions if c not in set(classes)]
        detail = f"missing {missing[:5]}, extra {extra[:5]}" if missing or extra else "order differs"
        found.append(Violation("*", "", "class list", detail))
    for class_name, lines in descriptions.items():
        if not isinstance(lines, (list, tuple)) or not all(isinstance(x, str) for x in lines):
            found.append(Violation(class_name, "", "type", "expected a list of strings"))
            continue
        if not per_class[0] <= len(lines) <= per_class[1]:
            found.append(Violation(class_name, "", "count",
                                   f"{len(lines)} descriptions, allowed {per_class[0]}-{per_class[1]}"))
        seen: set[str] = set()
        for line in lines:
            found.extend(description_violations(class_name, line))
            key = _same(line)
            if key in seen:
                found.append(Violation(class_name, line, "duplicate", "repeated within the class"))
            seen.add(key)
    return found


def main(argv: Iterable[str] | None = None) -> int:
    """Lint a description file from the command line (see the module docstring)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m prolab_cli.description_rules")
    parser.add_argument("file")
    parser.add_argument("--classes", help="a class-list file the keys must equal, in order")
    args = parser.parse_args(list(argv) if argv is not None else None)
    with open(args.file, encoding="utf-8") as handle:
        data = json.load(handle)
    classes = None
    if args.classes:
        with open(args.classes, encoding="utf-8") as handle:
            classes = [line.strip() for line in handle if line.strip()]
    found = file_violations(data, classes)
    for violation in found:
        print(violation.line())
    total = sum(len(v) for v in data.values() if isinstance(v, list))
    print(f"{len(data)} classes, {total} descriptions, {len(found)} violations")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
