"""The errors prolab raises for problems a user can fix: plain Python, no CLI framework.

Every one is a :class:`ProlabError`; the message names the file, class or field at fault and
fits on one line. The command line (``prolab_cli.cli``) alone turns them into ``Error: ...`` and
exit status 1, without a traceback. The subclasses exist for callers that branch on the kind of
failure; anything else raises :class:`ProlabError` itself.
"""

from __future__ import annotations

import re


class ProlabError(Exception):
    """A user-facing error: bad input, missing file, failed remote call.

    ``message`` is the one-line text the CLI prints after ``Error:``.
    """

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ProlabError):
    """A file, class name or option value given by the user is missing, unreadable or invalid."""


class IntegrityError(ProlabError):
    """A stored file does not match what recorded it: a hash, count or shape disagrees."""


class MissingDependencyError(ProlabError):
    """An optional package is not installed; ``extra`` names the ``pip install 'prolab[EXTRA]'``
    extra that provides it (None when no extra does)."""

    def __init__(self, message: str, extra: str | None = None):
        super().__init__(message)
        self.extra = extra

    def __reduce__(self):  # keep ``extra`` across pickling (DataLoader workers, multiprocessing)
        return type(self), (self.message, self.extra)


class RemoteCallError(ProlabError):
    """A call to a remote service (an LLM or embedding server) failed for good."""


def exception_line(exc: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """``exc`` in one line for an error message: its type (unless not ``with_type``) and the first
    non-blank line of its text (the "Unsupported global" line when torch names one), or only its
    type when the text is empty."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    refused = next((re.search(r"Unsupported global: GLOBAL (\S+)", ln) for ln in lines if "Unsupported global" in ln), None)
    if refused:  # torch's advice on allow-listing it follows; the object it refused is what matters
        line = f"refused pickled object {refused.group(1)}"
    else:
        line = (lines[0] if lines else "")[:limit]
    if not line:
        return type(exc).__name__
    return f"{type(exc).__name__}: {line}" if with_type else line
