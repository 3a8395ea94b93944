"""Composition: the bound along the layers of a network.

A toy transformer's estimates respect the per-block bounds (:func:`check_toy_transformer`); in a frozen
random residual network with a planted rank-``k`` update (:class:`PlantedUpdateNetwork`) the gap
``d_{i+1} - d_i`` the rank rule sees never exceeds ``k`` (:func:`check_planted_network`)
(``tests/theory/test_composition.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gelora.errors import ConfigError
from validation.theory.calibration import ALPHA, METHODS, estimate_limits, fit_estimate
from validation.theory.estimated_layer import check_upper_bound
from validation.theory.exact_layer import check_exact_layer, jacobian_rank, layer_bounds


# --------------------------------------------------------------------------------------------------
# the planted-update teacher
# --------------------------------------------------------------------------------------------------
@dataclass
class PlantedUpdateNetwork:
    """A frozen random residual network with a rank-``k`` update planted in one block (the teacher).

    Each input is a token coordinate ``u`` (uniform in ``[0, 1]^d_token``) and a context coordinate ``z``
    (uniform in ``[0, 1]^d_context``), standing for the rest of the sequence that attention reads. The
    residual stream starts as ``h_0 = tanh(E u + c)`` (a curved ``d_token``-dimensional manifold in
    ``R^width``) and each block is

        ``h_{j+1} = h_j + tanh(W_j h_j + b_j + [j == block] * B A [h_j; z])``

    with frozen ``W_j`` of spectral norm ``0.5`` (so the frozen block is injective on the stream) and
    frozen context weights equal to zero. The planted update ``Delta W = B A`` (``B``: ``width x k``,
    ``A``: ``k x (width + d_context)``) has rank exactly ``k``.

    Ground truth: ``d_j = d_token`` for ``j <= block`` and ``d_j = d_token + min(k, d_context)`` after it;
    Theorem 3.2 applied to the update gives ``d_{block+1} - d_block <= rank(Delta W) = k``.

    Parameters
    ----------
    d_token, d_context : int
        Dimensions of the token and context coordinates (>= 1).
    k : int
        Rank of the planted update (``>= 0``; ``0`` is the frozen network itself).
    block : int
        Index of the block that receives the update, ``0 <= block < n_blocks``.
    n_blocks : int
        Number of residual blocks.
    width : int
        Width of the residual stream; must be at least ``d_token + k``.
    seed : int
        Seed of every random weight.
    """

    d_token: int
    d_context: int
    k: int
    block: int = 1
    n_blocks: int = 3
    width: int = 16
    seed: int = 0
    _weights: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("d_token", "d_context", "n_blocks", "width"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"PlantedUpdateNetwork.{name} must be >= 1, got {getattr(self, name)}")
        if self.k < 0:
            raise ConfigError(f"PlantedUpdateNetwork.k must be >= 0, got {self.k}")
        if not 0 <= self.block < self.n_blocks:
            raise ConfigError(f"block must be in [0, {self.n_blocks}), got {self.block}")
        if self.width < self.d_token + self.k:
            raise ConfigError(f"width={self.width} must be >= d_token + k = {self.d_token + self.k}")
        rng = np.random.default_rng(self.seed)
        H = self.width
        E = rng.normal(size=(H, self.d_token)) * (1.5 / math.sqrt(self.d_token))
        c = rng.normal(size=H) * 0.3
        Ws, bs = [], []
        for _ in range(self.n_blocks):
            W = rng.normal(size=(H, H))
            W *= 0.5 / np.linalg.norm(W, 2)
            Ws.append(W)
            bs.append(rng.normal(size=H) * 0.1)
        # the update: B (H x k) and A (k x (H + d_context)), generic, so rank(B A) = k almost surely
        B = rng.normal(size=(H, self.k)) / math.sqrt(max(self.k, 1))
        A = rng.normal(size=(self.k, H + self.d_context))
        A[:, H:] *= 2.0  # the context part dominates, so the new directions are well conditioned
        self._weights = {"E": E, "c": c, "W": Ws, "b": bs, "A": A, "B": B}

    @property
    def update(self) -> np.ndarray:
        """The planted update ``Delta W = B A``, shape ``(width, width + d_context)``."""
        return self._weights["B"] @ self._weights["A"]

    @property
    def true_dims(self) -> list[int]:
        """Ground-truth ID of ``h_0 .. h_{n_blocks}`` (length ``n_blocks + 1``)."""
        after = self.d_token + min(self.k, self.d_context)
        return [self.d_token if j <= self.block else after for j in range(self.n_blocks + 1)]

    def sample_inputs(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n`` inputs: ``U`` of shape ``(n, d_token)`` and ``Z`` of shape ``(n, d_context)``."""
        rng = np.random.default_rng(seed)
        return rng.random((n, self.d_token)), rng.random((n, self.d_context))

    def forward_all(
        self, U: np.ndarray, Z: np.ndarray, *, with_jacobian: bool = False
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Hidden states of every layer, optionally with their exact Jacobians.

        Parameters
        ----------
        U : numpy.ndarray, shape (n, d_token)
        Z : numpy.ndarray, shape (n, d_context)
        with_jacobian : bool
            Also return ``d h_j / d (u, z)`` by forward-mode differentiation (exact, no finite
            differences).

        Returns
        -------
        states : list of numpy.ndarray, each (n, width)
            ``h_0 .. h_{n_blocks}``.
        jacobians : list of numpy.ndarray, each (n, width, d_token + d_context), or None
        """
        w = self._weights
        U = np.asarray(U, dtype=np.float64)
        Z = np.asarray(Z, dtype=np.float64)
        n = U.shape[0]
        pre = U @ w["E"].T + w["c"]
        h = np.tanh(pre)
        states = [h]
        jacs: list[np.ndarray] | None = None
        p = self.d_token + self.d_context
        if with_jacobian:
            J = np.zeros((n, self.width, p))
            J[:, :, : self.d_token] = (1.0 - h**2)[:, :, None] * w["E"][None]
            dz = np.zeros((n, self.d_context, p))
            dz[:, :, self.d_token :] = np.eye(self.d_context)[None]
            jacs = [J]
        for j in range(self.n_blocks):
            a = h @ w["W"][j].T + w["b"][j]
            planted = j == self.block and self.k > 0
            if planted:
                a = a + np.concatenate([h, Z], axis=1) @ self.update.T
            t = np.tanh(a)
            if jacs is not None:
                Jprev = jacs[-1]
                Ja = np.einsum("ab,nbp->nap", w["W"][j], Jprev)
                if planted:
                    Jin = np.concatenate([Jprev, dz], axis=1)
                    Ja = Ja + np.einsum("ab,nbp->nap", self.update, Jin)
                jacs.append(Jprev + (1.0 - t**2)[:, :, None] * Ja)
            h = h + t
            states.append(h)
        return states, jacs


def check_planted_network(
    net: PlantedUpdateNetwork,
    n: int,
    *,
    data_seed: int = 0,
    methods: Sequence[str] = METHODS,
    alpha: float = ALPHA,
    seed: int = 0,
    offset: int = 1,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validity and tightness of the rank rule on a teacher with a planted rank-``k`` update.

    Exact part: the Jacobian rank of every hidden state w.r.t. the input ``(u, z)`` equals its ground-truth
    dimension at every sampled point, and the planted block raises it by at most ``k``.

    Estimated part, per method: the estimates ``d_hat_j`` of ``h_0 .. h_B``, the gaps
    ``d_hat_{j+1} - d_hat_j``, the GeLoRA ranks (:func:`gelora.ranks.ranks_from_dimensions`, ceil rounding,
    ``offset``) and, per block ``j`` with planted rank ``k_j`` (``k`` at ``net.block``, else 0), the gap limit
    ``k_j + (high(d_j + k_j) - (d_j + k_j)) + (d_j - low(d_j))``: one-sided ``alpha`` limits of the two
    estimates, so a valid rule exceeds it with probability at most ``2 alpha`` per block.

    Returns
    -------
    dict
        ``exact`` (Jacobian ranks) and ``methods`` (per method: ``dims``, ``gaps``, ``ranks``,
        ``planted_gap``, ``gap_limit``, ``valid`` (gap within limit at every block), ``rule_rank_minus_offset``
        at the planted block, ``tightness = max(gap, 0) / k`` (None when ``k = 0``)).
    """
    from gelora.ranks import ranks_from_dimensions

    U, Z = net.sample_inputs(n, data_seed)
    states, jacs = net.forward_all(U, Z, with_jacobian=True)
    assert jacs is not None
    jr = [jacobian_rank(J) for J in jacs]
    truth = net.true_dims
    exact: dict[str, Any] = {
        "true_dims": truth,
        "jacobian_rank_min": [int(r.min()) for r in jr],
        "jacobian_rank_max": [int(r.max()) for r in jr],
        "planted_increase_max": int((jr[net.block + 1] - jr[net.block]).max()),
    }
    exact["passed"] = bool(
        all(lo == hi == t for lo, hi, t in zip(exact["jacobian_rank_min"], exact["jacobian_rank_max"], truth))
        and exact["planted_increase_max"] <= net.k
    )
    res: dict[str, Any] = {
        "network": {
            "d_token": net.d_token,
            "d_context": net.d_context,
            "k": net.k,
            "block": net.block,
            "n_blocks": net.n_blocks,
            "width": net.width,
            "seed": net.seed,
        },
        "n": int(n),
        "data_seed": int(data_seed),
        "exact": exact,
        "methods": {},
    }
    for method in methods:
        dims = [fit_estimate(h, method, seed=seed, cache_dir=cache_dir) for h in states]
        gaps = [dims[j + 1] - dims[j] for j in range(net.n_blocks)]
        ranks = ranks_from_dimensions(dims, offset=offset)
        limits, valid = [], []
        for j in range(net.n_blocks):
            kj = net.k if j == net.block else 0
            # the theorem's bound for d_{j+1} is d_j + k_j with d_j the true input dimension
            hi = estimate_limits(method, n, truth[j] + kj, alpha, calibration).high
            lo = estimate_limits(method, n, truth[j], alpha, calibration).low
            lim = kj + (hi - (truth[j] + kj)) + (truth[j] - lo)
            limits.append(lim)
            valid.append(bool(gaps[j] <= lim))
        g = gaps[net.block]
        res["methods"][method] = {
            "dims": dims,
            "gaps": gaps,
            "ranks": ranks,
            "planted_gap": g,
            "gap_limit": limits,
            "valid": bool(all(valid)),
            "valid_per_block": valid,
            "rule_rank_minus_offset": int(ranks[net.block] - offset),
            "rule_exceeds_k": bool(ranks[net.block] - offset > net.k),
            "tightness": None if net.k == 0 else float(max(g, 0.0) / net.k),
        }
    return res


def stack_jacobian(tt: Any, x: np.ndarray, upto: int) -> np.ndarray:
    """Jacobian of the first ``upto`` blocks of a ``synthetic.maps.ToyTransformer`` at ``x`` (chain rule)."""
    J = np.eye(tt.in_dim)
    h = np.asarray(x, dtype=np.float64)
    for b in tt.blocks[:upto]:
        J = b.jacobian(h) @ J
        h = b._forward(h[None, :])[0]
    return J


def check_toy_transformer(
    tt: Any,
    X: np.ndarray,
    kind: str,
    d: int,
    *,
    methods: Sequence[str] = METHODS,
    alpha: float = ALPHA,
    seed: int = 0,
    offset: int = 1,
    n_points: int = 15,
    cache_dir: str | Path | None = None,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-block bounds and rank-rule validity along a toy transformer.

    ``b_j = min(d, rank T_0, .., rank T_{j-1})`` bounds the ID of hidden state ``h_j`` (Theorem 3.2 per
    block). The true ID ``t_j`` is the exact rank of ``J_{T_{j-1}..T_0}(x) T_x M`` (largest over
    ``n_points`` points; the stack's rank is not known in closed form). Per method the estimate of every
    ``h_j`` must be below the ``alpha`` limit at ``b_j``, and every rule gap ``d_hat_{j+1} - d_hat_j`` below
    ``(t_{j+1} - t_j) + (high(t_{j+1}) - t_{j+1}) + (t_j - low(t_j))`` (a deterministic stack never
    raises the ID, so ``t_{j+1} - t_j <= 0``: the rule's gap is pure estimator error here).

    Returns
    -------
    dict
        ``bounds``, ``true_dims``, and per method ``dims``, ``layer_records`` (as
        :func:`check_upper_bound`), ``gaps``, ``gap_limits``, ``ranks`` (GeLoRA, ceil rounding) and
        ``passed``.
    """
    from gelora.ranks import ranks_from_dimensions

    states = tt.forward_all(X)
    bounds = layer_bounds(d, tt.block_ranks)

    def _jac(j: int) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: stack_jacobian(tt, x, j)

    truth = [
        check_exact_layer(X, kind, d, _jac(j), tt.in_dim, n_points=n_points, seed=seed)["image_rank"][1]
        for j in range(tt.n_blocks + 1)
    ]
    n = int(X.shape[0])
    res: dict[str, Any] = {
        "bounds": bounds,
        "true_dims": truth,
        "exact_passed": bool(all(t <= b for t, b in zip(truth, bounds))),
        "methods": {},
    }
    for method in methods:
        recs = []
        for j, h in enumerate(states):
            recs.extend(
                check_upper_bound(
                    h,
                    bounds[j],
                    methods=(method,),
                    alpha=alpha,
                    seed=seed,
                    cache_dir=cache_dir,
                    calibration=calibration,
                    context={"layer": j},
                )
            )
        dims = [r["estimate"] for r in recs]
        gaps = [dims[j + 1] - dims[j] for j in range(tt.n_blocks)]
        lims = []
        for j in range(tt.n_blocks):
            hi = estimate_limits(method, n, truth[j + 1], alpha, calibration).high
            lo = estimate_limits(method, n, truth[j], alpha, calibration).low
            lims.append((truth[j + 1] - truth[j]) + (hi - truth[j + 1]) + (truth[j] - lo))
        res["methods"][method] = {
            "dims": dims,
            "layer_records": recs,
            "gaps": gaps,
            "gap_limits": lims,
            "ranks": ranks_from_dimensions(dims, offset=offset),
            "passed": bool(all(r["passed"] for r in recs) and all(g <= lim for g, lim in zip(gaps, lims))),
        }
    return res
