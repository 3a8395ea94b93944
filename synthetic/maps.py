"""Smooth maps whose Jacobian rank is known exactly, for checking the rank bound of GeLoRA.

GeLoRA's rank bound says that a smooth map ``T`` cannot raise intrinsic dimension above the rank of its
Jacobian: ``d_out <= min(d_in, max_x rank J_T(x))``.  Every map here knows that rank *by construction*
(``.rank``), and can check it numerically (``numerical_rank``).

What ``.rank`` means
--------------------
``.rank`` is always the rank of the map's own Jacobian ``J_T(x)``, the same at every ``x`` in ``R^D``.
For residual maps ``x -> x + U(x)`` the Jacobian ``I + J_U(x)`` has full rank (the update is scaled so that
``||J_U(x)||_2 <= update_scale < 1`` everywhere, which makes ``I + J_U`` invertible), so ``.rank`` equals the
dimension; the bounded quantity that matters for LoRA is the rank of the *update*, exposed as
``.update_rank`` (``rank J_U(x)``).  Non-residual maps have ``update_rank = None``.

Why the ranks are exact
-----------------------
All nonlinearities are ``tanh``, whose derivative ``1 - tanh^2`` is strictly positive, so every
``diag(tanh'(.))`` factor is invertible; weight factors have orthonormal rows/columns (Haar-random), so the
rank of each product equals the bottleneck width.  Numerically, ``tanh'(u)`` underflows only for
``|u| > ~18``; the weights are scaled so that pre-activations are ``O(|x|/sqrt(D))``, and the numerical
checks use inputs of unit scale.

All maps take and return float64 NumPy arrays of shape ``(n, D_in) -> (n, D_out)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gelora.errors import ConfigError, InvalidInputError
from synthetic._validate import check_float, check_int, check_points, check_seed, child_rngs
from synthetic.manifolds import random_orthonormal

__all__ = [
    "BottleneckMLP",
    "LinearMap",
    "RankedMap",
    "ResidualBlock",
    "ToyTransformer",
    "TransformerBlock",
    "numerical_rank_of",
]


def numerical_rank_of(J: np.ndarray, tol: float | None = None) -> int:
    """Numerical rank of one matrix: singular values above ``tol``.

    Default ``tol = s_max * max(J.shape) * eps(float64)`` (NumPy's ``matrix_rank`` convention).
    """
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2:
        raise InvalidInputError(f"a Jacobian must be a 2-D matrix, got shape {J.shape}")
    s = np.linalg.svd(J, compute_uv=False)
    if s.size == 0:
        return 0
    if tol is None:
        tol = float(s[0]) * max(J.shape) * np.finfo(np.float64).eps
    return int(np.sum(s > tol))


class RankedMap:
    """Base class: a smooth map ``R^in_dim -> R^out_dim`` with a Jacobian rank known by construction.

    Attributes
    ----------
    in_dim, out_dim : int
        Input and output dimensions.
    rank : int
        Rank of the Jacobian ``J(x)`` (shape ``(out_dim, in_dim)``), the same at every ``x``.
    update_rank : int or None
        For residual maps ``x + U(x)``: rank of ``J_U(x)``; ``None`` otherwise.
    """

    in_dim: int
    out_dim: int
    rank: int
    update_rank: int | None = None
    residual: bool = False

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Apply the map to the rows of ``X`` (shape ``(n, in_dim)``); returns ``(n, out_dim)`` float64."""
        X = self._check_input(X)
        return self._forward(X)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Analytic Jacobian at one point ``x`` (shape ``(in_dim,)``); returns ``(out_dim, in_dim)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.in_dim,):
            raise InvalidInputError(f"x must have shape ({self.in_dim},), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise InvalidInputError("x contains NaN or inf")
        return self._jacobian(x)

    def numerical_rank(self, X: np.ndarray, tol: float | None = None) -> int:
        """Largest numerical rank of the Jacobian over the rows of ``X`` (see :func:`numerical_rank_of`)."""
        X = self._check_input(X)
        return max(numerical_rank_of(self._jacobian(x), tol) for x in X)

    def numerical_update_rank(self, X: np.ndarray, tol: float | None = None) -> int:
        """Largest numerical rank of the update Jacobian ``J(x) - I`` over the rows of ``X`` (residual maps only).

        The update Jacobian is computed analytically (:meth:`update_jacobian`); forming ``J - I`` in floating
        point would leave rounding errors of size ``eps * |I|`` above the rank tolerance of a small update.
        """
        if not self.residual:
            raise ConfigError(f"{type(self).__name__} is not residual; it has no update rank")
        X = self._check_input(X)
        return max(numerical_rank_of(self._update_jacobian(x), tol) for x in X)

    def update_jacobian(self, x: np.ndarray) -> np.ndarray:
        """Analytic Jacobian ``J_U(x) = J(x) - I`` of a residual map's update (computed directly, not by
        subtracting ``I``, so its small singular values are not lost to rounding); ``(dim, dim)``."""
        if not self.residual:
            raise ConfigError(f"{type(self).__name__} is not residual; it has no update")
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.in_dim,):
            raise InvalidInputError(f"x must have shape ({self.in_dim},), got {x.shape}")
        return self._update_jacobian(x)

    def sample_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """Standard normal inputs of shape ``(n, in_dim)``: the unit scale at which the exact rank is also
        the numerical rank (``tanh'`` does not underflow)."""
        n = check_int(n, "n")
        return np.random.default_rng(check_seed(seed)).standard_normal((n, self.in_dim))

    def finite_difference_jacobian(self, x: np.ndarray, step: float = 1e-6) -> np.ndarray:
        """Central finite-difference Jacobian at ``x`` (for checking :meth:`jacobian`); ``(out_dim, in_dim)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.in_dim,):
            raise InvalidInputError(f"x must have shape ({self.in_dim},), got {x.shape}")
        step = check_float(step, "step", strictly_positive=True)
        E = step * np.eye(self.in_dim)
        plus = self._forward(x[None, :] + E)
        minus = self._forward(x[None, :] - E)
        return ((plus - minus) / (2 * step)).T

    def _check_input(self, X: np.ndarray) -> np.ndarray:
        X = check_points(X)
        if X.shape[1] != self.in_dim:
            raise InvalidInputError(f"X must have {self.in_dim} columns, got {X.shape[1]}")
        return X

    def _forward(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _jacobian(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _update_jacobian(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _check_rank(rank: object, in_dim: int, out_dim: int, name: str = "rank") -> int:
    r = check_int(rank, name, minimum=1)
    if r > min(in_dim, out_dim):
        raise InvalidInputError(f"{name}={r} exceeds min(in_dim, out_dim) = {min(in_dim, out_dim)}")
    return r


class LinearMap(RankedMap):
    """Affine map ``x -> W x + b`` with ``W = U diag(s) V^T`` of exact rank ``rank``.

    ``U`` (``out_dim x rank``) and ``V`` (``in_dim x rank``) have Haar-random orthonormal columns and the
    singular values ``s`` are uniform in ``[1, 2]``, so the condition number of the nonzero part is at most 2.

    Parameters
    ----------
    in_dim, out_dim : int
        Dimensions (``>= 1``).
    rank : int
        ``1 <= rank <= min(in_dim, out_dim)``.
    seed : int
        Seed of the weights.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int, *, seed: int = 0) -> None:
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        self.rank = _check_rank(rank, self.in_dim, self.out_dim)
        self.seed = check_seed(seed)
        rng = np.random.default_rng(self.seed)
        U = random_orthonormal(self.out_dim, self.rank, rng)
        V = random_orthonormal(self.in_dim, self.rank, rng)
        s = rng.uniform(1.0, 2.0, self.rank)
        self.weight = (U * s) @ V.T
        self.bias = rng.standard_normal(self.out_dim)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return X @ self.weight.T + self.bias

    def _jacobian(self, x: np.ndarray) -> np.ndarray:
        return self.weight.copy()


