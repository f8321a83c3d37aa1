"""``prolab pipeline CONFIG.yaml``: describe -> embed -> cluster -> build, skipping unchanged stages.

A config (paths relative to the config file)::

    name: cityscapes-minilm-k32
    out_dir: label_spaces          # where the artifact directory goes
    work_dir: work/cityscapes      # intermediate files and stage stamps
    describe:                      # or `descriptions: FILE.json` to start from a file
      classes: cityscapes
      llm: local
      template: prolab
      min: 3
      attempts: 3
      seed: 0
      threads: 1
      sampling: {temperature: 0.0}
    embed: {model: minilm, backend: sentence-transformers, batch_size: 64}
    cluster: {k: 32, seed: 0, n_init: auto}
    build: {allow_collisions: false}

A stage section holds the fields of that stage's options (:mod:`prolab_cli.stage_options`:
DescribeOptions plus ``classes``, EmbedOptions, ClusterOptions with ``k`` required,
BuildOptions); keys left out take the defaults written there, which ``prolab describe|embed|
cluster|build`` share. An unknown key is refused with the nearest valid one.

Every stage writes a stamp (``<stage>.stamp.json``) with the hash of its inputs and options and
the hash of what it wrote; a stage whose stamp matches and whose output is intact is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .artifact import LabelSpace
from .atomic import path_name, write_json
from .cache import content_key
from .errors import ProlabError
from .stage_options import DEFAULT_OUT_DIR, BuildOptions, ClusterOptions, DescribeOptions, EmbedOptions, from_mapping
from .typed_options import unknown_key

STAGES = ("describe", "embed", "cluster", "build")
_TOP_KEYS = ["name", "out_dir", "work_dir", "describe", "descriptions", "embed", "cluster", "build"]


@dataclass(frozen=True)
class DescribeSection(DescribeOptions):
    """The ``describe:`` section: the describe stage's options and the class list to describe."""

    classes: str | None = None


@dataclass
class PipelineConfig:
    """A parsed, checked pipeline config with paths made absolute."""

    name: str
    out_dir: Path
    work_dir: Path
    describe: DescribeSection | None
    descriptions: Path | None
    embed: EmbedOptions
    cluster: ClusterOptions
    build: BuildOptions
    source: str


@dataclass
class PipelineResult:
    """The built label space, where it is, and which stages ran (False = skipped)."""

    space: LabelSpace
    path: Path
    ran: dict[str, bool] = field(default_factory=dict)


def _section(data: dict, key: str, cls: type, source: str) -> Any:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise ProlabError(f"{source}: '{key}' must be a mapping")
    return from_mapping(cls, value, source, prefix=f"{key}.")


