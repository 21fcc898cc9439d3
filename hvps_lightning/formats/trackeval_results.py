"""TrackEval's result files: ``<class>_summary.txt`` and ``<class>_detailed.csv``.

The files ``trackeval.Evaluator`` writes beside a tracker's data (``OUTPUT_SUMMARY`` and
``OUTPUT_DETAILED``), in its shape, so that numbers of ``hvps evaluate mots --output-dir`` can be
compared column by column with TrackEval's:

* ``<class>_summary.txt``: two space-separated lines, the field names and the combined values;
  fields in TrackEval's fixed order (HOTA, DetA, ..., MOTA, ..., IDF1, ..., Dets, GT_Dets, IDs,
  GT_IDs); fractions as percentages with 5 significant digits (``{:1.5g}``; arrays: their mean),
  counts as integers.
* ``<class>_detailed.csv``: one row per sequence (sorted) and a last ``COMBINED`` row; per family
  its float fields, its integer fields, then for every per-alpha array ``<field>___<alpha %>``
  and ``<field>___AUC`` (the mean), as raw values.

The input is what :meth:`hvps_lightning.metrics.mots.MOTSCounts.fields` returns per sequence:
``{family: {field: value}}`` for the families ``HOTA``, ``CLEAR``, ``Identity`` and ``Count``.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.io import atomic_open

#: per family: (summary fields, float fields, integer fields, per-alpha float arrays, per-alpha int arrays)
FAMILIES: dict[str, tuple[tuple[str, ...], ...]] = {
    "HOTA": (
        ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA", "HOTA(0)", "LocA(0)",
         "HOTALocA(0)"),
        ("HOTA(0)", "LocA(0)", "HOTALocA(0)"),
        (),
        ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA"),
        ("HOTA_TP", "HOTA_FN", "HOTA_FP"),
    ),
    "CLEAR": (
        ("MOTA", "MOTP", "MODA", "CLR_Re", "CLR_Pr", "MTR", "PTR", "MLR", "sMOTA", "CLR_TP", "CLR_FN",
         "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag"),
        ("MOTA", "MOTP", "MODA", "CLR_Re", "CLR_Pr", "MTR", "PTR", "MLR", "sMOTA", "CLR_F1", "FP_per_frame",
         "MOTAL", "MOTP_sum"),
        ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "CLR_Frames"),
        (),
        (),
    ),
    "Identity": (
        ("IDF1", "IDR", "IDP", "IDTP", "IDFN", "IDFP"),
        ("IDF1", "IDR", "IDP"),
        ("IDTP", "IDFN", "IDFP"),
        (),
        (),
    ),
    "Count": (("Dets", "GT_Dets", "IDs", "GT_IDs"), (), ("Dets", "GT_Dets", "IDs", "GT_IDs"), (), ()),
}  # fmt: skip
#: TrackEval's order of the summary's fields (``trackeval.utils.write_summary_results``)
SUMMARY_ORDER = (
    "HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA", "HOTA(0)", "LocA(0)",
    "HOTALocA(0)", "MOTA", "MOTP", "MODA", "CLR_Re", "CLR_Pr", "MTR", "PTR", "MLR", "CLR_TP", "CLR_FN",
    "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "sMOTA", "IDF1", "IDR", "IDP", "IDTP", "IDFN", "IDFP",
    "Dets", "GT_Dets", "IDs", "GT_IDs",
)  # fmt: skip
#: the HOTA localisation thresholds in percent, as the detailed columns name them
ALPHA_PERCENTS = tuple(int(100 * a) for a in np.arange(0.05, 0.99, 0.05))

Families = Mapping[str, Mapping[str, Any]]


def summary_values(families: Families) -> dict[str, str]:
    """The summary line of one class: field -> formatted value, in TrackEval's order."""
    values: dict[str, str] = {}
    for family, (summary, floats, integers, float_arrays, _) in FAMILIES.items():
        result = families[family]
        for name in summary:
            if name in float_arrays:
                values[name] = f"{100 * float(np.mean(result[name])):1.5g}"
            elif name in floats:
                values[name] = f"{100 * float(result[name]):1.5g}"
            elif name in integers:
                values[name] = f"{int(result[name]):d}"
    return {name: values[name] for name in SUMMARY_ORDER if name in values}


def detailed_columns() -> list[str]:
    """The columns of ``<class>_detailed.csv`` after ``seq``."""
    columns: list[str] = []
    for _, floats, integers, float_arrays, integer_arrays in FAMILIES.values():
        columns += [*floats, *integers]
        for name in (*float_arrays, *integer_arrays):
            columns += [f"{name}___{alpha}" for alpha in ALPHA_PERCENTS] + [f"{name}___AUC"]
    return columns


def detailed_row(families: Families) -> list[Any]:
    """One row of ``<class>_detailed.csv`` (without the sequence name)."""
    row: list[Any] = []
    for family, (_, floats, integers, float_arrays, integer_arrays) in FAMILIES.items():
        result = families[family]
        row += [_plain(result[name]) for name in (*floats, *integers)]
        for name in (*float_arrays, *integer_arrays):
            values = np.asarray(result[name], dtype=np.float64)
            row += [_plain(v) for v in values] + [_plain(values.mean())]
    return row


def write_trackeval_results(
    out_dir: str | Path,
    class_name: str,
    per_sequence: Mapping[str, Families],
    combined: Families,
) -> tuple[Path, Path]:
    """Write ``<class>_summary.txt`` and ``<class>_detailed.csv`` into ``out_dir``; return both paths."""
    out_dir = Path(out_dir)
    summary_path = out_dir / f"{class_name}_summary.txt"
    detailed_path = out_dir / f"{class_name}_detailed.csv"
    values = summary_values(combined)
    with atomic_open(summary_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=" ")
        writer.writerow(list(values))
        writer.writerow(list(values.values()))
    with atomic_open(detailed_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["seq", *detailed_columns()])
        for sequence in sorted(per_sequence):
            writer.writerow([sequence, *detailed_row(per_sequence[sequence])])
        writer.writerow(["COMBINED", *detailed_row(combined)])
    return summary_path, detailed_path


def read_trackeval_detailed(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a ``<class>_detailed.csv`` (ours or TrackEval's): sequence (``COMBINED``) -> column -> value."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0][1:]
    return {row[0]: dict(zip(header, map(float, row[1:]), strict=True)) for row in rows[1:] if row}


def _plain(value: Any) -> Any:
    """A Python int or float (csv writes ``str`` of it, as TrackEval's NumPy scalars print)."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value)
