"""User-facing errors.

Anything a user can cause (a bad file, a bad argument, a missing dataset folder) raises
:class:`HVPSError` with a one-line message that names the file or argument and what is
wrong. The ``hvps`` entry point prints it and exits with code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

from pathlib import Path


class HVPSError(Exception):
    """An error caused by input (files, arguments, configs), shown to the user as one line."""

    exit_code = 2


def file_error(path: str | Path, problem: str) -> HVPSError:
    """Return an :class:`HVPSError` whose message is ``<path>: <problem>``.

    Example:
        >>> str(file_error("a/b.png", "not a PNG"))
        'a/b.png: not a PNG'
    """
    return HVPSError(f"{path}: {problem}")
