"""The ablation statistics: intervals with their nominal coverage, paired tests, the block bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hvps_lightning.evaluation.statistics import (
    Comparison,
    Interval,
    block_bootstrap_difference,
    compare,
    mean_interval,
    paired_seed_difference,
)


def ratio(vectors: np.ndarray) -> np.ndarray:
    """A metric of summed statistics: numerator / denominator (like sMOTSA or AQ)."""
    return vectors[..., 0] / np.maximum(vectors[..., 1], 1e-12)


def test_mean_interval_is_the_t_interval() -> None:
    values = [0.31, 0.35, 0.29, 0.40]
    interval = mean_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=np.mean(values), scale=stats.sem(values))
    assert (interval.estimate, interval.low, interval.high, interval.n) == pytest.approx(
        (np.mean(values), low, high, 4)
    )
    one = mean_interval([0.3])
    assert one.estimate == 0.3 and not one.available and not one.excludes_zero
    assert mean_interval([0.2, math.nan, 0.4]).n == 2


def test_intervals_cover_the_true_mean_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    hits = sum(
        (i := mean_interval(rng.normal(0.3, 0.05, size=3).tolist())).low <= 0.3 <= i.high for _ in range(2000)
    )
    assert 0.93 <= hits / 2000 <= 0.97


def test_paired_difference_removes_the_seed_effect() -> None:
    # seeds differ a lot, the variant is consistently 0.02 lower: paired, that is resolved
    reference = [0.30, 0.45, 0.60]
    variant = [0.28, 0.4305, 0.578]
    paired = paired_seed_difference(reference, variant)
    assert paired.estimate == pytest.approx(-0.0205) and paired.excludes_zero and paired.sign == -1
    assert paired.p_value == pytest.approx(stats.ttest_rel(variant, reference).pvalue)
    same = paired_seed_difference(reference, reference)
    assert same.estimate == 0 and not same.excludes_zero and same.p_value == 1.0
    with pytest.raises(ValueError, match="same seeds"):
        paired_seed_difference([0.1, 0.2], [0.1])


def test_block_bootstrap_resolves_a_planted_effect_and_not_identical_variants() -> None:
    rng = np.random.default_rng(1)
    reference = np.stack([rng.uniform(5, 10, (8,)), rng.uniform(10, 12, (8,))], axis=-1)[None].repeat(3, 0)
    worse = reference.copy()
    worse[..., 0] *= 0.85
    planted = block_bootstrap_difference(reference, worse, ratio)
    assert planted.excludes_zero and planted.sign == -1 and planted.n == 8
    assert planted.estimate == pytest.approx(float(ratio(worse[0].sum(0)) - ratio(reference[0].sum(0))))
    same = block_bootstrap_difference(reference, reference.copy(), ratio)
    assert same == Interval(0.0, 0.0, 0.0, 8)
    assert block_bootstrap_difference(reference, worse, ratio) == planted  # seeded: reproducible
    single = block_bootstrap_difference(reference[:, :1], worse[:, :1], ratio)
    assert not single.available
    with pytest.raises(ValueError, match="seeds, blocks, k"):
        block_bootstrap_difference(reference[0], worse[0], ratio)


def test_noise_alone_is_rarely_resolved() -> None:
    """Two variants drawn from the same distribution: resolved in about 5 % of cases or fewer."""
    rng = np.random.default_rng(2)
    resolved = 0
    for _ in range(100):
        base = np.stack([rng.uniform(5, 10, (6,)), np.full(6, 10.0)], axis=-1)
        a = (base + rng.normal(0, 0.5, base.shape) * [1, 0])[None]
        b = (base + rng.normal(0, 0.5, base.shape) * [1, 0])[None]
        resolved += block_bootstrap_difference(a, b, ratio, n_resamples=500).excludes_zero
    assert resolved <= 12


def test_resolved_needs_every_interval_on_one_side() -> None:
    down = Interval(-0.1, -0.2, -0.05, 3)
    up = Interval(0.1, 0.05, 0.2, 6)
    wide = Interval(0.0, -0.1, 0.1, 3)
    missing = Interval(0.1, math.nan, math.nan, 1)
    assert Comparison("aq", down, Interval(-0.1, -0.3, -0.01, 6)).resolved
    assert Comparison("aq", down, Interval(-0.1, -0.3, -0.01, 6)).direction == -1
    assert not Comparison("aq", down, up).resolved  # the two measures disagree
    assert not Comparison("aq", wide, down).resolved
    assert Comparison("aq", missing, up).resolved  # one seed: the frame blocks decide
    assert not Comparison("aq", missing, None).resolved
    comparison = compare("aq", [0.3, 0.4, 0.5], [0.2, 0.3, 0.4])
    assert comparison.blocks is None and comparison.resolved
