import math

import pytest

from gelora import errors
from gelora.estimators.result import IDResult


def test_hierarchy():
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, Warning):
            assert issubclass(cls, errors.GeLoRAWarning) and issubclass(cls, UserWarning)
        else:
            assert issubclass(cls, errors.GeLoRAError)
    assert issubclass(errors.DuplicatePointsError, errors.DegenerateDataError)
    assert issubclass(errors.NotEnoughSamplesError, ValueError)
    assert str(errors.UnknownLayerError("no layer 'x'")) == "no layer 'x'"


def test_idresult_roundtrip_and_finite():
    r = IDResult(dimension=3.2, ci=(2.9, 3.5), method="twonn", n_samples=100, n_features=5, k=2, seed=0)
    d = r.to_dict()
    assert d["ci"] == [2.9, 3.5]
    assert IDResult.from_dict(d) == r
    assert math.isclose(r.ci_width, 0.6)
    with pytest.raises(ValueError, match="finite"):
        IDResult(dimension=float("nan"), ci=(0, 1), method="twonn", n_samples=1, n_features=1)
