"""Scikit-learn style plumbing shared by the k-NN intrinsic-dimension estimators."""

from __future__ import annotations

import inspect
from typing import Any

from gelora.errors import ConfigError
from gelora.estimators._checks import check_choice, check_float, check_seed
from gelora.estimators.knn import METRICS
from gelora.estimators.result import IDResult


class BaseIDEstimator:
    """Parameters in ``__init__``, validation and work in ``fit``, results in ``*_`` attributes.

    Subclasses set ``method`` (the name recorded in :class:`IDResult`) and implement ``fit``.
    ``get_params``/``set_params`` follow scikit-learn so the estimators work with its tools.
    """

    method: str = ""
    # common constructor parameters every subclass sets in ``__init__``
    metric: str
    duplicates: str
    seed: int | None
    ci_level: float

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind in kinds]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> BaseIDEstimator:
        """Set constructor parameters (validated at the next ``fit``)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ConfigError(
                    f"{type(self).__name__} has no parameter {key!r}; valid: {', '.join(sorted(valid))}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _validate_common(self) -> None:
        check_choice(self.metric, "metric", METRICS)
        check_choice(self.duplicates, "duplicates", ("raise", "dedupe"))
        check_seed(self.seed)
        check_float(self.ci_level, "ci_level", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)

    def _json_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in self.get_params().items():
            out[k] = v if v is None or isinstance(v, (bool, int, float, str)) else str(v)
        return out

    def _store(
        self,
        *,
        dimension: float,
        ci: tuple[float, float],
        ci_method: str,
        n_samples: int,
        n_features: int,
        k: int | None,
        n_duplicates_removed: int,
        seed: int | None,
    ) -> IDResult:
        result = IDResult(
            dimension=float(dimension),
            ci=(float(ci[0]), float(ci[1])),
            method=self.method,
            n_samples=int(n_samples),
            n_features=int(n_features),
            k=k,
            ci_level=float(self.ci_level),
            ci_method=ci_method,
            params=self._json_params(),
            seed=seed,
            n_duplicates_removed=int(n_duplicates_removed),
        )
        self.dimension_ = result.dimension
        self.ci_ = result.ci
        self.result_ = result
        self.n_duplicates_removed_ = result.n_duplicates_removed
        return result
