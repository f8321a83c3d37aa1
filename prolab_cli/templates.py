"""Prompt templates: YAML files that say how to ask an LLM for a class's descriptions.

A template has a system text, a user text with ``{class_name}`` (and optionally ``{examples}``),
few-shot examples (class name + description list) rendered with ``example_format``, a reply
parser name, sampling parameters, and a ``completion`` block that says how a base (non-chat)
model is prompted: preamble, the examples, then the query with an answer prefix to continue.
Only ``{class_name}``, ``{examples}`` and ``{bullets}`` are substituted; other braces are literal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .classes import normalise
from .errors import ProlabError
from .paths import data_dir

DEFAULT_TEMPLATE = "prolab"
ALIASES = {"paper": "prolab", "structured": "prolab", "menon": "visual-features"}
PARSERS = ("bullets", "numbered", "json", "auto")
_SAMPLING_KEYS = {"temperature", "top_p", "max_tokens", "retry_temperature"}


@dataclass(frozen=True)
class Example:
    """One few-shot example: a class name and its descriptions."""

    class_name: str
    descriptions: tuple[str, ...]


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt for one class, in the form one backend mode needs."""

    mode: str  # "chat" or "completion"
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) for chat mode
    text: str = ""  # the prompt for completion mode
    answer_prefix: str = ""  # already in ``text``; put back in front of the reply before parsing
    stop: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON form (the cache key and provenance use it)."""
        if self.mode == "chat":
            return {"mode": "chat", "messages": [{"role": r, "content": c} for r, c in self.messages]}
        return {"mode": "completion", "text": self.text, "stop": list(self.stop)}

    def visible_text(self) -> str:
        """All prompt text the model saw (to spot echoed lines)."""
        if self.mode == "chat":
            return "\n".join(content for _, content in self.messages)
        return self.text


@dataclass(frozen=True)
class Template:
    """A parsed prompt template."""

    name: str
    source: str
    sha256: str
    user: str
    system: str = ""
    description: str = ""
    examples: tuple[Example, ...] = ()
    example_format: str = "{class_name}:\n{bullets}"
    completion_preamble: str = ""
    completion_examples: tuple[Example, ...] = ()  # a base model's few-shot examples (default: ``examples``)
    answer_prefix: str = "- "
    stop: tuple[str, ...] = ("\n\n",)
    parser: str = "auto"
    sampling: dict[str, float | int] = field(default_factory=dict)
    max_descriptions: int | None = None

    def format_example(self, class_name: str, descriptions: tuple[str, ...] | list[str]) -> str:
        """One example (or, with no descriptions, the query head) in ``example_format``."""
        bullets = "\n".join(f"- {d}" for d in descriptions)
        text = self.example_format.replace("{class_name}", class_name).replace("{bullets}", bullets)
        return text if descriptions else text.rstrip(" ")

    def mode_examples(self, mode: str) -> tuple[Example, ...]:
        """The few-shot examples a prompt in ``mode`` shows."""
        return self.completion_examples if mode == "completion" and self.completion_examples else self.examples

    def examples_block(self, mode: str = "chat") -> str:
        """The few-shot examples of ``mode``, separated by blank lines."""
        return "\n\n".join(self.format_example(e.class_name, e.descriptions) for e in self.mode_examples(mode))

    def render(self, class_name: str, mode: str) -> Prompt:
        """The prompt asking for ``class_name`` (``_`` read as a space) in ``mode``."""
        name = display_name(class_name)
        if mode == "chat":
            user = self.user.replace("{examples}", self.examples_block()).replace("{class_name}", name)
            messages = ((("system", self.system),) if self.system else ()) + (("user", user.strip()),)
            return Prompt(mode="chat", messages=messages)
        if mode == "completion":
            parts = [self.completion_preamble.strip(), self.examples_block(mode)]
            query = self.format_example(name, ())
            head = "\n\n".join(p for p in parts if p)
            text = (head + "\n\n" if head else "") + query + self.answer_prefix
            return Prompt(
                mode="completion", text=text, answer_prefix=self.answer_prefix, stop=self.stop
            )
        raise ValueError(f"unknown prompt mode {mode!r}")

    def example_lines(self, class_name: str | None = None, mode: str | None = None) -> set[str]:
        """The example descriptions of ``class_name`` when it is itself an example class (every
        example line when ``class_name`` is None), of ``mode``'s examples or of all."""
        examples = self.mode_examples(mode) if mode else self.examples + self.completion_examples
        key = normalise(class_name) if class_name is not None else None
        return {d for e in examples if key is None or normalise(e.class_name) == key for d in e.descriptions}


def display_name(class_name: str) -> str:
    """The class name as the LLM sees it: ``_`` -> space, stripped (as the paper did)."""
    return " ".join(class_name.replace("_", " ").split())


