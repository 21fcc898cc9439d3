"""A stand-in evaluator for the sweep machinery tests: no data, a known optimum.

Imported by name (``hvps_sweep_stub:load``) so that spawned worker processes can build it;
the tests put this folder on ``sys.path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def load(
    fail_above: float | None = None,
    sleep_s: float = 0.0,
    raise_type: str = "ValueError",
    log_file: str | None = None,
    hang_after: int | None = None,
    fail_below: float | None = None,
) -> Any:
    """Return ``evaluate(params) -> metrics``: the closer score_threshold is to 0.3, the better.

    ``fail_above``: parameters with ``score_threshold`` above it raise ``raise_type``.
    ``log_file``: append one line per call (to see which process ran what).
    ``hang_after``: calls after this many sleep for a minute (a trial to kill the process in).
    ``fail_below``: like ``fail_above``, for ``score_threshold`` below it.
    """
    from hvps_lightning.errors import HVPSError

    errors = {"ValueError": ValueError, "HVPSError": HVPSError, "TypeError": TypeError}

    calls = [0]

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        calls[0] += 1
        if hang_after is not None and calls[0] > hang_after:
            time.sleep(60)
        if log_file:
            with Path(log_file).open("a") as handle:
                handle.write(f"{params['score_threshold']}\n")
        if sleep_s:
            time.sleep(sleep_s)
        threshold = float(params["score_threshold"])
        if (fail_above is not None and threshold > fail_above) or (
            fail_below is not None and threshold < fail_below
        ):
            raise errors[raise_type](f"score_threshold {threshold} is too high")
        value = 1.0 - abs(threshold - 0.3) - 0.1 * (not params["long_term_enabled"])
        return {"aq": value, "stq": value / 2, "num_tracks": 3.0}

    return evaluate
