"""dadapy (0.3.4) as a speed peer, importable beside numpy 2.

dadapy 0.3.4 pins ``numpy < 2`` and ships Cython extensions built for numpy 1, and its package
``__init__`` imports them (the density-peak clustering), so ``import dadapy`` fails under numpy 2. Its
TwoNN (``IdEstimation.compute_id_2NN``) and its k-NN (``_utils.utils.compute_nn_distances``,
scikit-learn's ``NearestNeighbors``) are pure Python and work with numpy 2 once that ``__init__`` is
bypassed, which :func:`load` does by registering an empty ``dadapy`` package before importing them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from typing import Any

__all__ = ["load"]


def load() -> Any:
    """A namespace with ``IdEstimation`` and ``compute_nn_distances``, or None if dadapy is missing."""
    if "dadapy" not in sys.modules:
        spec = importlib.util.find_spec("dadapy")
        if spec is None or spec.submodule_search_locations is None:
            return None
        pkg = types.ModuleType("dadapy")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["dadapy"] = pkg
    try:
        from dadapy._utils.utils import compute_nn_distances
        from dadapy.id_estimation import IdEstimation
    except ImportError:
        return None
    return types.SimpleNamespace(IdEstimation=IdEstimation, compute_nn_distances=compute_nn_distances)