class BottleneckMLP(RankedMap):
    """Two-layer MLP ``x -> W2 tanh(W1 x + b1) + b2`` with a hidden (bottleneck) width ``rank``.

    ``J(x) = W2 diag(tanh'(W1 x + b1)) W1`` with ``W1`` (``rank x in_dim``) having orthonormal rows scaled by
    ``gain`` and ``W2`` (``out_dim x rank``) orthonormal columns, so ``rank J(x) = rank`` at every ``x``.

    Parameters
    ----------
    in_dim, out_dim : int
        Dimensions.
    rank : int
        Bottleneck width, ``1 <= rank <= min(in_dim, out_dim)``.
    gain : float
        Scale of ``W1`` (pre-activations are ``gain * O(|x|)``); keep ``gain * |x|`` below ~10 for the
        numerical rank to match (``tanh'`` underflows for arguments beyond ~18).
    seed : int
        Seed of the weights.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int, *, gain: float = 1.0, seed: int = 0) -> None:
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        self.rank = _check_rank(rank, self.in_dim, self.out_dim)
        self.gain = check_float(gain, "gain", strictly_positive=True)
        self.seed = check_seed(seed)
        rng = np.random.default_rng(self.seed)
        self.W1 = self.gain * random_orthonormal(self.in_dim, self.rank, rng).T
        self.b1 = 0.1 * rng.standard_normal(self.rank)
        self.W2 = random_orthonormal(self.out_dim, self.rank, rng)
        self.b2 = 0.1 * rng.standard_normal(self.out_dim)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return np.tanh(X @ self.W1.T + self.b1) @ self.W2.T + self.b2

    def _jacobian(self, x: np.ndarray) -> np.ndarray:
        dact = 1.0 - np.tanh(self.W1 @ x + self.b1) ** 2
        return (self.W2 * dact) @ self.W1


class ResidualBlock(RankedMap):
    """Residual map ``x -> x + B A tanh(x)`` with a rank-``update_rank`` update.

    ``A`` (``r x dim``) has orthonormal rows and ``B`` (``dim x r``) orthonormal columns times
    ``update_scale``, so the update Jacobian ``J_U(x) = B A diag(tanh'(x))`` has rank exactly ``r`` and
    norm ``<= update_scale < 1`` (``0 < tanh' <= 1``).  Hence ``J(x) = I + J_U(x)`` is invertible:
    ``.rank = dim`` and ``.update_rank = r``.

    Parameters
    ----------
    dim : int
        Input = output dimension.
    update_rank : int
        ``1 <= update_rank <= dim``.
    update_scale : float
        In ``(0, 1)``; larger values are refused because full rank of ``I + J_U`` would no longer be
        guaranteed (:class:`~gelora.errors.ConfigError`).
    seed : int
        Seed of the weights.
    """

    residual = True

    def __init__(self, dim: int, update_rank: int, *, update_scale: float = 0.5, seed: int = 0) -> None:
        self.in_dim = self.out_dim = check_int(dim, "dim")
        self.update_rank = _check_rank(update_rank, self.in_dim, self.out_dim, "update_rank")
        scale = check_float(update_scale, "update_scale", strictly_positive=True)
        if scale >= 1.0:
            raise ConfigError(
                f"update_scale must be < 1 so that x + U(x) has full-rank Jacobian, got {scale}"
            )
        self.update_scale = scale
        self.rank = self.in_dim
        self.seed = check_seed(seed)
        rng = np.random.default_rng(self.seed)
        self.A = random_orthonormal(self.in_dim, self.update_rank, rng).T
        self.B = scale * random_orthonormal(self.in_dim, self.update_rank, rng)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        return X + np.tanh(X) @ self.A.T @ self.B.T

    def _update_jacobian(self, x: np.ndarray) -> np.ndarray:
        dact = 1.0 - np.tanh(x) ** 2
        return self.B @ (self.A * dact)

    def _jacobian(self, x: np.ndarray) -> np.ndarray:
        return np.eye(self.in_dim) + self._update_jacobian(x)


class TransformerBlock(RankedMap):
    """One block of :class:`ToyTransformer`: causal positional attention, then a token-wise bottleneck MLP.

    The input row ``x`` of length ``D = n_tokens * d_model`` is read as ``n_tokens`` tokens of width
    ``d_model`` (row-major: token ``t`` is ``x[t*d_model:(t+1)*d_model]``).

    * Attention: ``Z = P X M`` where ``X`` is the ``(n_tokens, d_model)`` token matrix, ``P`` a causal
      softmax attention matrix computed from fixed positional scores (lower triangular with positive
      diagonal, hence invertible) and ``M = W_V W_O`` a value-output projection of rank ``attn_rank``.
    * MLP on every token: ``Y_t = W2 tanh(W1 z_t + b1) + b2`` with bottleneck width ``mlp_rank``.
    * ``residual=False``: the block is ``T(x) = MLP(Attn(x))`` and
      ``rank J_T(x) = n_tokens * min(attn_rank, mlp_rank)`` at every ``x`` (``J = blockdiag_t(W2 D_t W1 M^T)
      (P kron I)``; ``P kron I`` is invertible and ``rank(W1 M^T) = min(attn_rank, mlp_rank)``, checked at
      construction).  ``update_rank = None``.
    * ``residual=True``: ``T(x) = x + s MLP(Attn(x))`` with ``s`` chosen so that the update's Jacobian norm
      is at most ``update_scale < 1``; ``rank = D`` and ``update_rank = n_tokens * min(attn_rank, mlp_rank)``.

    Scores are positional, not content-based, on purpose: with content-dependent softmax scores the
    attention's Jacobian gains terms ``(dP) X M`` and its rank is only bounded by ``n_tokens * attn_rank``,
    not known exactly.

    Parameters
    ----------
    n_tokens, d_model : int
        Sequence length and token width.
    attn_rank, mlp_rank : int
        Ranks of ``M`` and of the MLP bottleneck, each in ``[1, d_model]``.
    residual : bool
        Residual variant (see above).
    update_scale : float
        Bound on the update Jacobian norm of the residual variant, in ``(0, 1)``.
    seed : int
        Seed of the weights.
    """

    def __init__(
        self,
        n_tokens: int,
        d_model: int,
        attn_rank: int,
        mlp_rank: int,
        *,
        residual: bool = False,
        update_scale: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.n_tokens = check_int(n_tokens, "n_tokens")
        self.d_model = check_int(d_model, "d_model")
        self.attn_rank = _check_rank(attn_rank, self.d_model, self.d_model, "attn_rank")
        self.mlp_rank = _check_rank(mlp_rank, self.d_model, self.d_model, "mlp_rank")
        self.residual = bool(residual)
        scale = check_float(update_scale, "update_scale", strictly_positive=True)
        if scale >= 1.0:
            raise ConfigError(f"update_scale must be < 1, got {scale}")
        self.seed = check_seed(seed)
        self.in_dim = self.out_dim = self.n_tokens * self.d_model
        rng_attn, rng_mlp = child_rngs(self.seed, 2)
        # causal softmax attention from positional scores: lower-triangular, positive diagonal
        scores = rng_attn.standard_normal((self.n_tokens, self.n_tokens))
        scores[np.triu_indices(self.n_tokens, 1)] = -np.inf
        P = np.exp(scores - scores.max(axis=1, keepdims=True))
        self.P = P / P.sum(axis=1, keepdims=True)
        for _ in range(100):  # redraw until rank(W1 M^T) is the generic min(attn_rank, mlp_rank)
            Wv = random_orthonormal(self.d_model, self.attn_rank, rng_attn)  # d_model x attn_rank
            Wo = random_orthonormal(self.d_model, self.attn_rank, rng_attn).T  # attn_rank x d_model
            self.M = Wv @ Wo  # tokens act on the right: Z = P X M
            W1 = random_orthonormal(self.d_model, self.mlp_rank, rng_mlp).T  # mlp_rank x d_model
            core = W1 @ self.M.T
            s = np.linalg.svd(core, compute_uv=False)
            if s[min(self.attn_rank, self.mlp_rank) - 1] > 1e-3:
                break
        else:  # pragma: no cover - a rank-deficient draw has probability 0
            raise ConfigError("could not draw attention/MLP weights of full core rank in 100 tries")
        self.W1 = W1
        self.b1 = 0.1 * rng_mlp.standard_normal(self.mlp_rank)
        self.W2 = random_orthonormal(self.d_model, self.mlp_rank, rng_mlp)
        self.b2 = 0.1 * rng_mlp.standard_normal(self.d_model)
        self.token_rank = min(self.attn_rank, self.mlp_rank)
        block_rank = self.n_tokens * self.token_rank
        if self.residual:
            # ||J_U|| <= s * ||W2|| ||W1|| ||M|| ||P|| = s * ||P||_2
            self.scale = scale / float(np.linalg.norm(self.P, 2))
            self.rank = self.in_dim
            self.update_rank = block_rank
        else:
            self.scale = 1.0
            self.rank = block_rank
            self.update_rank = None
        self.update_scale = scale

    def _tokens(self, X: np.ndarray) -> np.ndarray:
        return X.reshape(X.shape[0], self.n_tokens, self.d_model)

    def _forward(self, X: np.ndarray) -> np.ndarray:
        T = self._tokens(X)
        Z = np.einsum("ts,nsh->nth", self.P, T) @ self.M
        Y = np.tanh(Z @ self.W1.T + self.b1) @ self.W2.T + self.b2
        out = self.scale * Y.reshape(X.shape[0], self.in_dim)
        return X + out if self.residual else out

    def _jacobian(self, x: np.ndarray) -> np.ndarray:
        J = self._branch_jacobian(x)
        if self.residual:
            J += np.eye(self.in_dim)
        return J

    def _update_jacobian(self, x: np.ndarray) -> np.ndarray:
        return self._branch_jacobian(x)

    def _branch_jacobian(self, x: np.ndarray) -> np.ndarray:
        """Jacobian of ``scale * MLP(Attn(x))`` (the whole map if plain, the update if residual)."""
        T = x.reshape(self.n_tokens, self.d_model)
        Z = self.P @ T @ self.M
        dact = 1.0 - np.tanh(Z @ self.W1.T + self.b1) ** 2  # (n_tokens, mlp_rank)
        n, h = self.n_tokens, self.d_model
        J = np.zeros((n * h, n * h))
        for t in range(n):
            # d y_t / d z_t = W2 diag(dact_t) W1 ; d z_t / d x_s = P[t, s] * M^T
            G = (self.W2 * dact[t]) @ self.W1 @ self.M.T
            for s_ in range(t + 1):
                J[t * h : (t + 1) * h, s_ * h : (s_ + 1) * h] = self.P[t, s_] * G
        J *= self.scale
        return J


class ToyTransformer:
    """A stack of :class:`TransformerBlock` s with known per-block Jacobian (and update) ranks.

    Parameters
    ----------
    n_tokens, d_model : int
        Sequence length and token width; every hidden state has ``D = n_tokens * d_model`` features.
    attn_ranks, mlp_ranks : sequence of int
        One entry per block (same length ``L``).
    residual : bool or sequence of bool
        Residual variant for all blocks or per block.
    update_scale : float
        See :class:`TransformerBlock`.
    seed : int
        Block ``i`` is seeded from ``SeedSequence(seed).spawn(L)[i]``.

    Attributes
    ----------
    blocks : list of TransformerBlock
    block_ranks : list of int
        ``rank J_{T_i}(x)`` for each block (``D`` for residual blocks).
    update_ranks : list of int or None
        ``rank J_{U_i}(x)`` for residual blocks, ``None`` for plain ones.

    Notes
    -----
    Only per-block ranks are exact.  The stack's Jacobian rank is bounded by ``min(block_ranks)``
    (:attr:`rank_upper_bound`) but not known exactly, because the ``x``-dependent ``tanh'`` factors of
    consecutive blocks sit between token-mixing matrices.
    """

    def __init__(
        self,
        n_tokens: int,
        d_model: int,
        attn_ranks: Sequence[int],
        mlp_ranks: Sequence[int],
        *,
        residual: bool | Sequence[bool] = False,
        update_scale: float = 0.5,
        seed: int = 0,
    ) -> None:
        attn_ranks = list(attn_ranks)
        mlp_ranks = list(mlp_ranks)
        if len(attn_ranks) < 1 or len(attn_ranks) != len(mlp_ranks):
            raise InvalidInputError(
                f"attn_ranks and mlp_ranks must be non-empty and of equal length, got "
                f"{len(attn_ranks)} and {len(mlp_ranks)}"
            )
        L = len(attn_ranks)
        res = [bool(residual)] * L if isinstance(residual, bool | np.bool_) else [bool(r) for r in residual]
        if len(res) != L:
            raise InvalidInputError(f"residual must be a bool or {L} bools, got {len(res)}")
        self.seed = check_seed(seed)
        seeds = np.random.SeedSequence(self.seed).spawn(L)
        self.blocks = [
            TransformerBlock(
                n_tokens,
                d_model,
                attn_ranks[i],
                mlp_ranks[i],
                residual=res[i],
                update_scale=update_scale,
                seed=int(seeds[i].generate_state(1)[0]),
            )
            for i in range(L)
        ]
        self.n_tokens = self.blocks[0].n_tokens
        self.d_model = self.blocks[0].d_model
        self.in_dim = self.out_dim = self.blocks[0].in_dim

    @property
    def n_blocks(self) -> int:
        """Number of blocks ``L``."""
        return len(self.blocks)

    @property
    def block_ranks(self) -> list[int]:
        """Exact Jacobian rank of each block's map."""
        return [b.rank for b in self.blocks]

    @property
    def update_ranks(self) -> list[int | None]:
        """Exact Jacobian rank of each residual block's update (``None`` for plain blocks)."""
        return [b.update_rank for b in self.blocks]

    @property
    def rank_upper_bound(self) -> int:
        """``min(block_ranks)``: an upper bound on the whole stack's Jacobian rank."""
        return min(self.block_ranks)

    def sample_inputs(self, n: int, seed: int = 0) -> np.ndarray:
        """Standard normal inputs of shape ``(n, D)`` (see :meth:`RankedMap.sample_inputs`)."""
        return self.blocks[0].sample_inputs(n, seed)

    def forward_all(self, X: np.ndarray) -> list[np.ndarray]:
        """Hidden states of every layer: ``[X, T_1(X), T_2(T_1(X)), ...]`` (``L + 1`` arrays ``(n, D)``)."""
        X = self.blocks[0]._check_input(X)
        states = [X]
        for b in self.blocks:
            states.append(b._forward(states[-1]))
        return states

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """Output of the last block, shape ``(n, D)``."""
        return self.forward_all(X)[-1]

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Jacobian of the whole stack at ``x`` (shape ``(D, D)``), by the chain rule."""
        x = np.asarray(x, dtype=np.float64)
        J = np.eye(self.in_dim)
        h = x
        for b in self.blocks:
            J = b.jacobian(h) @ J
            h = b._forward(h[None, :])[0]
        return J

    def numerical_rank(self, X: np.ndarray, tol: float | None = None) -> int:
        """Largest numerical rank of the stack's Jacobian over the rows of ``X``."""
        X = self.blocks[0]._check_input(X)
        return max(numerical_rank_of(self.jacobian(x), tol) for x in X)

    def numerical_block_ranks(self, X: np.ndarray, tol: float | None = None) -> list[int]:
        """Per block, the largest numerical Jacobian rank over that block's inputs ``forward_all(X)[i]``."""
        states = self.forward_all(X)
        return [b.numerical_rank(states[i], tol) for i, b in enumerate(self.blocks)]
