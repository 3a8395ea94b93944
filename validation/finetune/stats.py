"""Paired statistics over seeds: the one place where fine-tuning verdicts get their intervals.

Every method of a grid trains with the same seeds (same data order, same subsets), so two methods are
compared by the per-seed difference of their scores, not by two independent means. The report's claims
(:mod:`validation.report.claims`), the paper-protocol verdicts and the ablation analysis all use these
functions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1) of at least two values, with exact (fsum) sums."""
    mean = math.fsum(values) / len(values)
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, float | None]:
    """Mean and two-sided Student-t confidence interval of ``values`` (``None`` bounds for n < 2).

    The interval assumes independent, roughly normal values (seeds, benchmark samples); with n = 3 seeds
    its half-width is 4.30 standard errors, with n = 5 it is 2.78.

    Raises
    ------
    ValueError
        If ``values`` is empty or ``level`` is not in (0, 1).
    """
    from scipy.stats import t as student_t

    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n < 2:
        return math.fsum(values) / n, None, None
    mean, sd = _mean_sd(values)
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(lo: float | None, hi: float | None) -> str:
    """``"better"`` when the interval lies above 0, ``"worse"`` below, ``"tie"`` when it holds 0,
    ``"undetermined"`` without an interval (fewer than two paired seeds)."""
    if lo is None or hi is None:
        return "undetermined"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "tie"


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95
) -> dict[str, Any] | None:
    """``a - b`` paired over their common seeds.

    Parameters
    ----------
    a, b : mapping of int to float
        ``{seed: score}`` of two methods on one task.
    level : float
        Confidence level of the t-interval (default 0.95).

    Returns
    -------
    dict or None
        ``{"diff", "ci": [lo, hi] | None, "n", "seeds", "verdict"}``; ``None`` when no seed is common.
    """
    common = sorted(set(a) & set(b))
    if not common:
        return None
    diffs = [float(a[s]) - float(b[s]) for s in common]
    diff, lo, hi = t_interval(diffs, level)
    return {
        "diff": diff,
        "ci": None if lo is None else [lo, hi],
        "n": len(common),
        "seeds": common,
        "verdict": verdict(lo, hi),
        "p": t_test_p(diffs),
    }


def t_test_p(values: Sequence[float]) -> float | None:
    """Two-sided p-value of the one-sample Student t-test of mean 0 (``None`` for fewer than 2 values).

    The test that matches :func:`t_interval`: its 95 % interval excludes 0 exactly when ``p < 0.05``.
    Values that are all equal give 0.0 (a nonzero mean without spread) or 1.0 (all zero).
    """
    from scipy.stats import t as student_t

    n = len(values)
    if n < 2:
        return None
    mean, sd = _mean_sd(values)
    if sd == 0.0:
        return 0.0 if mean != 0.0 else 1.0
    t = mean / (sd / math.sqrt(n))
    return float(2.0 * student_t.sf(abs(t), n - 1))


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down rejections: which of ``pvalues`` stay significant with family-wise error ``alpha``.

    Sort the m p-values ascending; reject the i-th smallest (i = 0, 1, ...) while ``p_(i) <= alpha / (m -
    i)``, and stop at the first that is not. Controls the probability of any false rejection at ``alpha``
    for any dependence between the tests (Holm 1979). Returns one flag per input, in input order.

    Raises
    ------
    ValueError
        If ``alpha`` is not in (0, 1) or a p-value is outside [0, 1].
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if any(not 0.0 <= p <= 1.0 for p in pvalues):
        raise ValueError(f"p-values must lie in [0, 1], got {list(pvalues)}")
    m = len(pvalues)
    out = [False] * m
    for i, k in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        if pvalues[k] > alpha / (m - i):
            break
        out[k] = True
    return out


__all__ = ["holm", "paired_difference", "t_interval", "t_test_p", "verdict"]
