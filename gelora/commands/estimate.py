"""``gelora estimate``: the intrinsic dimension of a point cloud stored in a file."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gelora.errors import ConfigError, InvalidInputError, SmallSampleWarning

DESCRIPTION = """\
Estimate the intrinsic dimension of the rows of FILE (n_samples x n_features) with TwoNN, MLE or DANCo
and print it with its confidence interval. FILE is a .npy array, a .npz archive (its only array, or the
one named by --key) or a .csv of numbers (a header row is skipped when it is not numeric).
"""


def register(subparsers: Any) -> None:
    """Add the ``estimate`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "estimate",
        help="intrinsic dimension of a point cloud (.npy/.npz/.csv)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="points, one per row: .npy, .npz or .csv")
    p.add_argument(
        "--method", default="twonn", choices=["twonn", "mle", "danco"], help="estimator (default twonn)"
    )
    p.add_argument("--k", type=int, default=None, help="neighbours (MLE, DANCo); TwoNN always uses 2")
    p.add_argument("--metric", default="euclidean", choices=["euclidean", "cosine"], help="distance")
    p.add_argument("--device", default=None, help="torch device for the neighbour search (cpu, cuda, ...)")
    p.add_argument("--duplicates", default="raise", choices=["raise", "dedupe"], help="duplicate rows")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--ci-level", type=float, default=0.95, help="confidence level (default 0.95)")
    p.add_argument("--key", default=None, help="array name inside a .npz file")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="other estimator parameter (repeatable), e.g. --param discard_fraction=0.2",
    )
    p.add_argument("--json", default=None, metavar="OUT", help="also write the IDResult as JSON (atomically)")
    p.set_defaults(func=run_estimate)


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def load_points(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a point cloud from ``.npy``, ``.npz`` or ``.csv``.

    Parameters
    ----------
    path : str or Path
        The file.
    key : str, optional
        Array name inside a ``.npz`` holding several arrays.

    Returns
    -------
    numpy.ndarray
        As stored (validation happens in the estimator).

    Raises
    ------
    InvalidInputError
        Missing file, unknown suffix, unreadable content or an ambiguous ``.npz``.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if key is None:
                    if len(names) != 1:
                        raise InvalidInputError(f"{path} holds arrays {names}; choose one with --key")
                    key = names[0]
                if key not in names:
                    raise InvalidInputError(f"{path} has no array {key!r}; it holds {names}")
                return z[key]
        if suffix == ".csv":
            try:
                return np.loadtxt(path, delimiter=",", ndmin=2)
            except ValueError:
                return np.loadtxt(path, delimiter=",", ndmin=2, skiprows=1)
    except InvalidInputError:
        raise
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"could not read {path}: {exc}") from exc
    raise InvalidInputError(f"unsupported file type {suffix!r} for {path}; use .npy, .npz or .csv")


def run_estimate(args: argparse.Namespace) -> int:
    """Run the ``estimate`` subcommand; returns the exit code."""
    from gelora._io import atomic_write_json
    from gelora.estimators import estimate_id

    params: dict[str, Any] = {}
    for item in args.param:
        if "=" not in item:
            raise ConfigError(f"--param expects KEY=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        params[name.strip()] = _parse_value(value.strip())
    params.update(
        metric=args.metric,
        duplicates=args.duplicates,
        seed=args.seed,
        ci_level=args.ci_level,
        device=args.device,
    )
    if args.k is not None:
        if args.method == "twonn":
            raise ConfigError("--k does not apply to TwoNN (it always uses the 2 nearest neighbours)")
        params["k"] = args.k
    X = load_points(args.file, args.key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallSampleWarning)
        result = estimate_id(X, method=args.method, **params)
    for w in caught:  # printed beside the number it qualifies (stdout), others re-issued unchanged
        if not issubclass(w.category, SmallSampleWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    lo, hi = result.ci
    print(
        f"{result.method}: intrinsic dimension {result.dimension:.4g} "
        f"({100 * result.ci_level:g}% CI {lo:.4g} - {hi:.4g}, {result.ci_method}); "
        f"n={result.n_samples}, D={result.n_features}"
        + (f", k={result.k}" if result.k is not None else "")
        + (f", {result.n_duplicates_removed} duplicates removed" if result.n_duplicates_removed else "")
    )
    for w in caught:
        if issubclass(w.category, SmallSampleWarning):
            print(f"warning: {w.message}")
    if args.json:
        atomic_write_json(args.json, result.to_dict())
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
