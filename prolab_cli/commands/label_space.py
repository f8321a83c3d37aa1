"""CLI commands of the label-space stages: embed, cluster, build, pipeline, inspect, bank import/export.

Each command parses its options and calls one stage function.
"""

from __future__ import annotations

import click

from ..stage_options import BuildOptions, ClusterOptions, EmbedOptions
from ..progress import is_quiet
from .options import (classes_option, embedding_options, options_from_flags, out_dir_option, output_option, quiet_option,
                      threads_option)

_SPACES_DIR = "folder the artifact directory goes in"


@click.command()
@click.argument("descriptions", type=click.Path(dir_okay=False))
@embedding_options
@threads_option
@click.option("--drop-empty", is_flag=True, help="leave out classes that have no descriptions")
@classes_option("the dataset's class list (built-in name, alias or file): the file's class names are reconciled "
                "with it and replaced by its names (each non-exact match printed)", name="classes_spec")
@output_option("embeddings .safetensors", required=True)
@quiet_option
def embed(descriptions, model, backend, pooling, lowercase, batch_size, threads, download, drop_empty, classes_spec,
          output):
    """Embed every description (and class name) of DESCRIPTIONS ({class: [descriptions]} JSON)."""
    from ..embed import run_embed

    result, notes = run_embed(descriptions, output, options=options_from_flags(EmbedOptions), progress=not is_quiet(),
                              classes_spec=classes_spec)
    for note in notes:
        click.echo(note, err=True)
    click.echo(result.report(output))


@click.command()
@click.argument("embeddings", type=click.Path(dir_okay=False))
@click.option("-k", "k", type=click.IntRange(min=1), default=None,
              help="number of properties (clusters); needs -o. Give -k or --sweep, not both")
@click.option("--seed", type=int, default=0, show_default=True, help="k-means random_state")
@click.option("--n-init", default="auto", show_default=True, help="'auto' or a number of k-means restarts")
@click.option("--distinct", is_flag=True,
              help="k-means over each distinct description text once (the paper pools every description)")
@click.option("--backend", type=click.Choice(["auto", "sklearn", "faiss"]), default="auto", show_default=True,
              help="k-means implementation; auto: sklearn below 50,000 points (the paper's), faiss-cpu above when installed")
@click.option("--sweep", "sweep_ks", default=None,
              help="comma-separated Ks: print inertia/silhouette/collisions for each (writes nothing)")
@output_option("clusters .safetensors")
@quiet_option
def cluster(embeddings, k, seed, n_init, distinct, backend, sweep_ks, output):
    """k-means over all description embeddings of EMBEDDINGS pooled (or each distinct text once)."""
    from ..cluster import run_cluster

    if (k is None) == (sweep_ks is None):
        raise click.UsageError("give -k K (with -o FILE) to cluster, or --sweep K1,K2,... to compare Ks; "
                               + ("not both" if k is not None else "one of them is required"))
    if k is not None and output is None:
        raise click.UsageError("-k needs -o FILE (the clusters .safetensors to write)")

    click.echo(run_cluster(embeddings, output, options=options_from_flags(ClusterOptions), sweep_ks=sweep_ks))


@click.command()
@click.option("--descriptions", type=click.Path(dir_okay=False), default=None,
              help="descriptor JSON (checked against the embeddings)")
@click.option("--embeddings", required=True, type=click.Path(dir_okay=False), help="embeddings .safetensors (prolab embed)")
@click.option("--clusters", required=True, type=click.Path(dir_okay=False), help="clusters .safetensors (prolab cluster)")
@click.option("--name", required=True, help="artifact name, e.g. ade20k-bge-base-k256")
@out_dir_option(_SPACES_DIR, default="label_spaces", old_names=("-o",))
@click.option("--allow-collisions", is_flag=True, help="accept classes with identical property rows")
@click.option("--property-names", type=click.Path(dir_okay=False), default=None,
              help='readable property names, JSON {"properties": [{"id", "name", "nearest"}]} (nearest: the member '
                   "description nearest the centre, checked)")
@click.option("--keep-embeddings/--no-embeddings", default=True, show_default=True,
              help="store every description's embedding in the artifact (leave them out to keep it small)")
@quiet_option
def build(descriptions, embeddings, clusters, name, out_dir, allow_collisions, property_names, keep_embeddings):
    """Build the versioned label-space artifact from embeddings and clusters."""
    from ..build import run_build

    space, path = run_build(embeddings, clusters, name, out_dir, descriptions_path=descriptions,
                            options=options_from_flags(BuildOptions))
    click.echo(f"{path}  version {space.version}  C={space.num_classes} K={space.num_properties} D={space.dim}")
    collisions = space.collisions()
    if collisions:
        click.echo(f"warning: collisions accepted: {collisions}", err=True)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.option("--force", is_flag=True, help="re-run every stage even when nothing changed")
