"""Input validation shared by every intrinsic-dimension estimator.

All checks raise subclasses of :class:`gelora.errors.InvalidInputError` with a message that says what
was expected, so that callers never see a silent NaN or a deep NumPy traceback.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np

from gelora.errors import (
    ConfigError,
    DegenerateDataError,
    InvalidInputError,
    NotEnoughSamplesError,
    SmallSampleWarning,
)

__all__ = [
    "check_points",
    "check_int",
    "check_float",
    "check_choice",
    "check_seed",
    "is_torch_tensor",
    "RELIABLE_INFORMATION",
    "n_for_information",
    "warn_small_sample",
]

#: A usable estimate has a 95 % interval no wider than the estimate itself (``±50 %``):
#: ``2 * 1.96 * se <= d``. With Fisher information ``c / d**2`` per independent point the relative
#: standard error is ``1 / sqrt(n c)``, so the criterion is ``n c >= (2 * 1.96)**2 = 15.37``.
RELIABLE_INFORMATION = (2.0 * 1.959963984540054) ** 2


def n_for_information(per_point: float, required: float = RELIABLE_INFORMATION) -> int:
    """Smallest ``n`` with ``n * per_point >= required``.

    Parameters
    ----------
    per_point : float
        Fisher information about ``d`` of one point, in units of ``1 / d**2`` (``> 0``).
    required : float
        Total information needed; :data:`RELIABLE_INFORMATION` for independent points. Neighbouring
        points share neighbours, so the estimators use measured, larger values (docs/estimators.md).

    Returns
    -------
    int
    """
    return math.ceil(required / per_point - 1e-9)


def warn_small_sample(n: int, n_min: int, estimator: str, *, stacklevel: int = 3) -> None:
    """Issue a :class:`~gelora.errors.SmallSampleWarning` when ``n < n_min``.

    Parameters
    ----------
    n : int
        Points the estimate is based on.
    n_min : int
        The estimator's smallest supported sample for its current parameters.
    estimator : str
        Name in the message (e.g. ``"TwoNN"``).
    stacklevel : int
        Passed to :func:`warnings.warn` (3 points at the caller of ``fit``).
    """
    if n < n_min:
        warnings.warn(
            SmallSampleWarning(
                f"{estimator} on {n} points: fewer than the {n_min} it needs for a usable estimate "
                f"(a 95% interval narrower than +/-50% of the estimate; see docs/estimators.md, "
                f"'Smallest sample'); do not trust this intrinsic dimension"
            ),
            stacklevel=stacklevel,
        )


def is_torch_tensor(X: Any) -> bool:
    """Return True when ``X`` is a ``torch.Tensor`` (without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(X, torch.Tensor)


def _check_torch(X: Any, min_samples: int, name: str) -> Any:
    import torch

    if X.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got a tensor with {X.ndim} "
            f"dimension(s) and shape {tuple(X.shape)}"
        )
    if X.is_complex():
        raise InvalidInputError(f"{name} must be real-valued, got dtype {X.dtype}")
    if X.dtype in (torch.float16, torch.bfloat16) or not X.is_floating_point():
        X = X.to(torch.float32)  # half precision is too coarse for distances; ints/bools upcast
    _check_shape(tuple(X.shape), min_samples, name)
    finite = torch.isfinite(X)
    if not bool(finite.all()):
        n_bad = int((~finite).any(dim=1).sum())
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {n_bad} of {X.shape[0]} rows; "
            "remove or impute them before estimating the intrinsic dimension"
        )
    if bool((X == X[:1]).all()):
        raise DegenerateDataError(
            f"{name} is constant: all {X.shape[0]} rows are identical, so it has no intrinsic dimension"
        )
    return X


