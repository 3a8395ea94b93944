"""The GeLoRA rank rule and budget matching.

Layer/block mapping. A model with ``B`` blocks has ``B + 1`` hidden states ``h_0 .. h_B``: ``h_0`` is the
embedding output (the input of block 0) and ``h_{i+1}`` is the output of block ``i``. With ``d_j`` the
intrinsic dimension of ``h_j``, block ``i`` gets

    r_i = max(d_{i+1} - d_i, 0) + offset        (i = 0 .. B-1; offset defaults to 1),

the lower bound of the paper (arXiv 2412.09250): a block that raises the dimension of its input by
``d_{i+1} - d_i`` needs an update of at least that rank. The gap is a real number; ``rounding`` turns it
into an integer *before* the offset is added: ``"ceil"`` (default: the smallest integer satisfying the
bound), ``"floor"`` or ``"round"`` (half up). With ``use_ci_upper=True`` the gap is the conservative
``upper(d_{i+1}) - lower(d_i)`` from the confidence intervals.

Budget matching (:func:`match_budget`) rescales the ranks to a target number of trainable LoRA parameters
while keeping their proportions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError

ROUNDING: tuple[str, ...] = ("ceil", "floor", "round")
#: a gap within this distance of an integer is treated as that integer before ceil/floor (float noise)
_INTEGER_TOL = 1e-9


def _as_dims(dims: Sequence[float], name: str = "dimensions") -> np.ndarray:
    arr = np.asarray(dims, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D (one value per hidden state), got shape {arr.shape}")
    if arr.size < 2:
        raise InvalidInputError(
            f"{name} needs at least 2 hidden states (embedding output + 1 block), got {arr.size}"
        )
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        raise InvalidInputError(f"{name} must be finite; hidden states {bad} are not")
    return arr


def block_gaps(
    dimensions: Sequence[float],
    *,
    cis: Sequence[Sequence[float]] | None = None,
    use_ci_upper: bool = False,
) -> np.ndarray:
    """Real-valued dimension gaps of every block.

    Parameters
    ----------
    dimensions : sequence of float, length ``B + 1``
        ID of hidden states ``h_0 .. h_B``.
    cis : sequence of (low, high), length ``B + 1``, optional
        Confidence intervals of ``dimensions``; required when ``use_ci_upper``.
    use_ci_upper : bool
        Use ``cis[i+1][1] - cis[i][0]`` (largest gap compatible with both intervals) instead of
        ``dimensions[i+1] - dimensions[i]``.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64; entry ``i`` belongs to block ``i`` (may be negative).
    """
    d = _as_dims(dimensions)
    if not use_ci_upper:
        return np.diff(d)
    if cis is None:
        raise ConfigError("use_ci_upper=True needs the confidence intervals (cis)")
    ci = np.asarray(cis, dtype=np.float64)
    if ci.shape != (d.size, 2):
        raise InvalidInputError(f"cis must have shape ({d.size}, 2), got {ci.shape}")
    if not np.all(np.isfinite(ci)):
        raise InvalidInputError("confidence intervals must be finite")
    if np.any(ci[:, 0] > ci[:, 1]):
        raise InvalidInputError("every confidence interval must satisfy low <= high")
    return ci[1:, 1] - ci[:-1, 0]


def _round(x: float, rounding: str) -> int:
    nearest = round(x)
    if abs(x - nearest) <= _INTEGER_TOL:
        return int(nearest)
    if rounding == "ceil":
        return int(math.ceil(x))
    if rounding == "floor":
        return int(math.floor(x))
    return int(math.floor(x + 0.5))


def ranks_from_dimensions(
    dimensions: Sequence[float],
    *,
    offset: int = 1,
    rounding: str = "ceil",
    cis: Sequence[Sequence[float]] | None = None,
    use_ci_upper: bool = False,
) -> list[int]:
    """Per-block ranks ``r_i = max(round(d_{i+1} - d_i), 0) + offset``.

    Parameters
    ----------
    dimensions : sequence of float, length ``B + 1``
        ID of hidden states ``h_0`` (embedding output) .. ``h_B`` (output of the last block).
    offset : int
        Added to every rank (default 1, as in the paper), so every block gets rank >= ``offset``.
    rounding : {"ceil", "floor", "round"}
        How the real gap becomes an integer (``"round"`` rounds halves up).
    cis, use_ci_upper
        See :func:`block_gaps`.

    Returns
    -------
    list of int
        ``B`` ranks; entry ``i`` is the rank of block ``i`` (the map ``h_i -> h_{i+1}``).
    """
    if rounding not in ROUNDING:
        raise ConfigError(f"rounding must be one of {ROUNDING}, got {rounding!r}")
    if not isinstance(offset, int | np.integer) or isinstance(offset, bool) or offset < 0:
        raise ConfigError(f"offset must be a non-negative integer, got {offset!r}")
    gaps = block_gaps(dimensions, cis=cis, use_ci_upper=use_ci_upper)
    ranks = [max(_round(float(g), rounding), 0) + int(offset) for g in gaps]
    if any(r < 1 for r in ranks):
        zero = [i for i, r in enumerate(ranks) if r < 1]
        raise ConfigError(
            f"blocks {zero} get rank 0 (no dimension increase and offset=0); LoRA needs rank >= 1, use offset >= 1"
        )
    return ranks


@dataclass(frozen=True)
class BudgetAllocation:
    """Ranks rescaled to a parameter budget.

    Attributes
    ----------
    ranks : list of int
        New rank of every block (all >= 1).
    target : int
        Requested number of trainable LoRA parameters.
    achieved : int
        ``sum(ranks[i] * unit_costs[i])``: the exact number of trainable LoRA parameters; ``<= target``.
    unit_costs : list of int
        Parameters per unit of rank of each block (``sum over its modules of in + out``).
    scale : float
        The factor ``s`` with ``ranks ~ s * original ranks`` before integer rounding.
    """

    ranks: list[int]
    target: int
    achieved: int
    unit_costs: list[int]
    scale: float
    original_ranks: list[int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lora_parameter_count(ranks: Sequence[int], unit_costs: Sequence[int]) -> int:
    """Trainable LoRA parameters ``sum_i ranks[i] * unit_costs[i]`` (A is ``r x in``, B is ``out x r``)."""
    if len(ranks) != len(unit_costs):
        raise InvalidInputError(f"{len(ranks)} ranks but {len(unit_costs)} unit costs")
    return int(sum(int(r) * int(c) for r, c in zip(ranks, unit_costs)))


def uniform_budget(unit_costs: Sequence[int], rank: int = 8) -> int:
    """Budget of uniform LoRA with rank ``rank`` on the same modules: ``rank * sum(unit_costs)``."""
    if not isinstance(rank, int | np.integer) or rank < 1:
        raise ConfigError(f"rank must be a positive integer, got {rank!r}")
    return int(rank) * int(sum(int(c) for c in unit_costs))


def match_budget(ranks: Sequence[int], unit_costs: Sequence[int], target: int) -> BudgetAllocation:
    """Rescale ``ranks`` to use at most ``target`` LoRA parameters, keeping their proportions.

    Algorithm: the real allocation is ``x_i = s * ranks[i]`` with ``s`` such that
    ``sum_i x_i * unit_costs[i] = target``. Integer ranks use largest-remainder rounding with a floor of
    1: the largest ``s' <= s`` whose floors ``max(1, floor(s' * r_i))`` fit the budget is found by
    bisection, then blocks receive one more unit in decreasing order of their remainder
    ``s' r_i - floor(s' r_i)`` whenever the extra ``unit_costs[i]`` still fits. The result never exceeds
    ``target``; the exact target is often not reachable with integers (e.g. with equal unit costs ``c``
    only multiples of ``c`` are), and then the allocation is the closest one not exceeding it that the
    largest-remainder rule gives (with equal unit costs: exactly ``floor(target / c)`` units, the
    closest possible, whenever that is at least the number of blocks).

    Raises
    ------
    ConfigError
        ``target`` is smaller than rank 1 everywhere (``sum(unit_costs)``) or not a positive integer.
    """
    r = np.asarray(ranks, dtype=np.float64)
    c = np.asarray(unit_costs, dtype=np.int64)
    if r.ndim != 1 or r.size == 0 or r.size != c.size:
        raise InvalidInputError(
            f"ranks ({r.size}) and unit_costs ({c.size}) must be non-empty and equal length"
        )
    if np.any(r < 1) or np.any(r != np.round(r)):
        raise InvalidInputError(f"ranks must be integers >= 1, got {list(ranks)}")
    if np.any(c < 1):
        raise InvalidInputError(f"unit_costs must be positive integers, got {list(unit_costs)}")
    if isinstance(target, bool) or not isinstance(target, int | np.integer) or target < 1:
        raise ConfigError(f"budget target must be a positive integer, got {target!r}")
    minimum = int(c.sum())
    if target < minimum:
        raise ConfigError(
            f"budget {target} is below the minimum {minimum} (rank 1 on every block); raise the budget"
        )
    weight = float((r * c).sum())
    s_exact = target / weight

    def floors(s: float) -> np.ndarray:
        return np.maximum(1, np.floor(s * r + 1e-12)).astype(np.int64)

    def cost(a: np.ndarray) -> int:
        return int((a * c).sum())

    lo, hi = 0.0, s_exact
    if cost(floors(hi)) <= target:
        lo = hi
    else:
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if cost(floors(mid)) <= target:
                lo = mid
            else:
                hi = mid
    s = lo
    alloc = floors(s)
    spent = cost(alloc)
    remainder = s_exact * r - alloc  # distance of each block from its exact share
    for i in np.argsort(-remainder, kind="stable"):
        if remainder[i] > 0 and spent + int(c[i]) <= target:
            alloc[i] += 1
            spent += int(c[i])
    return BudgetAllocation(
        ranks=[int(a) for a in alloc],
        target=int(target),
        achieved=int(spent),
        unit_costs=[int(x) for x in c],
        scale=float(s_exact),
        original_ranks=[int(x) for x in r],
    )


__all__ = [
    "ROUNDING",
    "BudgetAllocation",
    "block_gaps",
    "lora_parameter_count",
    "match_budget",
    "ranks_from_dimensions",
    "uniform_budget",
]