def load_pipeline_config(path: str | os.PathLike) -> PipelineConfig:
    """Read and check a pipeline YAML file."""
    import yaml

    path = Path(path)
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProlabError(f"{source}: no such file") from None
    except UnicodeDecodeError as e:
        raise ProlabError(f"{source}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ProlabError(f"{source}: cannot read ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ProlabError(f"{source}: malformed YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProlabError(f"{source}: a pipeline config must be a YAML mapping")
    for key in data:
        if key not in _TOP_KEYS:
            raise unknown_key(source, str(key), _TOP_KEYS)
    name = data.get("name")
    path_name(name, f"{source}: 'name'")
    for key in ("descriptions", "out_dir", "work_dir"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ProlabError(f"{source}: '{key}' must be a path, not {type(data[key]).__name__}")
    base = path.resolve().parent
    describe = _section(data, "describe", DescribeSection, source) if data.get("describe") is not None else None
    descriptions = _relative(base, data["descriptions"]) if data.get("descriptions") else None
    if (describe is None) == (descriptions is None):
        raise ProlabError(f"{source}: give exactly one of 'describe' (run the LLM) or 'descriptions' (a file)")
    if describe is not None:
        from .classes import builtin_name

        if not describe.classes:
            raise ProlabError(f"{source}: 'describe.classes' is required (a built-in list or a file)")
        if builtin_name(describe.classes) is None:
            describe = replace(describe, classes=str(_relative(base, describe.classes)))
        if describe.template.endswith((".yaml", ".yml")):
            describe = replace(describe, template=str(_relative(base, describe.template)))
    cluster = _section(data, "cluster", ClusterOptions, source)
    if cluster.k is None:
        raise ProlabError(f"{source}: 'cluster.k' (an integer) is required")
    return PipelineConfig(
        name=name,
        out_dir=_relative(base, data.get("out_dir", DEFAULT_OUT_DIR)),
        work_dir=_relative(base, data.get("work_dir", f"{name}.work")),
        describe=describe,
        descriptions=descriptions,
        embed=_section(data, "embed", EmbedOptions, source),
        cluster=cluster,
        build=_build_section(data, base, source),
        source=source,
    )


def _file_sha(path: Path) -> str | None:
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Stamps:
    """Per-stage stamps: the key of inputs+options and the hash of the output they produced."""

    def __init__(self, work_dir: Path, force: bool):
        self.dir = work_dir
        self.force = force

    def fresh(self, stage: str, key: str, output: Path) -> bool:
        stamp = self.dir / f"{stage}.stamp.json"
        if self.force or not stamp.is_file():
            return False
        try:
            data = json.loads(stamp.read_text())
        except json.JSONDecodeError:
            return False
        return data.get("key") == key and data.get("output") == _output_hash(output)

    def write(self, stage: str, key: str, output: Path) -> None:
        write_json(self.dir / f"{stage}.stamp.json", {"key": key, "output": _output_hash(output)})


def _output_hash(path: Path) -> str | None:
    if path.is_dir():
        try:
            return LabelSpace.load(path).manifest["version"]  # load checked it against the files' hashes
        except ProlabError:
            return None
    return _file_sha(path)


def _describe(cfg: PipelineConfig, out: Path, backend, progress: bool) -> None:
    from .describe import run_describe

    d = cfg.describe
    options = DescribeOptions(**{k: v for k, v in asdict(d).items() if k != "classes"})
    result = run_describe(d.classes, out, options=options, backend=backend, progress=progress)
    if result.failed:
        raise ProlabError(
            f"{cfg.source}: describe left out {len(result.failed)} class(es) with too few descriptions:"
            f" {', '.join(result.failed)} (raise describe.attempts or lower describe.min)"
        )


def _llm_identity(d: DescribeOptions) -> dict[str, Any]:
    """The configured LLM without loading it; a GGUF's fingerprint is part of it, so new weights
    at the same path (or a new local model package) re-run describe."""
    spec = d.llm.strip()
    identity = {"llm": d.llm, "base_url": d.base_url}
    if spec == "shipped":  # the shipped files, and the local model (when installed) for classes they miss
        from .errors import MissingDependencyError
        from .llm.local_model import local_model_sha256
        from .shipped import descriptions_dir

        identity["shipped"] = {p.name: _file_sha(p) for p in sorted(descriptions_dir().glob("*.json"))}
        try:
            identity["gguf"] = local_model_sha256()
        except MissingDependencyError:
            identity["gguf"] = None
    elif spec == "local":
        from .llm.local_model import local_model_sha256

        identity["gguf"] = local_model_sha256()
    elif spec.startswith("llama-cpp:"):
        from .cache import weights_fingerprint

        path = Path(spec[len("llama-cpp:"):]).expanduser()
        identity["gguf"] = weights_fingerprint(path) if path.is_file() else None
    return identity


def _describe_key(cfg: PipelineConfig, backend) -> str:
    from .classes import load_classes
    from .templates import load_template

    d = cfg.describe
    llm = backend.identity() if backend is not None else _llm_identity(d)
    template = load_template(d.template).sha256
    return content_key("describe", load_classes(d.classes), llm, template, asdict(d))


def _relative(base: Path, value: str) -> Path:
    """``value`` (a path in the config) relative to the config's folder, without ".." left in it."""
    return Path(os.path.normpath(base / value))


def _build_section(data: dict, base: Path, source: str) -> BuildOptions:
    """The ``build:`` section, its ``property_names`` file made relative to the config."""
    build = _section(data, "build", BuildOptions, source)
    if build.property_names:
        build = replace(build, property_names=str(_relative(base, build.property_names)))
    return build


def run_pipeline(
    config: str | os.PathLike | PipelineConfig,
    force: bool = False,
    echo: Callable[[str], Any] = print,
    backend=None,
    progress: bool = True,
) -> PipelineResult:
    """Run the four stages of ``config``; ``backend`` replaces the configured LLM (tests, servers)."""
    from .build import run_build
    from .cluster import run_cluster
    from .embed import Embedder, run_embed

    cfg = config if isinstance(config, PipelineConfig) else load_pipeline_config(config)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    stamps = _Stamps(cfg.work_dir, force)
    ran: dict[str, bool] = {}

    def stage(name: str, key: str, output: Path, run: Callable[[], Any]) -> None:
        if stamps.fresh(name, key, output):
            echo(f"{name}: unchanged, skipped")
            ran[name] = False
            return
        echo(f"{name}: running")
        run()
        stamps.write(name, key, output)
        ran[name] = True

    if cfg.describe is not None:
        descriptions = cfg.work_dir / "descriptions.json"
        stage("describe", _describe_key(cfg, backend), descriptions, lambda: _describe(cfg, descriptions, backend, progress))
    else:
        descriptions = cfg.descriptions
        if not descriptions.is_file():
            raise ProlabError(f"{cfg.source}: descriptions file {descriptions} does not exist")

    embeddings = cfg.work_dir / "embeddings.safetensors"
    # the model's content fingerprint is part of the key: new weights at the same path re-embed
    embed_key = content_key("embed", _file_sha(descriptions), asdict(cfg.embed), Embedder(cfg.embed).identity)
    stage("embed", embed_key, embeddings,
          lambda: [echo(note) for note in run_embed(descriptions, embeddings, options=cfg.embed, progress=progress)[1]])

    clusters = cfg.work_dir / "clusters.safetensors"
    cluster_key = content_key("cluster", _file_sha(embeddings), asdict(cfg.cluster))
    stage("cluster", cluster_key, clusters, lambda: echo(run_cluster(embeddings, clusters, options=cfg.cluster)))

    artifact = cfg.out_dir / cfg.name
    names_sha = _file_sha(Path(cfg.build.property_names)) if cfg.build.property_names else None
    build_key = content_key("build", _file_sha(descriptions), _file_sha(embeddings), _file_sha(clusters), cfg.name,
                            asdict(cfg.build), names_sha)
    stage("build", build_key, artifact,
          lambda: run_build(embeddings, clusters, cfg.name, cfg.out_dir, descriptions_path=descriptions,
                            options=cfg.build))
    return PipelineResult(LabelSpace.load(artifact), artifact, ran)
