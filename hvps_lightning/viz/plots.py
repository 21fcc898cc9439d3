"""Result plots written as PNG files: per-class IoU, training curves, ablation intervals.

Figures are drawn with matplotlib's object API (``Figure``, no ``pyplot``), so plotting never
changes the process's backend or opens a window, and every file is written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.io import atomic_path


def _save(figure: Any, path: str | Path, dpi: int = 110) -> Path:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_iou_per_class(result: Mapping[str, Any], path: str | Path, title: str = "") -> Path:
    """Bars of ``iou_per_class`` (an ``hvps evaluate step`` result), SQ as a line, STQ/AQ/SQ in the title.

    Classes without a union (IoU ``null``) are labelled ``n/a``.
    """
    names = list(result["iou_per_class"])
    values = [result["iou_per_class"][n] for n in names]
    present = [v is not None and not math.isnan(v) for v in values]
    heights = [100 * v if ok else 0.0 for v, ok in zip(values, present, strict=True)]
    figure = _figure(max(5.0, 0.55 * len(names) + 2), 4.0)
    ax = figure.add_subplot()
    bars = ax.bar(range(len(names)), heights, color=["tab:blue" if ok else "lightgrey" for ok in present])
    for bar, value, ok in zip(bars, heights, present, strict=True):
        ax.annotate(f"{value:.1f}" if ok else "n/a", (bar.get_x() + bar.get_width() / 2, value),
                    ha="center", va="bottom", fontsize=7)  # fmt: skip
    if result.get("sq") is not None and not math.isnan(result["sq"]):
        ax.axhline(100 * result["sq"], color="tab:red", linestyle="--", linewidth=1, label="SQ (mean IoU)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("IoU (%)")
    scores = "  ".join(
        f"{key.upper()} {100 * result[key]:.1f}"
        for key in ("stq", "aq", "sq")
        if isinstance(result.get(key), float) and not math.isnan(result[key])
    )
    ax.set_title(f"{title}\n{scores}" if title else scores, fontsize=9)
    return _save(figure, path)


def plot_training_curves(rows: Sequence[Mapping[str, float]], path: str | Path, max_panels: int = 12) -> Path:
    """One panel per logged scalar over the training step (``rows``: ``{"step": s, name: value}``).

    Losses come first, then validation metrics; at most ``max_panels`` panels.
    """
    names = sorted({k for row in rows for k in row if k not in ("step", "epoch")},
                   key=lambda k: (not k.startswith("train/"), "loss" not in k, k))[:max_panels]  # fmt: skip
    columns = min(3, max(1, len(names)))
    panels = max(1, len(names))
    figure = _figure(4.2 * columns, 2.8 * math.ceil(panels / columns))
    for index, name in enumerate(names):
        ax = figure.add_subplot(math.ceil(panels / columns), columns, index + 1)
        points = [(row["step"], row[name]) for row in rows if name in row and math.isfinite(row[name])]
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3, linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    if not names:
        figure.add_subplot().text(0.5, 0.5, "no scalars logged yet", ha="center", va="center")
    return _save(figure, path, dpi=100)


def plot_intervals(
    labels: Sequence[str],
    metrics: Sequence[str],
    means: np.ndarray,
    lows: np.ndarray,
    highs: np.ndarray,
    path: str | Path,
    title: str = "",
) -> Path:
    """Grouped bars of means with their confidence intervals as error bars.

    Args:
        labels: one label per group (an ablation variant).
        metrics: one name per bar within a group.
        means: (groups, metrics) means, in the unit to show (e.g. %).
        lows: (groups, metrics) lower interval ends (NaN: no interval, e.g. one seed).
        highs: (groups, metrics) upper interval ends.
        path: the PNG file.
        title: the figure title.
    """
    means, lows, highs = (np.asarray(a, dtype=np.float64) for a in (means, lows, highs))
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(metrics))
    figure = _figure(max(6.0, 1.4 * len(labels)), 4.2)
    ax = figure.add_subplot()
    for i, metric in enumerate(metrics):
        below = np.where(np.isnan(lows[:, i]), 0.0, means[:, i] - lows[:, i])
        above = np.where(np.isnan(highs[:, i]), 0.0, highs[:, i] - means[:, i])
        ax.bar(x + (i - (len(metrics) - 1) / 2) * width, means[:, i], width, yerr=[below, above],
               capsize=3, label=metric)  # fmt: skip
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("%  (error bars: 95 % confidence interval over seeds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(figure, path, dpi=120)
