"""Hypothesis profiles and the overshoot log of the theory suite.

Profiles
--------
``ci`` (loaded by default)
    Derandomised (examples are a fixed function of each test's source, so every run draws the same
    examples), no example database, ``max_examples=20``, no deadline. This is what ``tox -e theory`` runs.
``thorough``
    Randomised, ``max_examples=100``, no deadline. Select with
    ``tox -e theory -- --hypothesis-profile=thorough`` (or ``HYPOTHESIS_PROFILE=thorough``).
``dev``
    Randomised, ``max_examples=3``: a smoke run while editing.

Each statistical test states its per-example false-failure rate ``alpha``; the per-run rate is then at
most ``alpha * (examples * estimates per example)`` by the union bound (printed in the terminal summary).

Overshoots and tightness
------------------------
An estimate above the theorem's bound but inside the sampling tolerance is not a failure, but it is not
hidden either: tests call the ``overshoot_log`` fixture and every logged case is printed in pytest's
terminal summary ("theory: estimator overshoots"). The composition tests log the tightness ``gap / k`` of
the rank rule on planted rank-``k`` updates (``tightness_log``), summarised per estimator.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", derandomize=True, max_examples=20, **_COMMON)
settings.register_profile("thorough", derandomize=False, max_examples=100, **_COMMON)
settings.register_profile("dev", derandomize=False, max_examples=3, **_COMMON)

#: profile used when neither ``--hypothesis-profile`` nor ``HYPOTHESIS_PROFILE`` is given
DEFAULT_PROFILE = "ci"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", DEFAULT_PROFILE))

_OVERSHOOTS: list[dict[str, Any]] = []
_TIGHTNESS: list[dict[str, Any]] = []


def pytest_configure(config: pytest.Config) -> None:
    # pytest_configure is a historic hook, so this also runs when this conftest is collected late
    # (``pytest tests``); re-apply the command-line profile so it always wins over the default.
    chosen = config.getoption("--hypothesis-profile", default=None) or os.environ.get("HYPOTHESIS_PROFILE")
    settings.load_profile(chosen or DEFAULT_PROFILE)


@pytest.fixture(scope="session")
def overshoot_log() -> Iterator[list[dict[str, Any]]]:
    """Session-wide list of overshoot records (dicts), printed in the terminal summary."""
    yield _OVERSHOOTS


@pytest.fixture(scope="session")
def tightness_log() -> Iterator[list[dict[str, Any]]]:
    """Session-wide list of rank-rule tightness records (``gap / k`` of planted updates), summarised at the end."""
    yield _TIGHTNESS


@pytest.fixture(scope="session")
def danco_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A per-session DANCo calibration cache (calibrations are reused across examples of equal n)."""
    return str(tmp_path_factory.mktemp("danco_cache"))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    tr = terminalreporter
    tr.section("theory: hypothesis profile")
    tr.write_line(f"profile={settings.get_current_profile_name()!r} {settings.default}")
    if _TIGHTNESS:
        tr.section(f"theory: rank-rule tightness on planted updates ({len(_TIGHTNESS)} cases)")
        by_method: dict[str, list[float]] = {}
        for rec in _TIGHTNESS:
            by_method.setdefault(rec["method"], []).append(rec["tightness"])
        for method, vals in sorted(by_method.items()):
            v = sorted(vals)
            tr.write_line(
                f"{method}: gap/k min={v[0]:.3f} median={v[len(v) // 2]:.3f} max={v[-1]:.3f} over {len(v)} planted updates"
            )
    if not _OVERSHOOTS:
        return
    beyond = sum(bool(r.get("beyond_tolerance")) for r in _OVERSHOOTS)
    tr.section(
        f"theory: estimator overshoots ({len(_OVERSHOOTS) - beyond} within tolerance, {beyond} beyond tolerance "
        "in documented non-strict cases)"
    )
    for rec in _OVERSHOOTS:
        tr.write_line(
            ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        )
