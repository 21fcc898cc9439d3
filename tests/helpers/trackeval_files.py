"""Compares result files of ``hvps evaluate mots --output-dir`` with TrackEval's."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvps_lightning.formats.trackeval_results import read_trackeval_detailed


def compare_result_files(ours: Path, theirs: Path, class_name: str) -> None:
    """Our <class>_summary.txt / _detailed.csv against TrackEval's: same fields, same order, same numbers."""
    our_summary = (ours / f"{class_name}_summary.txt").read_text().splitlines()
    their_summary = (theirs / f"{class_name}_summary.txt").read_text().splitlines()
    assert our_summary[0] == their_summary[0]  # the fields, in TrackEval's order
    names, ours_values, theirs_values = (line.split() for line in (*our_summary, their_summary[1]))
    for name, a, b in zip(names, ours_values, theirs_values, strict=True):
        assert float(a) == pytest.approx(float(b), abs=1e-3), name  # both printed with 5 digits
    header = (ours / f"{class_name}_detailed.csv").read_text().splitlines()[0]
    assert header == (theirs / f"{class_name}_detailed.csv").read_text().splitlines()[0]
    our_rows = read_trackeval_detailed(ours / f"{class_name}_detailed.csv")
    their_rows = read_trackeval_detailed(theirs / f"{class_name}_detailed.csv")
    assert list(our_rows) == list(their_rows)
    for sequence, row in their_rows.items():
        for column, value in row.items():
            assert our_rows[sequence][column] == pytest.approx(value, abs=1e-9), (sequence, column)
