"""The helpers every layer shares: the one torch.load, the one weights fingerprint, the one
exception line."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from prolab_cli.cache import weights_fingerprint
from prolab_cli.errors import ProlabError, exception_line
from prolab_cli.torch_files import load_torch_file


class _Opaque:
    pass


def test_exception_line_keeps_type_and_first_line_and_prefers_torchs_unsupported_global():
    assert exception_line(ValueError("bad thing\nmore detail")) == "ValueError: bad thing"
    assert exception_line(EOFError()) == "EOFError"
    assert exception_line(ImportError("  \nno module x\n"), with_type=False) == "no module x"
    text = "Weights only load failed.\nIn PyTorch 2.6 ...\nWeightsUnpickler error: Unsupported global: GLOBAL a.B"
    assert exception_line(RuntimeError(text)) == "RuntimeError: refused pickled object a.B"
    long = text + " was not an allowed global by default. Please use `torch.serialization.add_safe_globals` " * 9
    assert exception_line(RuntimeError(long), limit=40) == "RuntimeError: refused pickled object a.B"  # never cut
    assert exception_line(ValueError("x" * 500), limit=10) == "ValueError: " + "x" * 10


def test_load_torch_file_reads_tensors_and_numpy_scalars_and_refuses_pickled_code(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(2), "best": np.float64(0.5)}, good)
    obj = load_torch_file(good, "not a readable thing")
    assert torch.equal(obj["w"], torch.ones(2)) and obj["best"] == 0.5

    opaque = tmp_path / "opaque.pth"
    torch.save({"x": _Opaque()}, opaque)
    with pytest.raises(ProlabError, match=r"opaque.pth: not a readable thing \(.*_Opaque.*\); .*retry with trust_pickle"):
        load_torch_file(opaque, "not a readable thing")
    with pytest.raises(ProlabError) as refused:
        load_torch_file(opaque, "not a readable thing", offer_trust=False)
    assert "--trust-pickle" not in refused.value.message
    assert isinstance(load_torch_file(opaque, "x", trust_pickle=True)["x"], _Opaque)

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ProlabError, match=r"truncated.pth: not a readable thing \(\w+") as bad:
        load_torch_file(truncated, "not a readable thing")
    assert "--trust-pickle" not in bad.value.message  # a broken file is not a trust question


def test_weights_fingerprint_of_a_file_and_of_a_directory(tmp_path):
    mib = 1 << 20
    small = tmp_path / "small.gguf"
    small.write_bytes(b"abc")
    # a file: SHA-256 of its size, its first MiB and everything from its last MiB on
    assert weights_fingerprint(small) == hashlib.sha256(b"3" + b"abc" + b"abc").hexdigest()
    big = tmp_path / "model" / "big.bin"
    big.parent.mkdir()
    data = np.random.default_rng(0).integers(0, 256, 5 * mib + 7, dtype=np.uint8).tobytes()
    big.write_bytes(data)
    assert weights_fingerprint(big) == hashlib.sha256(str(len(data)).encode() + data[:mib] + data[-mib:]).hexdigest()

    # a directory: relative path and size of each file, small files whole, large ones head and tail
    (tmp_path / "model" / "config.json").write_bytes(b"{}")
    (tmp_path / "model" / ".cache").mkdir()
    (tmp_path / "model" / ".cache" / "lock").write_bytes(b"ignored")
    want = hashlib.sha256()
    want.update(f"big.bin\0{len(data)}\0".encode() + data[:mib] + data[-mib:])
    want.update(b"config.json\x002\x00{}")
    assert weights_fingerprint(tmp_path / "model") == want.hexdigest()[:16]
    (tmp_path / "model" / "config.json").write_bytes(b"{ }")
    assert weights_fingerprint(tmp_path / "model") != want.hexdigest()[:16]
