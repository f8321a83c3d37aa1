"""``prolab classes``, ``prolab label-spaces`` and ``prolab describe``: option parsing only; the work is
in the stage modules."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ProlabError
from ..progress import is_quiet
from ..stage_options import DescribeOptions
from .options import classes_option, option, output_option, quiet_option

#: the defaults --help shows are the options dataclass's own (the flags left out take them anyway)
_D = DescribeOptions()


@click.command()
@click.argument("name", required=False)
@quiet_option
def classes(name: str | None) -> None:
    """List the built-in class lists, or print one (NAME: built-in name, alias or file)."""
    from ..classes import ALIASES, BUILTIN, load_classes

    if name is None:
        for key, what in BUILTIN.items():
            aliases = ", ".join(a for a, target in ALIASES.items() if target == key)
            count = len(load_classes(key))
            click.echo(f"{key:<18} {count:>4}  {what}" + (f" (aliases: {aliases})" if aliases else ""))
        return
    for class_name in load_classes(name):
        click.echo(class_name)


@click.command("label-spaces")
@quiet_option
def label_spaces() -> None:
    """List the shipped label spaces: name, the class lists it serves, classes, K, D, version, size.

    Any of its names works as --label-space (train, eval, predict, extend, inspect, MMSeg configs)."""
    from ..shipped import descriptions_path, shipped_spaces

    spaces = shipped_spaces()
    if not spaces:
        raise ProlabError("this installation ships no label space")
    click.echo(f"{'name':<30} {'serves':<24} {'classes':>7} {'K':>5} {'D':>4}  {'version':<12} {'size':>8}  embedded with")
    for space in spaces:
        m = space.manifest
        model = (m.get("provenance", {}).get("embed") or {}).get("model", "?")
        click.echo(f"{space.name:<30} {', '.join(space.lists) or '-':<24} {m['num_classes']:>7} {m['num_properties']:>5}"
                   f" {m['dim']:>4}  {m['version'][:12]:<12} {space.size_bytes() / 1e6:>6.2f} MB  {model}")
    lists = sorted({n for sp in spaces for n in sp.lists if descriptions_path(n)})
    click.echo(f"descriptions they were built from: label_spaces/descriptions/<list>.json ({', '.join(lists)})")


@click.command()
@classes_option(required=True, name="classes_")
@click.option("--llm", default=_D.llm, show_default=True,
              help="shipped (prolab's reviewed descriptions; the local model for classes they miss) | local |"
                   " llama-cpp:/path/model.gguf | openai:NAME | NAME (gpt-3.5 = gpt-3.5-turbo).")
@click.option("--template", default=_D.template, show_default=True,
              help="Shipped template (prolab, naive, visual-features, cupl) or a YAML file.")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama).")
@click.option("--jobs", "-j", default=_D.jobs, show_default=True, type=click.IntRange(min=1), help="Concurrent calls.")
@click.option("--min", "min_descriptions", default=_D.min, show_default=True, type=click.IntRange(min=1),
              help="Fewest valid descriptions per class.")
@click.option("--attempts", default=_D.attempts, show_default=True, type=click.IntRange(min=1),
              help="Replies asked per class (each retry with a new seed) before the class fails.")
@click.option("--seed", default=_D.seed, show_default=True, type=int, help="Seed of the first attempt.")
@click.option("--temperature", default=None, type=click.FloatRange(min=0), help="Override the template's temperature.")
@click.option("--max-tokens", default=None, type=click.IntRange(min=1), help="Override the template's max_tokens.")
@option("--prompt-mode", "mode", old_names=("--mode",), default=_D.mode, show_default=True,
        type=click.Choice(["auto", "chat", "completion"]),
              help="Prompt as chat or as few-shot completion (auto: chat for APIs, by chat template for GGUF).")
@click.option("--threads", default=_D.threads, show_default=True, type=click.IntRange(min=1), help="CPU threads of a local model.")
@click.option("--n-ctx", default=_D.n_ctx, show_default=True, type=click.IntRange(min=256), help="Context of a local model.")
@click.option("--timeout", default=_D.timeout, show_default=True, type=click.FloatRange(min=0.01), help="Seconds per API call.")
@click.option("--max-retries", default=_D.max_retries, show_default=True, type=click.IntRange(min=0),
              help="Retries of a call on 429/5xx/timeouts/connection errors.")
@click.option("--backoff", default=_D.backoff, show_default=True, type=click.FloatRange(min=0),
              help="First backoff delay in seconds (doubles per retry, with jitter).")
@click.option("--backoff-max", default=_D.backoff_max, show_default=True, type=click.FloatRange(min=0),
              help="Longest backoff delay in seconds.")
@click.option("--batch", is_flag=True,
              help="Ask every class's first reply through the OpenAI Batch API (half the price, results within 24 h; "
                   "a killed run reattaches to its batch); retries go the ordinary way.")
@click.option("--batch-poll", default=_D.batch_poll, show_default=True, type=click.FloatRange(min=0.01),
              help="Seconds between two looks at a batch.")
@quiet_option
@output_option("descriptions.json to write (plus descriptions.provenance.json)", required=True)
def describe(classes_, llm, template, base_url, jobs, min_descriptions, attempts, seed, temperature,
             max_tokens, mode, threads, n_ctx, timeout, max_retries, backoff, backoff_max, batch, batch_poll,
             output) -> None:
    """Describe every class with an LLM: {class: [descriptions]} JSON in class order."""
    from ..describe import provenance_path, run_describe
    from ..stage_options import DescribeOptions
    from .options import options_from_flags

    output = Path(output)
    overrides = {}
    if temperature is not None:
        overrides["temperature"] = temperature
    if max_tokens is not None:
        overrides["max_tokens"] = max_tokens
    options = options_from_flags(DescribeOptions, {"min": "min_descriptions"}, sampling=overrides)
    result = run_describe(classes_, output, options=options, progress=not is_quiet())
    for note in result.notes:
        click.echo(note, err=True)
    click.echo(result.summary(), err=True)
    click.echo(f"wrote {output} and {provenance_path(output)}", err=True)
    if result.failed:
        raise ProlabError(
            f"{len(result.failed)} class(es) got fewer than {options.min} valid descriptions after"
            f" {options.attempts} attempts (left out of {output}): {', '.join(result.failed)}"
        )
