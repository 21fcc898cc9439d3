"""One progress bar for every ``hvps`` command: tqdm on stderr, only on a terminal, off with ``--quiet``.

The layers below report progress through plain callbacks, ``progress(done, total)``
(frames, sequences, trials); :func:`progress_bar` turns such a callback into a tqdm bar with
rate and ETA. Extra live numbers (a sweep's best-so-far) go into the bar's postfix. An error
erases the bar, so that the error stays one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jsonargparse import ArgumentParser

#: ``progress(done, total, **postfix)``: what the commands hand to the layers below
ProgressCallback = Callable[..., None]

QUIET_HELP = "no progress bar (bars are drawn on stderr only when it is a terminal)"


def add_quiet_argument(parser: ArgumentParser) -> None:
    """Add the ``--quiet`` flag every long-running command has."""
    parser.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def bars_enabled(quiet: bool) -> bool:
    """Whether a bar is drawn: not ``--quiet`` and stderr is a terminal (logs stay clean)."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(quiet: bool, unit: str, desc: str | None = None) -> Iterator[ProgressCallback | None]:
    """A ``progress(done, total, **postfix)`` callback drawing a tqdm bar on stderr, or ``None``.

    Args:
        quiet: ``--quiet``: no bar.
        unit: what is counted (``frame``, ``seq``, ``trial``).
        desc: the bar's label.
    """
    if not bars_enabled(quiet):
        yield None
        return
    from tqdm import tqdm

    bar: Any = None

    def progress(done: int, total: int, **postfix: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True)
        if total != bar.total:
            bar.total = total
        bar.update(done - bar.n)
        if postfix:
            bar.set_postfix(postfix, refresh=False)

    try:
        yield progress
    except BaseException:
        if bar is not None:
            bar.leave = False
        raise
    finally:
        if bar is not None:
            bar.close()