@quiet_option
def pipeline(config, force):
    """Run describe -> embed -> cluster -> build from a YAML CONFIG, skipping unchanged stages."""
    from ..pipeline import run_pipeline

    result = run_pipeline(config, force=force, echo=click.echo)
    click.echo(f"{result.path}  version {result.space.version}")


@click.command()
@click.argument("artifact")
@click.option("--class", "cls", default=None, help="show the properties of this class")
@click.option("--property", "prop", type=int, default=None, help="show the members of property K")
@click.option("--similar", default=None, help="classes sharing most properties with this class")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="rows for --similar")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="write the class x property matrix")
@quiet_option
def inspect(artifact, cls, prop, similar, top, plot):
    """Describe a label-space ARTIFACT (directory, or the name of a shipped one)."""
    from ..inspection import run_inspect

    click.echo(run_inspect(artifact, cls, prop, similar, plot, top))


@click.command("import-bank")
@click.argument("bank", type=click.Path(dir_okay=False))
@click.option("--name", required=True, help="artifact name")
@click.option("--key", default=None, help="bank entry, if the file holds several")
@classes_option("the dataset's class list (built-in name, alias or file); the bank's names are reconciled with it "
                "[default: implied by a released file name (ade_desc_... -> ade20k), else the bank's own names]",
                name="classes_spec")
@out_dir_option(_SPACES_DIR, default="label_spaces", old_names=("-o",))
@click.option("--trust-pickle", is_flag=True, help="allow a bank that holds more than tensors (runs pickle code)")
@quiet_option
def import_bank(bank, name, key, classes_spec, out_dir, trust_pickle):
    """Import ProLab's embedding-bank .pth as a verified artifact."""
    from ..interop import import_notes, run_import_bank

    space, path = run_import_bank(bank, name, out_dir, key, classes_spec, trust_pickle)
    for line in import_notes(space):
        click.echo(line, err=True)
    click.echo(f"{path}  version {space.version}  C={space.num_classes} K={space.num_properties} D={space.dim}")


@click.command("export-bank")
@click.argument("artifact")
@output_option("bank .pth file to write")
@out_dir_option("folder for the released file name <dataset>_desc_<model>_gpt3.5_cluster_<K>_embedding_bank.pth"
                "  [default: embeddings/ when no -o]")
@click.option("--key", default=None,
              help="entry name [default: <model>_gpt3.5_cluster_<K>_embeddings_and_labels, "
                   "e.g. bge-base-en-v1.5_gpt3.5_cluster_256_embeddings_and_labels]")
@click.option("--dataset", default=None,
              help="dataset part of the file name: ade, coco_stuff_164k, pascal_context_59, cityscapes_bdd or any "
                   "[default: from the artifact's class list]")
@quiet_option
def export_bank(artifact, output, out_dir, key, dataset):
    """Export an artifact as ProLab's embedding-bank .pth (the file and entry the released configs load)."""
    from ..interop import run_export_bank

    if output and out_dir:
        raise click.UsageError("-o/--output names the bank file, --out-dir a folder for its released name: give one")
    if output and not output.endswith(".pth"):
        click.echo("Warning: -o with a folder is deprecated in prolab export-bank; use --out-dir "
                   "(the old spelling goes in the next release)", err=True)
    path, key = run_export_bank(artifact, output or out_dir, key, dataset)
    click.echo(f"{path}  entry {key!r}")


@click.command("import-properties", short_help="Build an artifact from the paper's property file (class-property "
               "assignment and property names from the file, centres from MODEL).")
@click.argument("properties", type=click.Path(dir_okay=False))
@classes_option("the dataset's class list (built-in name, alias or file)", required=True, name="classes_spec")
@embedding_options
@click.option("--name", default=None, help="artifact name [default: <file stem>-<model>]")
@out_dir_option(_SPACES_DIR, default="label_spaces", old_names=("-o",))
@click.option("--allow-collisions", is_flag=True, help="accept classes with identical property rows")
@quiet_option
def import_properties(properties, classes_spec, model, backend, pooling, lowercase, batch_size, download, name,
                      out_dir, allow_collisions):
    """Build an artifact from the paper's property file ({property: ["class: description", ...]}):
    its class-property assignment, its property names, centres = mean of each property's member
    embeddings under MODEL."""
    from ..properties import run_import_properties

    options = options_from_flags(EmbedOptions)
    space, path, notes = run_import_properties(properties, classes_spec, options, name, out_dir, allow_collisions,
                                               progress=not is_quiet())
    for line in notes:
        click.echo(line, err=True)
    click.echo(f"{path}  version {space.version}  C={space.num_classes} K={space.num_properties} D={space.dim}")
