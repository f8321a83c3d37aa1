"""The one exception type that the CLI turns into a one-line error message."""

import click


class ProlabError(click.ClickException):
    """A user-facing error: bad input, missing file, failed remote call.

    The message must name the file, class or field at fault; the CLI prints it on one line
    (``Error: ...``) and exits with status 1, without a traceback.
    """
