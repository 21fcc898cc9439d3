"""An ablation's numbers: variants x seeds -> mean and interval per metric, comparisons with the reference.

What ``hvps ablate`` reports, as plain data: every variant (a TA/SA network, a tracker switch)
is measured for the same seeds; :func:`analyse` gives each metric's mean over seeds with its
95 % interval, and compares each variant with the reference variant on every metric, paired by
seed and by frame blocks (:mod:`hvps_lightning.evaluation.statistics`). A difference is
reported as resolved only when its intervals exclude zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hvps_lightning.evaluation.scoring import BlockStatistics
from hvps_lightning.evaluation.statistics import CONFIDENCE, Comparison, Interval, compare, mean_interval


@dataclass
class AblationRun:
    """One variant measured with one seed.

    Attributes:
        variant: the variant's label.
        seed: the seed (runs of two variants with the same seed are paired).
        scores: metric name -> value.
        blocks: the per-block statistics of the evaluation, if kept.
    """

    variant: str
    seed: int
    scores: dict[str, float]
    blocks: BlockStatistics | None = None


@dataclass
class AblationAnalysis:
    """Intervals per variant and comparisons with the reference.

    Attributes:
        reference: the reference variant's label.
        metrics: the metrics analysed, in order.
        variants: the variants, in order (the reference first).
        seeds: per variant, the seeds measured.
        intervals: per variant, metric -> mean over seeds with its interval.
        comparisons: per variant other than the reference, metric -> its comparison.
        confidence: the intervals' confidence.
    """

    reference: str
    metrics: list[str]
    variants: list[str]
    seeds: dict[str, list[int]] = field(default_factory=dict)
    intervals: dict[str, dict[str, Interval]] = field(default_factory=dict)
    comparisons: dict[str, dict[str, Comparison]] = field(default_factory=dict)
    confidence: float = CONFIDENCE

    @property
    def n_comparisons(self) -> int:
        """How many comparisons were made (no correction for their number is applied)."""
        return sum(len(c) for c in self.comparisons.values())

    def resolved(self) -> list[tuple[str, str, Comparison]]:
        """``(variant, metric, comparison)`` of every resolved difference."""
        return [
            (variant, metric, comparison)
            for variant, by_metric in self.comparisons.items()
            for metric, comparison in by_metric.items()
            if comparison.resolved
        ]


def analyse(
    runs: Sequence[AblationRun],
    metrics: Sequence[str],
    reference: str,
    block_scores: Mapping[str, str] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> AblationAnalysis:
    """Intervals and comparisons of an ablation.

    Args:
        runs: every (variant, seed) measured.
        metrics: the metrics to analyse (keys of ``AblationRun.scores``).
        reference: the variant the others are compared with.
        block_scores: metric -> the score name of its block statistics
            (:meth:`~hvps_lightning.evaluation.scoring.BlockStatistics.metric`); metrics without
            one are compared by seeds only.
        n_resamples: bootstrap resamples per comparison.
        seed: the bootstrap's seed.

    Raises:
        ValueError: if ``reference`` has no runs.
    """
    variants = list(dict.fromkeys(run.variant for run in runs))
    if reference not in variants:
        raise ValueError(f"reference variant {reference!r} has no runs (variants: {variants})")
    variants.remove(reference)
    variants.insert(0, reference)
    by_variant = {v: {run.seed: run for run in runs if run.variant == v} for v in variants}
    analysis = AblationAnalysis(reference, list(metrics), variants)
    for variant in variants:
        measured = by_variant[variant]
        analysis.seeds[variant] = sorted(measured)
        analysis.intervals[variant] = {
            m: mean_interval([measured[s].scores.get(m, np.nan) for s in sorted(measured)]) for m in metrics
        }
    base = by_variant[reference]
    for variant in variants[1:]:
        other = by_variant[variant]
        seeds = sorted(set(base) & set(other))
        analysis.comparisons[variant] = {}
        for metric in metrics:
            reference_blocks = variant_blocks = block_metric = None
            score = (block_scores or {}).get(metric)
            if score is not None:
                found = [_block_arrays(base[s], other[s], score) for s in seeds]
                if found and all(f is not None for f in found):
                    reference_blocks = np.stack([f[0] for f in found])  # type: ignore[index]
                    variant_blocks = np.stack([f[1] for f in found])  # type: ignore[index]
                    block_metric = found[0][2]  # type: ignore[index]
            analysis.comparisons[variant][metric] = compare(
                metric,
                [base[s].scores.get(metric, np.nan) for s in seeds],
                [other[s].scores.get(metric, np.nan) for s in seeds],
                reference_blocks,
                variant_blocks,
                block_metric,
                n_resamples=n_resamples,
                seed=seed,
            )
    return analysis


def _block_arrays(reference: AblationRun, variant: AblationRun, score: str) -> tuple | None:
    """The two runs' (blocks, k) statistics of ``score`` and its metric, if both kept them alike."""
    if reference.blocks is None or variant.blocks is None or reference.blocks.names != variant.blocks.names:
        return None
    a, b = reference.blocks.metric(score), variant.blocks.metric(score)
    if a is None or b is None:
        return None
    return a[0], b[0], a[1]
