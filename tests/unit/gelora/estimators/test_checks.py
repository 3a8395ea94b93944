"""Input validation of gelora.estimators._checks: every bad input gets its typed error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gelora.errors import ConfigError, DegenerateDataError, InvalidInputError, NotEnoughSamplesError
from gelora.estimators._checks import check_choice, check_float, check_int, check_points, check_seed


def test_valid_points_become_contiguous_float64():
    X = np.asfortranarray(np.arange(12, dtype=np.int32).reshape(6, 2))
    out = check_points(X, min_samples=3)
    assert out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, X)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.int8, np.uint16, np.bool_])
def test_numpy_dtypes_are_upcast(dtype):
    X = (np.arange(20).reshape(10, 2) % 3).astype(dtype)
    assert check_points(X).dtype == np.float64


def test_lists_are_accepted():
    assert check_points([[0, 1], [1, 0], [2, 2]]).shape == (3, 2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad):
    X = np.random.default_rng(0).normal(size=(10, 3))
    X[4, 1] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite values in 1 of 10 rows"):
        check_points(X)


@pytest.mark.parametrize("shape", [(10,), (2, 3, 4), ()])
def test_non_2d_input_is_refused(shape):
    with pytest.raises(InvalidInputError, match="2-D"):
        check_points(np.zeros(shape))


def test_single_point_and_too_few_points():
    with pytest.raises(NotEnoughSamplesError, match="1 point"):
        check_points(np.ones((1, 4)))
    with pytest.raises(NotEnoughSamplesError, match="needs at least 21"):
        check_points(np.random.default_rng(0).normal(size=(20, 3)), min_samples=21)


def test_no_features_is_refused():
    with pytest.raises(InvalidInputError, match="0 features"):
        check_points(np.zeros((5, 0)))


def test_constant_data_is_degenerate():
    with pytest.raises(DegenerateDataError, match="constant"):
        check_points(np.full((7, 3), 2.5))


def test_complex_and_non_numeric_are_refused():
    with pytest.raises(InvalidInputError, match="real-valued"):
        check_points(np.ones((4, 2), dtype=complex))
    with pytest.raises(InvalidInputError):
        check_points(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InvalidInputError, match="object array"):
        check_points(np.array([[object(), 1.0], [2.0, 3.0]], dtype=object))


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float16, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.int64, torch.float32),
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_torch_tensors_stay_tensors_with_a_distance_dtype(dtype, expected):
    X = torch.arange(20).reshape(10, 2).to(dtype)
    out = check_points(X)
    assert isinstance(out, torch.Tensor) and out.dtype == expected


def test_torch_errors_match_numpy_errors():
    X = torch.zeros(5, 2)
    with pytest.raises(DegenerateDataError):
        check_points(X)
    X[0, 0] = float("nan")
    with pytest.raises(InvalidInputError, match="NaN"):
        check_points(X)
    with pytest.raises(InvalidInputError, match="2-D"):
        check_points(torch.zeros(5))
    with pytest.raises(NotEnoughSamplesError):
        check_points(torch.ones(1, 3))


def test_parameter_checks():
    assert check_int(3, "k", minimum=1) == 3
    assert check_int(np.int64(4), "k") == 4
    for bad in (True, 2.0, "3"):
        with pytest.raises(ConfigError, match="integer"):
            check_int(bad, "k")
    with pytest.raises(ConfigError, match=">= 1"):
        check_int(0, "k", minimum=1)
    assert check_float(0.5, "f", low=0, high=1) == 0.5
    with pytest.raises(ConfigError, match="< 1"):
        check_float(1.0, "f", low=0, high=1, high_inclusive=False)
    with pytest.raises(ConfigError, match="finite"):
        check_float(float("nan"), "f")
    with pytest.raises(ConfigError, match="one of"):
        check_choice("l2", "metric", ("euclidean", "cosine"))
    assert check_seed(None) is None and check_seed(7) == 7
    with pytest.raises(ConfigError):
        check_seed(-1)
    with pytest.raises(ConfigError):
        check_seed(np.random.default_rng(0))


def test_finite_values_whose_sum_overflows_are_accepted():
    # the fast finite test (one sum) overflows here; the entrywise test must then accept the array
    X = np.full((4, 3), 1e308)
    X[1, 0] = -1e308
    out = check_points(X)
    assert np.array_equal(out, X)
    X[2, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        check_points(X)
    Y = np.full((4, 3), 1e308)
    Y[0, 0] = 1.0
    Y[3, 1] = -np.inf  # inf + finite overflow mixed: still refused
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        check_points(Y)
