"""Confidence intervals and paired comparisons for ablations: when is a difference more than noise?

Pure functions of NumPy arrays (scipy.stats for the t distribution, the paired t-test and the
bootstrap); nothing here knows a metric, a tracker or Lightning. Two sources of noise are
measured separately:

* **Seeds** (training noise: other initial weights, other data order): a metric measured for
  ``n`` seeds has a mean and a Student-t interval (:func:`mean_interval`); two variants
  trained with the same seeds are compared by the differences per seed, a paired t-test and
  its interval (:func:`paired_seed_difference`).
* **Frames** (sampling noise: which frames the evaluation happens to contain): the sequence is
  cut into blocks of consecutive frames, each with summable statistics of the metric (e.g. a
  MOTS count vector, AQ's sum and tube count); blocks are resampled with replacement, the same
  blocks for both variants and every seed (paired), and the metric is recomputed from the
  summed statistics of each resample (:func:`block_bootstrap_difference`). Tracks are cut at
  block boundaries, so this interval is that of the *block-level* metric, a close proxy whose
  point value is reported with it.

:func:`compare` combines them: a difference is **resolved** only when every interval that
could be computed (seeds: with two or more seeds; blocks: with statistics) excludes zero, on
the same side. No correction for multiple comparisons is applied; the number of comparisons
is shown beside them.

Example:
    >>> import numpy as np
    >>> mean_interval([0.50, 0.52, 0.51]).estimate
    0.51
    >>> paired_seed_difference([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]).excludes_zero
    True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: the confidence of every interval
CONFIDENCE = 0.95

#: metric of summed block statistics: (..., k) -> (...)
BlockMetric = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval (``low``/``high`` NaN: not computable).

    Attributes:
        estimate: the point estimate (a mean, a mean difference).
        low: lower end of the interval.
        high: upper end.
        n: the number of units behind it (seeds, blocks).
        p_value: a two-sided p-value of "no difference", where a test gave one.
    """

    estimate: float
    low: float
    high: float
    n: int
    p_value: float = math.nan

    @property
    def available(self) -> bool:
        """Whether the interval could be computed."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies strictly on one side of zero."""
        return self.available and (self.low > 0 or self.high < 0)

    @property
    def sign(self) -> int:
        """+1 above zero, -1 below, 0 when the interval contains zero (or is not available)."""
        if not self.excludes_zero:
            return 0
        return 1 if self.low > 0 else -1


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of independent measurements (e.g. over seeds).

    NaN values are left out; with fewer than two values the interval is NaN.
    """
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    sem = float(data.std(ddof=1) / math.sqrt(data.size))
    if sem == 0.0:
        return Interval(mean, mean, mean, int(data.size))
    low, high = stats.t.interval(confidence, data.size - 1, loc=mean, scale=sem)
    return Interval(mean, float(low), float(high), int(data.size))


def paired_seed_difference(
    reference: Sequence[float], variant: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """``variant - reference`` paired by seed: mean difference, t interval, paired t-test p-value.

    Both sequences are indexed by the same seeds. A constant non-zero difference (every seed
    moved by the same amount) has a zero-width interval and p = 0; no difference at all, p = 1.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(variant, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same seeds: {a.shape} vs {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    differences = b[keep] - a[keep]
    interval = mean_interval(differences.tolist(), confidence)
    if differences.size < 2:
        return interval
    if np.all(differences == differences[0]):
        p_value = 0.0 if differences[0] != 0 else 1.0
    else:
        p_value = float(stats.ttest_rel(b[keep], a[keep]).pvalue)
    return Interval(interval.estimate, interval.low, interval.high, interval.n, p_value)


def block_bootstrap_difference(
    reference: np.ndarray,
    variant: np.ndarray,
    metric: BlockMetric,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Interval:
    """Paired block bootstrap of ``metric(variant) - metric(reference)``, averaged over seeds.

    Args:
        reference: (seeds, blocks, k) summable statistics of each block, per seed.
        variant: the same for the other variant (same seeds, same blocks).
        metric: the metric of summed statistics, vectorised over leading axes.
        n_resamples: bootstrap resamples.
        confidence: the interval's confidence.
        seed: the resampling seed (the same inputs give the same interval).

    Returns:
        The difference of the block-level metric on all blocks, with scipy's percentile
        bootstrap interval over resampled block sets (NaN with fewer than two blocks).
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(variant, dtype=np.float64)
    if a.ndim != 3 or a.shape != b.shape:
        raise ValueError(f"block statistics must be (seeds, blocks, k) alike, got {a.shape} and {b.shape}")
    blocks = a.shape[1]

    def difference(indices: np.ndarray, axis: int = -1) -> np.ndarray:
        # indices: (..., blocks) resampled block indices; sums over them per seed and variant
        indices = np.asarray(indices, dtype=np.int64)
        summed_a = a[:, indices].sum(axis=-2)  # (seeds, ..., k)
        summed_b = b[:, indices].sum(axis=-2)
        return (metric(summed_b) - metric(summed_a)).mean(axis=0)

    estimate = float(difference(np.arange(blocks)))
    if blocks < 2:
        return Interval(estimate, math.nan, math.nan, blocks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate distribution (identical variants) is a valid answer
        result = stats.bootstrap(
            (np.arange(blocks),),
            difference,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            random_state=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):  # every resample gave the same difference
        low = high = estimate
    return Interval(estimate, low, high, blocks)


@dataclass(frozen=True)
class Comparison:
    """A variant against a reference on one metric.

    Attributes:
        metric: the metric's name.
        seeds: the seed-paired difference (``variant - reference``).
        blocks: the frame-block bootstrap difference, if block statistics were given.
        resolved: every available interval excludes zero, on the same side.
    """

    metric: str
    seeds: Interval
    blocks: Interval | None

    @property
    def intervals(self) -> list[Interval]:
        """The intervals that could be computed."""
        found = [i for i in (self.seeds, self.blocks) if i is not None and i.available]
        return found

    @property
    def resolved(self) -> bool:
        """Whether the difference is more than noise by every available measure."""
        signs = {i.sign for i in self.intervals}
        return bool(self.intervals) and len(signs) == 1 and 0 not in signs

    @property
    def direction(self) -> int:
        """+1 (variant higher), -1 (lower) when resolved, else 0."""
        return self.intervals[0].sign if self.resolved else 0


def compare(
    metric: str,
    reference: Sequence[float],
    variant: Sequence[float],
    reference_blocks: np.ndarray | None = None,
    variant_blocks: np.ndarray | None = None,
    block_metric: BlockMetric | None = None,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Comparison:
    """Compare a variant with the reference on one metric (see the module docstring).

    Args:
        metric: the metric's name.
        reference: the reference's metric per seed.
        variant: the variant's metric for the same seeds.
        reference_blocks: (seeds, blocks, k) block statistics of the reference, optional.
        variant_blocks: the same for the variant.
        block_metric: the metric of summed block statistics (needed with blocks).
        n_resamples: bootstrap resamples.
        confidence: the intervals' confidence.
        seed: the bootstrap's seed.
    """
    seeds = paired_seed_difference(reference, variant, confidence)
    blocks = None
    if reference_blocks is not None and variant_blocks is not None and block_metric is not None:
        blocks = block_bootstrap_difference(
            reference_blocks, variant_blocks, block_metric, n_resamples, confidence, seed
        )
    return Comparison(metric, seeds, blocks)
