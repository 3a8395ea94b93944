"""Invariances every estimator must have, and the documented handling of duplicated data.

Rotation (Haar-random orthogonal), translation (by 3x the data's extent), uniform scaling (by 37.5 and
1/37.5) and permutation of the points change no pairwise distance ratio, so TwoNN and MLE -- functions
of neighbour-distance ratios only -- must return the same value to floating-point tolerance
(``validation.theory.INVARIANCE_RTOL = 1e-9`` relative; the exact kNN core recomputes distances in
float64, so the observed differences are ~1e-15). DANCo (integer estimate, same seeded calibration for the
same ``n``) is held to the same tolerance.

Duplicates: ``[X; X]`` has zero nearest-neighbour distances. With ``duplicates="raise"`` (default) every
estimator raises ``DuplicatePointsError``; with ``duplicates="dedupe"`` it warns, drops the copies
(``n_duplicates_removed == n``) and returns the estimate of ``X`` itself.
"""

from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from synthetic.strategies import manifolds
from validation.theory import INVARIANCE_RTOL, METHODS, check_duplicates, check_invariances


@given(M=manifolds(max_d=5), transform_seed=st.integers(0, 2**31 - 1))
def test_similarity_and_permutation_invariance(M, transform_seed, danco_cache):
    note(repr(M.params))
    records = check_invariances(M.X, methods=METHODS, seed=transform_seed, cache_dir=danco_cache)
    worst = max(records, key=lambda r: r["rel_diff"])
    note(f"worst: {worst}")
    bad = [r for r in records if r["rel_diff"] > INVARIANCE_RTOL]
    assert not bad, bad


@given(M=manifolds(max_d=4))
def test_duplicated_dataset_raises_or_dedupes_as_documented(M, danco_cache):
    note(repr(M.params))
    for rec in check_duplicates(M.X, methods=METHODS, cache_dir=danco_cache):
        note(repr(rec))
        assert rec["raise_mode_raised"], rec
        assert rec["n_duplicates_removed"] == M.n_samples, rec
        assert rec["warned"], rec
        assert rec["rel_diff"] <= INVARIANCE_RTOL, rec
