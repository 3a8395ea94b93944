"""The result object every intrinsic-dimension estimator returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class IDResult:
    """An intrinsic-dimension estimate with its uncertainty and provenance.

    Attributes
    ----------
    dimension : float
        The point estimate (dimensionless, > 0).
    ci : tuple of float
        ``(low, high)`` confidence interval of ``dimension`` at level ``ci_level``.
    ci_level : float
        Coverage of ``ci`` (default 0.95).
    ci_method : str
        How ``ci`` was obtained: ``"analytic"``, ``"bootstrap"`` or ``"none"``.
    method : str
        Estimator name (``"twonn"``, ``"mle"``, ``"danco"``).
    n_samples, n_features : int
        Shape of the data actually used (after de-duplication, if any).
    k : int or None
        Neighbourhood size used (TwoNN uses 2).
    params : dict
        Every parameter of the estimator, JSON-serialisable.
    seed : int or None
        Seed of every random choice (bootstrap, calibration); ``None`` when nothing was random.
    n_duplicates_removed : int
        Points dropped by ``duplicates="dedupe"``.
    """

    dimension: float
    ci: tuple[float, float]
    method: str
    n_samples: int
    n_features: int
    k: int | None = None
    ci_level: float = 0.95
    ci_method: str = "analytic"
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    n_duplicates_removed: int = 0

    def __post_init__(self) -> None:
        if not math.isfinite(self.dimension):
            raise ValueError(f"IDResult.dimension must be finite, got {self.dimension!r}")

    @property
    def ci_width(self) -> float:
        return float(self.ci[1] - self.ci[0])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci"] = [float(self.ci[0]), float(self.ci[1])]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IDResult:
        d = dict(d)
        d["ci"] = tuple(d["ci"])
        return cls(**d)