def _check_shape(shape: tuple[int, ...], min_samples: int, name: str) -> None:
    n, d = shape
    if d == 0:
        raise InvalidInputError(f"{name} has 0 features; expected shape (n_samples, n_features>=1)")
    if n < 2:
        raise NotEnoughSamplesError(
            f"{name} has {n} point(s); an intrinsic dimension needs at least 2 (this estimator needs "
            f"{min_samples})"
        )
    if n < min_samples:
        raise NotEnoughSamplesError(
            f"{name} has {n} points but this estimator needs at least {min_samples} "
            "(k + 1 for a k-nearest-neighbour estimator); lower k or supply more points"
        )


def check_points(X: Any, *, min_samples: int = 2, name: str = "X") -> Any:
    """Validate a point cloud and return it in a floating dtype fit for distance computations.

    Parameters
    ----------
    X : array-like or torch.Tensor, shape (n_samples, n_features)
        The points. Lists, NumPy arrays of any real dtype and torch tensors are accepted.
    min_samples : int
        Fewest rows the caller needs (``k + 1`` for a k-NN estimator).
    name : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray of float64, or torch.Tensor
        NumPy input (and anything array-like) is returned as a C-contiguous float64 array; integer,
        boolean, float16 and float32 inputs are upcast. A torch tensor stays a tensor on its device:
        float32/float64 are kept, float16/bfloat16/integer/bool become float32.

    Raises
    ------
    InvalidInputError
        Not 2-D, no features, complex or non-numeric dtype, NaN or infinite entries.
    NotEnoughSamplesError
        Fewer than ``max(2, min_samples)`` rows.
    DegenerateDataError
        Every row is identical (constant data).
    """
    if is_torch_tensor(X):
        return _check_torch(X, min_samples, name)
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} could not be converted to a numeric array: {exc}") from exc
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{name} must be numeric, got an object array that is not convertible to float: {exc}"
            ) from exc
    if np.iscomplexobj(arr):
        raise InvalidInputError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInputError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidInputError(
            f"{name} must be a 2-D array of shape (n_samples, n_features), got {arr.ndim} "
            f"dimension(s) with shape {arr.shape}; use X.reshape(-1, 1) for 1-D data"
        )
    _check_shape(arr.shape, min_samples, name)
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    # a finite sum proves every entry finite (NaN and inf propagate); only otherwise (non-finite
    # entries, or finite ones whose sum overflows) the entrywise test: the common case costs one pass
    # without a boolean temporary
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum()
    if np.isfinite(total):
        return _check_not_constant(arr, name)
    finite = np.isfinite(arr)
    if not finite.all():
        n_bad = int((~finite).any(axis=1).sum())
        raise InvalidInputError(
            f"{name} contains NaN or infinite values in {n_bad} of {arr.shape[0]} rows; "
            "remove or impute them before estimating the intrinsic dimension"
        )
    return _check_not_constant(arr, name)


def _check_not_constant(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` unless all its rows are identical (:class:`DegenerateDataError`)."""
    # rows 0 and 1 differ in almost all real data: only then is the full comparison skipped
    if not (arr[1] != arr[0]).any() and (arr == arr[:1]).all():
        raise DegenerateDataError(
            f"{name} is constant: all {arr.shape[0]} rows are identical, so it has no intrinsic dimension"
        )
    return arr


def check_int(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Validate an integer parameter (bools are rejected) and return it as ``int``.

    Raises
    ------
    ConfigError
        Not an integer or outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Validate a finite real parameter inside an interval and return it as ``float``.

    Raises
    ------
    ConfigError
        Not a real number, not finite, or outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        raise ConfigError(f"{name} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (not high_inclusive and value == high)):
        raise ConfigError(f"{name} must be {'<=' if high_inclusive else '<'} {high}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Validate a string option against its allowed values.

    Raises
    ------
    ConfigError
        ``value`` is not one of ``choices``.
    """
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """Validate a seed: ``None`` or a non-negative integer.

    Raises
    ------
    ConfigError
        Anything else (a ``Generator`` cannot be recorded in a JSON result, so it is refused).
    """
    if seed is None:
        return None
    return check_int(seed, name, minimum=0)
