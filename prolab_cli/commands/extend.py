"""CLI command ``prolab extend``: a new label-space version over the same centres."""

from __future__ import annotations

import click

from .options import out_dir_option, quiet_option


@click.command()
@click.argument("artifact")
@click.option("--descriptions", type=click.Path(dir_okay=False), default=None,
              help="{class: [descriptions]} JSON of the classes to add")
@click.option("--keep", default=None, help="classes to keep: a class-list file, a descriptions JSON, or a comma list")
@click.option("--name", default=None, help="name of the new artifact (default: <parent>-extended or <parent>-subset)")
@out_dir_option("where to write it (default: beside the parent)", old_names=("-o",))
@quiet_option
def extend(artifact, descriptions, keep, name, out_dir):
    """Add classes never trained on to ARTIFACT (their descriptions embedded with the artifact's own
    model, each assigned to the nearest existing centre), and/or keep a subset of its classes. The
    centres stay the same, so a model trained on ARTIFACT labels the new classes
    (prolab eval/predict --label-space NEW)."""
    from ..extend import run_extend

    space, path, report = run_extend(artifact, descriptions, keep, name, out_dir)
    for row in report:
        for line in row.lines():
            click.echo(line)
    parent = space.manifest["provenance"].get("extended_from") or space.manifest["provenance"].get("subset_of")
    click.echo(f"{path}  version {space.version}  C={space.num_classes} K={space.num_properties} D={space.dim}"
               f"  (parent {parent['name']} {parent['version']}, same centres)")


@click.command("name-properties")
@click.argument("artifact")
@click.option("--llm", default="local", show_default=True,
              help="local (offline Gemma GGUF), llama-cpp:/path/model.gguf, or an OpenAI-compatible model name")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="threads of a local model")
@click.option("--members", type=click.IntRange(min=1), default=8, show_default=True, help="member descriptions shown per property")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the first LLM call per property")
@click.option("--name", default=None, help="name of the new artifact (default: <parent>-named)")
@out_dir_option("where to write it (default: beside the parent)", old_names=("-o",))
@quiet_option
def name_properties(artifact, llm, base_url, threads, members, seed, name, out_dir):
    """Ask an LLM for a short readable name per property of ARTIFACT (from its member descriptions);
    writes a new version with the names stored as llm_name beside the nearest-to-centre names."""
    from ..naming import run_name_properties

    space, path = run_name_properties(artifact, llm, base_url=base_url, threads=threads, members=members,
                                      seed=seed, name=name, out_dir=out_dir)
    for prop in space.properties:
        click.echo(f"{prop['id']:4d}  {prop['llm_name'] or '(no usable name)'}  (nearest: {prop['name'][:50]})")
    unnamed = space.manifest["provenance"]["name_properties"]["unnamed"]
    if unnamed:
        click.echo(f"warning: {len(unnamed)} properties got no usable name from the LLM: {unnamed}", err=True)
    click.echo(f"{path}  version {space.version}")
