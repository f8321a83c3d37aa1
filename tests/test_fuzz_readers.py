"""Property-based fuzzing of every reader of user files: whatever the bytes, a reader returns a result or
raises a ProlabError (one line at the command line), never another exception, and writes nothing.

Each reader gets a valid file of its kind, mutated by hypothesis (bytes flipped, cut, inserted, repeated),
and fully random bytes. ``PROLAB_FUZZ_EXAMPLES`` sets the examples per reader (default 150)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from hypothesis import HealthCheck, given, settings, strategies as st

from prolab_cli.errors import ProlabError

EXAMPLES = int(os.environ.get("PROLAB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def mutated(draw, original: bytes) -> bytes:
    """``original`` with a few random edits, or random bytes outright."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "repeat", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            data = data[:at]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 50))
        elif op == "zero" and data:
            data[at:at + 8] = bytes(len(data[at:at + 8]))
    return bytes(data)


def _valid_files(root: Path) -> dict[str, Path]:
    """One valid file of each kind a user hands prolab."""
    from PIL import Image

    from prolab_cli.build import build_label_space
    from prolab_cli.cluster import cluster_embeddings
    from prolab_cli.embed import EmbeddingSet
    from prolab_cli.interop import export_bank

    root.mkdir(parents=True, exist_ok=True)
    files = {"classes.txt": "road\nsidewalk\ncar\n", "classes.json": '["road", "car"]',
             "descriptions.json": json.dumps({"road": ["flat grey surface", "lane markings"], "car": ["four wheels"]}),
             "properties.json": json.dumps({"Flat surface": ["road: flat grey surface"], "Wheels": ["car: four wheels"]}),
             "pipeline.yaml": "name: x\ndescriptions: descriptions.json\ncluster: {k: 2}\nembed: {model: minilm}\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    x = np.eye(4, dtype=np.float32)
    emb = EmbeddingSet({"a": ["p", "q"], "b": ["r", "s"]}, x, np.eye(2, 4, dtype=np.float32), {"model": "m"})
    clusters = cluster_embeddings(emb, 3)
    emb.save(root / "embeddings.safetensors")
    clusters.save(root / "clusters.safetensors")
    export_bank(build_label_space(emb, clusters, "toy"), root / "bank.pth")
    mask = Image.fromarray(np.array([[0, 1, 2, 255]] * 4, np.uint8), mode="L")
    mask.save(root / "label.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "image.png")
    return {name: root / name for name in (*files, "embeddings.safetensors", "clusters.safetensors", "bank.pth",
                                           "label.png", "image.png")}


def _readers():
    from prolab_cli.classes import load_classes
    from prolab_cli.cluster import Clustering
    from prolab_cli.descriptor_files import read_descriptions
    from prolab_cli.embed import EmbeddingSet
    from prolab_cli.interop import load_bank
    from prolab_cli.pipeline import load_pipeline_config
    from prolab_cli.properties import read_property_file
    from segmentation.data.datasets import read_image, read_mask

    return {
        "classes.txt": lambda p: load_classes(p),
        "classes.json": lambda p: load_classes(p),
        "descriptions.json": read_descriptions,
        "properties.json": read_property_file,
        "pipeline.yaml": load_pipeline_config,
        "embeddings.safetensors": EmbeddingSet.load,
        "clusters.safetensors": Clustering.load,
        "bank.pth": load_bank,
        "label.png": read_mask,
        "image.png": read_image,
    }


READERS = list(_readers())
RAN: dict[str, int] = {}


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    return _valid_files(tmp_path_factory.mktemp("valid"))


@pytest.mark.parametrize("kind", READERS)
def test_any_bytes_give_a_result_or_one_prolab_error(kind, valid, tmp_path_factory):
    reader = _readers()[kind]
    original = valid[kind].read_bytes()
    reader(valid[kind])  # the valid file reads
    work = tmp_path_factory.mktemp(f"fuzz-{kind}")
    target = work / valid[kind].name
    for sibling in valid.values():  # a pipeline config names descriptions.json beside it
        (work / sibling.name).write_bytes(sibling.read_bytes())
    before = sorted(p.name for p in work.iterdir())

    @FUZZ
    @given(data=mutated(original))
    def one(data):
        target.write_bytes(data)
        RAN[kind] = RAN.get(kind, 0) + 1
        try:
            reader(target)
        except ProlabError as exc:
            assert "\n" not in str(exc), str(exc)
        except torch.serialization.pickle.UnpicklingError:  # never: load_bank turns it into a ProlabError
            raise

    one()
    assert sorted(p.name for p in work.iterdir()) == before  # nothing written beside the file
    assert RAN[kind] >= min(EXAMPLES, 50)


def test_report_how_many_examples_ran(capsys):
    with capsys.disabled():
        print(f"\nfuzzed readers: {', '.join(f'{k} {n}' for k, n in RAN.items())} examples")
