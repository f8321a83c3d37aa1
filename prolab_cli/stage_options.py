"""The options of each label-space stage, with their defaults written once.

``prolab describe|embed|cluster|build`` build these from the flags given on the command line
(a flag left out takes the default here), ``prolab pipeline`` from the sections of its YAML
(:func:`from_mapping`: unknown keys and wrong types are refused), and the stage functions take
them keyword-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .typed_options import check

#: where ``prolab build``, ``import-bank``, ``import-properties`` and ``prolab pipeline`` put artifacts
DEFAULT_OUT_DIR = "label_spaces"


@dataclass(frozen=True)
class DescribeOptions:
    """Options of the describe stage: which LLM, which prompt, how many descriptions and attempts."""

    llm: str = "shipped"  # prolab's shipped descriptions, the local model for classes they miss
    template: str = "prolab"
    base_url: str | None = None
    min: int = 3  # fewest valid descriptions per class (the ``--min`` flag)
    attempts: int = 3
    seed: int = 0
    jobs: int = 1
    threads: int = 1
    n_ctx: int = 2048
    timeout: float = 60.0
    mode: Literal["auto", "chat", "completion"] = "auto"
    max_retries: int = 8
    backoff: float = 1.0
    backoff_max: float = 60.0
    sampling: dict = field(default_factory=dict)  # overrides of the template's sampling
    batch: bool = False  # first replies through the OpenAI Batch API
    batch_poll: float = 10.0  # seconds between two looks at a batch

    def retry_policy(self):
        """The :class:`~prolab_cli.llm.RetryPolicy` of ``max_retries``/``backoff``/``backoff_max``."""
        from .llm import RetryPolicy

        return RetryPolicy(max_calls=self.max_retries + 1, base_delay=self.backoff, max_delay=self.backoff_max)


@dataclass(frozen=True)
class EmbedOptions:
    """Options of the embed stage; ``None`` pooling/lowercase take the model's defaults."""

    model: str = "minilm"
    backend: str = "sentence-transformers"
    pooling: str | None = None
    lowercase: bool | None = None
    batch_size: int = 64
    threads: int | None = None
    download: bool = False
    drop_empty: bool = False  # leave out classes without descriptions (else refused)


@dataclass(frozen=True)
class ClusterOptions:
    """Options of the cluster stage: K, the k-means seed and restarts (``"auto"`` or a number),
    and whether k-means sees each distinct description text once (``distinct``) instead of every
    description pooled (the paper's call, the default)."""

    k: int | None = None
    seed: int = 0
    n_init: str | int = "auto"
    distinct: bool = False
    backend: str = "auto"  # sklearn | faiss | auto (faiss from cluster.FAISS_FROM_POINTS points, if installed)


@dataclass(frozen=True)
class BuildOptions:
    """Options of the build stage."""

    allow_collisions: bool = False  # accept classes whose property rows are identical
    property_names: str | None = None  # a JSON file of readable names, one per property (see build.read_property_names)
    keep_embeddings: bool = True  # store every description's embedding (shipped artifacts leave them out)


def from_mapping(cls: type, data: Mapping[str, Any] | None, where: str, prefix: str = "") -> Any:
    """``cls`` from a YAML mapping: keys left out take their defaults; an unknown key is refused
    with the nearest valid one, a value of the wrong type with the type it must have."""
    return check(cls, data or {}, where, prefix=prefix)
