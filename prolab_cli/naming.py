"""Readable property names: ask an LLM (a describe backend, through the reply cache) for a short
name per property from its member descriptions, as the paper's property files have.

The names are stored as ``llm_name`` beside each property's ``name`` (the member description
nearest the centre), so the artifact's payload changes: the result is a new version whose
provenance records the parent, the backend and the prompt.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .artifact import LabelSpace
from .cache import Cache
from .errors import ProlabError
from .llm import Backend, RetryPolicy
from .templates import Prompt

SYSTEM = "You name groups of visual descriptions with a short phrase."
INSTRUCTION = ("These descriptions of object classes fall in one group:\n{bullets}\n"
               "Name what they have in common in 2 to 6 words.")
EXAMPLE_BULLETS = ("- wall: a flat vertical surface\n- building: tall vertical walls of brick\n"
                   "- fence: upright boards side by side")
EXAMPLE_NAME = "Upright flat vertical structure"
MAX_NAME_CHARS = 80


def property_prompt(members: list[str], mode: str) -> Prompt:
    """The prompt asking for one property's name (chat, or few-shot completion for base models)."""
    bullets = "\n".join(f"- {m}" for m in members)
    if mode == "chat":
        return Prompt("chat", (("system", SYSTEM), ("user", INSTRUCTION.format(bullets=bullets))))
    text = (f"{SYSTEM}\n\nDescriptions:\n{EXAMPLE_BULLETS}\nName: {EXAMPLE_NAME}\n\n"
            f"Descriptions:\n{bullets}\nName:")
    return Prompt("completion", text=text, stop=("\n",))


def parse_name(text: str) -> str:
    """The first non-empty line, without bullets, quotes, a ``Name:`` label or a final full stop."""
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*•]\s*|name\s*:\s*)", "", line.strip(), flags=re.IGNORECASE)
        line = line.strip(" \t\"'`*.")
        if line:
            return line[:MAX_NAME_CHARS]
    return ""


def _members(prop: dict, limit: int) -> list[str]:
    members = list(prop.get("members") or [])
    return members[:limit] if members else [prop["name"]]


def name_properties_with_llm(
    space: LabelSpace,
    backend: Backend,
    *,
    members: int = 8,
    seed: int = 0,
    attempts: int = 2,
    cache: Cache | None = None,
    retry: RetryPolicy | None = None,
    name: str | None = None,
) -> LabelSpace:
    """A new version of ``space`` whose properties carry an ``llm_name`` (cached replies reused).

    A property whose replies (greedy, then sampled) are empty or echo the prompt's example gets
    ``llm_name`` None and is listed under ``unnamed`` in the provenance, never a made-up name."""
    from .describe import cached_completion

    if members < 1:
        raise ProlabError(f"name_properties.members must be at least 1, not {members}")
    cache = cache if cache is not None else Cache()
    retry = retry or RetryPolicy()
    first = {"temperature": 0.0, "max_tokens": 24}
    later = {**first, "temperature": 0.7}  # a greedy reply would only repeat itself
    props, unnamed = [], []
    calls = hits = 0
    for prop in space.properties:
        prompt = property_prompt(_members(prop, members), backend.mode)
        found = ""
        for attempt in range(attempts):
            sampling = first if attempt == 0 else later
            completion, cached = cached_completion(cache, backend, prompt, sampling, seed + attempt, retry,
                                                   what=f"property {prop['id']}")
            hits, calls = hits + cached, calls + (not cached)
            found = parse_name(completion.text)
            if found.lower() == EXAMPLE_NAME.lower():  # the few-shot example echoed, not an answer
                found = ""
            if found:
                break
        if not found:
            unnamed.append(prop["id"])
        props.append(dict(prop, llm_name=found or None))
    provenance = dict(space.manifest.get("provenance") or {})
    provenance["named_from"] = {"name": space.name, "version": space.version}
    provenance["name_properties"] = {
        "llm": backend.identity(), "sampling": [first, later][:attempts], "seed": seed, "members_per_prompt": members,
        "prompt_sha256": hashlib.sha256((SYSTEM + INSTRUCTION + EXAMPLE_BULLETS + EXAMPLE_NAME).encode()).hexdigest(),
        "calls": calls, "cache_hits": hits, "unnamed": unnamed,
    }
    arrays = {}
    if space.embeddings is not None:
        arrays = dict(embeddings=space.embeddings, desc_class=space.desc_class, desc_cluster=space.desc_cluster)
    return LabelSpace(name or f"{space.name}-named", space.classes, space.multi_hot, space.centres, props,
                      space.descriptions, {"provenance": provenance}, **arrays)


def run_name_properties(
    artifact: str | os.PathLike, llm: str, *, base_url: str | None = None, threads: int = 1, members: int = 8,
    seed: int = 0, name: str | None = None, out_dir: str | os.PathLike | None = None,
) -> tuple[LabelSpace, Path]:
    """The ``prolab name-properties`` stage: load, name every property, save the new version."""
    from .artifact import resolve_artifact_path
    from .llm import resolve_backend

    path = resolve_artifact_path(artifact)
    space = LabelSpace.load(path)
    backend = resolve_backend(llm, base_url=base_url, threads=threads)
    try:
        named = name_properties_with_llm(space, backend, members=members, seed=seed, name=name)
    finally:
        backend.close()
    from .shipped import beside

    target = Path(out_dir) if out_dir is not None else beside(path)
    if (target / named.name).resolve() == path.resolve():
        raise ProlabError(f"the new version would overwrite its parent {path}; give another name_properties.name or out_dir")
    return named, named.save(target)