def template_names() -> list[str]:
    """Names of the shipped templates."""
    return sorted(p.stem for p in data_dir("prompts").glob("*.yaml"))


def load_template(name_or_path: str | Path = DEFAULT_TEMPLATE) -> Template:
    """A shipped template by name (``prolab``, ``naive``, ``visual-features``) or a YAML file."""
    text_name = str(name_or_path)
    shipped = data_dir("prompts") / f"{ALIASES.get(text_name, text_name)}.yaml"
    path = shipped if shipped.is_file() else Path(text_name).expanduser()
    if not path.is_file():
        raise ProlabError(
            f"template {text_name!r} is neither a shipped template ({', '.join(template_names())})"
            " nor a file"
        )
    raw = path.read_bytes()
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProlabError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_template(data, str(path), hashlib.sha256(raw).hexdigest())


def parse_template(data: Any, source: str, sha256: str = "") -> Template:
    """Validate the YAML mapping ``data`` of a template; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ProlabError(f"{source}: a template must be a YAML mapping")
    known = {
        "name", "description", "system", "user", "examples", "example_format", "completion",
        "parser", "sampling", "max_descriptions",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ProlabError(f"{source}: unknown field(s) {', '.join(unknown)}")
    user = _field(data, "user", str, source, required=True)
    if "{class_name}" not in user:
        raise ProlabError(f"{source}: field 'user' must contain {{class_name}}")
    example_format = _field(data, "example_format", str, source) or "{class_name}:\n{bullets}"
    for placeholder in ("{class_name}", "{bullets}"):
        if placeholder not in example_format:
            raise ProlabError(f"{source}: field 'example_format' must contain {placeholder}")
    examples = _examples(_field(data, "examples", list, source), f"{source}: examples")
    completion = _field(data, "completion", dict, source) or {}
    bad = sorted(set(completion) - {"preamble", "answer_prefix", "stop", "examples"})
    if bad:
        raise ProlabError(f"{source}: unknown field(s) completion.{', completion.'.join(bad)}")
    stop = completion.get("stop", ["\n\n"])
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ProlabError(f"{source}: field 'completion.stop' must be a list of non-empty texts")
    parser = _field(data, "parser", str, source) or "auto"
    if parser not in PARSERS:
        raise ProlabError(f"{source}: field 'parser' must be one of {', '.join(PARSERS)}, not {parser!r}")
    sampling = _field(data, "sampling", dict, source) or {}
    bad = sorted(set(sampling) - _SAMPLING_KEYS)
    if bad:
        raise ProlabError(f"{source}: unknown field(s) sampling.{', sampling.'.join(bad)}")
    for key, value in sampling.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ProlabError(f"{source}: field 'sampling.{key}' must be a non-negative number")
    max_descriptions = data.get("max_descriptions")
    if max_descriptions is not None and (not isinstance(max_descriptions, int) or max_descriptions < 1):
        raise ProlabError(f"{source}: field 'max_descriptions' must be a positive integer")
    return Template(
        name=_field(data, "name", str, source) or Path(source).stem,
        source=source,
        sha256=sha256,
        user=user,
        system=_field(data, "system", str, source) or "",
        description=_field(data, "description", str, source) or "",
        examples=tuple(examples),
        example_format=example_format,
        completion_preamble=_text(completion.get("preamble"), "completion.preamble", source),
        completion_examples=_examples(_field(completion, "examples", list, source), f"{source}: completion.examples"),
        answer_prefix=_text(completion.get("answer_prefix", "- "), "completion.answer_prefix", source),
        stop=tuple(stop),
        parser=parser,
        sampling=dict(sampling),
        max_descriptions=max_descriptions,
    )


def _examples(items: list | None, where: str) -> tuple[Example, ...]:
    """Few-shot examples from a YAML list of {class_name, descriptions}."""
    examples = []
    for index, item in enumerate(items or []):
        at = f"{where}[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("class_name"), str):
            raise ProlabError(f"{at}: needs 'class_name' (text) and 'descriptions' (list)")
        lines = item.get("descriptions")
        if not isinstance(lines, list) or not lines or not all(isinstance(s, str) and s.strip() for s in lines):
            raise ProlabError(f"{at}.descriptions: must be a non-empty list of non-empty texts")
        examples.append(Example(item["class_name"].strip(), tuple(s.strip() for s in lines)))
    return tuple(examples)


def _field(data: dict, key: str, kind: type, source: str, required: bool = False) -> Any:
    value = data.get(key)
    if value is None:
        if required:
            raise ProlabError(f"{source}: missing field '{key}'")
        return None
    if not isinstance(value, kind):
        raise ProlabError(f"{source}: field '{key}' must be {kind.__name__}, not {type(value).__name__}")
    return value


def _text(value: Any, key: str, source: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProlabError(f"{source}: field '{key}' must be text")
    return value
