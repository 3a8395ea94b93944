"""Argument checks shared by the generators in :mod:`synthetic`.

Every check raises :class:`gelora.errors.InvalidInputError` (a ``ValueError``) with a message that names the
argument and says what was expected, so a bad call never ends in a deep NumPy traceback or a silent NaN.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from gelora.errors import InvalidInputError


def check_int(value: object, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` after checking type and range.

    Parameters
    ----------
    value : object
        Candidate integer (Python or NumPy integer; ``bool`` is rejected).
    name : str
        Argument name used in the error message.
    minimum, maximum : int
        Inclusive bounds (``maximum=None``: unbounded).

    Returns
    -------
    int

    Raises
    ------
    InvalidInputError
        If ``value`` is not an integer or lies outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInputError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    ivalue = int(value)
    if ivalue < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {ivalue}")
    if maximum is not None and ivalue > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {ivalue}")
    return ivalue


def check_float(
    value: object,
    name: str,
    *,
    minimum: float | None = None,
    strictly_positive: bool = False,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a finite Python ``float`` after checking its range.

    Parameters
    ----------
    value : object
        Candidate real number.
    name : str
        Argument name used in the error message.
    minimum : float, optional
        Inclusive lower bound.
    strictly_positive : bool
        Require ``value > 0``.
    maximum : float, optional
        Inclusive upper bound.

    Raises
    ------
    InvalidInputError
        If ``value`` is not a finite real number or is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    fvalue = float(value)
    if not math.isfinite(fvalue):
        raise InvalidInputError(f"{name} must be finite, got {fvalue}")
    if strictly_positive and fvalue <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {fvalue}")
    if minimum is not None and fvalue < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {fvalue}")
    if maximum is not None and fvalue > maximum:
        raise InvalidInputError(f"{name} must be <= {maximum}, got {fvalue}")
    return fvalue


def check_noise(noise: object) -> float:
    """Check a Gaussian noise standard deviation (``>= 0``, finite); return it as ``float``."""
    return check_float(noise, "noise", minimum=0.0)


def check_seed(seed: object) -> int:
    """Check a seed: a non-negative integer (recorded in ``params``, so a ``Generator`` is not accepted)."""
    return check_int(seed, "seed", minimum=0)


def check_intrinsic_ambient(d: int, ambient_dim: int, *, min_codim: int = 0) -> None:
    """Raise :class:`InvalidInputError` unless ``ambient_dim >= d + min_codim``.

    Parameters
    ----------
    d : int
        Intrinsic dimension.
    ambient_dim : int
        Ambient (embedding) dimension ``D``.
    min_codim : int
        Smallest admissible ``D - d`` (1 for a ``d``-sphere, which needs ``D >= d + 1``).
    """
    if ambient_dim < d + min_codim:
        raise InvalidInputError(
            f"ambient dimension D={ambient_dim} is too small for intrinsic dimension d={d}: "
            f"need D >= d + {min_codim} = {d + min_codim}"
        )


def check_points(X: object, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite float64 array of shape ``(n, D)`` with ``n >= 1`` and ``D >= 1``.

    Raises
    ------
    InvalidInputError
        If ``X`` is not two-dimensional, is empty, or holds NaN/inf.
    """
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a real array of shape (n, D): {exc}") from exc
    if arr.ndim != 2:
        raise InvalidInputError(f"{name} must have shape (n, D), got an array with shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidInputError(f"{name} must be non-empty, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains NaN or inf")
    return arr


def child_rngs(seed: int, count: int) -> list[np.random.Generator]:
    """Independent generators derived from one seed (``numpy.random.SeedSequence.spawn``).

    Separate streams for the clean points, the embedding and the noise mean that changing ``noise`` does
    not change the clean points drawn for the same ``seed``.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]
