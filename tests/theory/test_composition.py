"""Composition: per-block bounds along a network, and validity/tightness of the rank rule.

* Toy transformer (``synthetic.maps.ToyTransformer``): every hidden state's TwoNN and DANCo estimate stays below
  ``b_j = min(dim M, rank T_0, ..., rank T_{j-1})`` plus the sampling limit (Theorem 3.2 block by block), and
  the GeLoRA gaps ``d_hat_{j+1} - d_hat_j`` stay within their sampling limits around the true gap (which
  is <= 0: a deterministic stack never raises the ID). MLE (``k = 20``) does not hold here: it overshoots
  beyond its tolerance on unevenly stretched, folded hidden states (logged, and kept as a strict xfail in
  ``test_counterexamples.py``).
* Planted update (``validation.theory.PlantedUpdateNetwork``): a frozen random residual network whose block
  ``i`` receives a rank-``k`` update reading a context the frozen network ignores. Theorem 3.2 gives
  ``d_{i+1} - d_i <= k`` and the construction attains ``min(k, d_context)``. Validity: the gap the rule sees
  never exceeds ``k`` plus the two one-sided limits (false-failure rate ``<= 2 alpha`` per block and
  method; see ``validation.theory.check_planted_network``). Tightness ``max(gap, 0) / k`` is logged and
  summarised at the end of the run ("theory: rank-rule tightness").

Statistical budget: TwoNN and MLE ``1e-4`` per layer estimate and ``2e-4`` per gap; with 20 examples of at
most 4 layers and 3 gaps per test the ``ci`` run's TwoNN/MLE false-failure probability is at most
``2 * 20 * (4e-4 + 6e-4) = 0.04`` per test by the union bound (DANCo: its calibration extreme, see
``test_estimated_layer.py``) -- and ``ci`` is derandomised, so its outcome is fixed and reproducible.
"""

from __future__ import annotations

from hypothesis import given, note
from hypothesis import strategies as st

from synthetic.strategies import transformers_with_inputs
from validation.theory import METHODS, PlantedUpdateNetwork, check_planted_network, check_toy_transformer

#: estimators held to the per-layer bound on toy transformers; MLE (k = 20) is not -- see the docstring
STRICT_ON_TOY_TRANSFORMERS = ("twonn", "danco")


@given(tw=transformers_with_inputs(max_d=4, max_blocks=3))
def test_toy_transformer_estimates_respect_block_bounds(tw, danco_cache, overshoot_log):
    """TwoNN and DANCo respect every layer's bound and gap limit; MLE's violations are logged.

    MLE's 20-neighbour balls overshoot the bound beyond its calibrated tolerance on hidden states that the
    saturating plain blocks stretch unevenly and fold (``test_counterexamples.py::
    test_mle_overshoots_bound_on_saturating_toy_transformer``); its records are logged with
    ``beyond_tolerance=True`` and printed in the terminal summary instead of failing this test.
    """
    tt, M, params = tw
    note(repr(params))
    res = check_toy_transformer(
        tt, M.X, params["kind"], M.intrinsic_dim, methods=METHODS, cache_dir=danco_cache
    )
    note(repr({k: v for k, v in res.items() if k != "methods"}))
    assert res["exact_passed"], res
    for method, r in res["methods"].items():
        note(f"{method}: dims={r['dims']} gaps={r['gaps']} limits={r['gap_limits']} ranks={r['ranks']}")
        for rec in r["layer_records"]:
            if rec["overshoot"]:
                overshoot_log.append(
                    {"test": "toy_transformer", **rec, "beyond_tolerance": not rec["passed"]}
                )
        if method in STRICT_ON_TOY_TRANSFORMERS:
            assert r["passed"], (method, r)


@st.composite
def planted_networks(draw: st.DrawFn) -> PlantedUpdateNetwork:
    """Teacher networks: token dim 1-3, context dim 1-4, planted rank 0-3 in one of 3 blocks, width 12."""
    return PlantedUpdateNetwork(
        d_token=draw(st.integers(1, 3)),
        d_context=draw(st.integers(1, 4)),
        k=draw(st.integers(0, 3)),
        block=draw(st.integers(0, 2)),
        n_blocks=3,
        width=12,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@given(net=planted_networks(), n=st.sampled_from([600, 1000]), data_seed=st.integers(0, 2**31 - 1))
def test_planted_update_gap_never_exceeds_k(net, n, data_seed, danco_cache, tightness_log):
    res = check_planted_network(net, n, data_seed=data_seed, methods=METHODS, cache_dir=danco_cache)
    note(repr(res))
    # exact part: Jacobian ranks equal the ground truth and the planted block adds at most k
    assert res["exact"]["passed"], res["exact"]
    for method, r in res["methods"].items():
        if net.k > 0:
            tightness_log.append(
                {"method": method, "k": net.k, "d_context": net.d_context, "tightness": r["tightness"]}
            )
        assert r["valid"], (method, r)
