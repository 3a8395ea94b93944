"""Figures of GeoLoRA runs: per-layer rank trajectories and the total adapter size over training."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gelora.errors import InvalidInputError

__all__ = ["normalise_rank_trajectory", "plot_rank_trajectories"]


def normalise_rank_trajectory(
    trajectory: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> tuple[list[int], dict[str, list[int]]]:
    """Steps and per-module rank series from a recorded trajectory.

    Parameters
    ----------
    trajectory : sequence
        ``[(step, {module: rank}), ...]`` as recorded by
        :class:`~validation.finetune.geolora.optim.GeoLoRAOptimizer` (tuples or 2-element lists, e.g. after a JSON
        round trip), or ``[{"step": s, "ranks": {...}}, ...]``.

    Returns
    -------
    (steps, series) : tuple
        ``steps`` (list of int, length T) and ``{module: [rank at each step]}`` (each length T).

    Raises
    ------
    InvalidInputError
        Empty trajectory, malformed entries, or modules that differ between entries.
    """
    if not trajectory:
        raise InvalidInputError("rank trajectory is empty")
    steps: list[int] = []
    series: dict[str, list[int]] = {}
    for k, entry in enumerate(trajectory):
        if isinstance(entry, Mapping):
            step, ranks = entry.get("step"), entry.get("ranks")
        elif isinstance(entry, Sequence) and len(entry) == 2:
            step, ranks = entry[0], entry[1]
        else:
            raise InvalidInputError(f"trajectory entry {k} is not (step, {{module: rank}}): {entry!r}")
        if not isinstance(ranks, Mapping) or step is None:
            raise InvalidInputError(f"trajectory entry {k} has no rank mapping: {entry!r}")
        if k == 0:
            series = {str(m): [] for m in ranks}
        elif set(map(str, ranks)) != set(series):
            raise InvalidInputError(f"trajectory entry {k} names different modules than entry 0")
        steps.append(int(step))
        for m, r in ranks.items():
            series[str(m)].append(int(r))
    return steps, series


def change_point_indices(values: Sequence[Any]) -> list[int]:
    """Indices of the entries that differ from the previous one, plus the first and the last.

    A recorded rank holds until the next recorded step, so a trajectory kept at these indices describes
    the same step function as the whole record (a long GeoLoRA run changes its ranks in its first tens of
    steps and then records thousands of identical entries).

    Parameters
    ----------
    values : sequence, length T
        Comparable entries (e.g. ``{module: rank}`` mappings or tuples of ranks), one per recorded step.

    Returns
    -------
    list of int
        Increasing indices into ``values``; ``[]`` for an empty sequence.
    """
    n = len(values)
    return [i for i in range(n) if i in (0, n - 1) or values[i] != values[i - 1]]


#: how a cell's ``rank_trajectory`` / ``param_trajectory`` are kept (``method_info["trajectory_form"]``)
TRAJECTORY_FORM = "change points: the entries where a rank changes, plus the first and last; each value holds until the next entry"


def compact_trajectories(
    ranks: Sequence[Sequence[Any]], params: Sequence[Sequence[Any]]
) -> tuple[list[list[Any]], list[list[Any]]]:
    """The change points of a rank trajectory and of the parameter-count trajectory recorded with it.

    Parameters
    ----------
    ranks : sequence of (step, {module: rank}), length T
    params : sequence of (step, n_params), length T when recorded together

    Returns
    -------
    (ranks, params) : tuple of lists
        ``[[step, {module: rank}], ...]`` and ``[[step, n_params], ...]`` at the steps where either changes
        (each list at its own change points when the two records differ in length), first and last kept.
    """
    if len(params) == len(ranks):
        keep = pkeep = change_point_indices([(r[1], c[1]) for r, c in zip(ranks, params, strict=True)])
    else:
        keep = change_point_indices([r[1] for r in ranks])
        pkeep = change_point_indices([c[1] for c in params])
    return (
        [[int(ranks[i][0]), dict(ranks[i][1])] for i in keep],
        [[int(params[i][0]), params[i][1]] for i in pkeep],
    )


def _short(name: str) -> str:
    for prefix in ("base_model.model.", "bert.encoder.", "deberta.encoder.", "encoder."):
        name = name.replace(prefix, "")
    return name.replace("layer.", "L").replace("attention.", "att.")


def plot_rank_trajectories(
    trajectory: Sequence[Sequence[Any]] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    param_trajectory: Sequence[Sequence[int]] | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Write a PNG with the rank of every adapted module over training steps.

    Top panel: a heat map (modules x steps, colour = rank) -- readable for the ~36 modules of a
    6-layer BERT with six targets each. Bottom panel (if ``param_trajectory`` is given): the total
    trainable adapter parameters per step.

    Parameters
    ----------
    trajectory : sequence
        Rank trajectory (see :func:`normalise_rank_trajectory`).
    path : path-like
        Output PNG file (parent directories are created).
    param_trajectory : sequence of (step, n_params), optional
    title : str, optional
    dpi : int

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    steps, series = normalise_rank_trajectory(trajectory)
    names = list(series)
    grid = np.array([series[n] for n in names], dtype=float)  # (modules, T)
    n_rows = 2 if param_trajectory else 1
    height = max(3.0, 0.18 * len(names) + 1.5) + (2.0 if param_trajectory else 0.0)
    fig, axes = plt.subplots(
        n_rows, 1, figsize=(9.0, height), squeeze=False, gridspec_kw={"height_ratios": [3, 1][:n_rows]}
    )
    ax = axes[0][0]
    edges_x = np.concatenate([steps, [steps[-1] + 1]]) if len(steps) else np.array([0, 1])
    im = ax.pcolormesh(edges_x, np.arange(len(names) + 1), grid, shading="flat", cmap="viridis")
    ax.set_yticks(np.arange(len(names)) + 0.5)
    ax.set_yticklabels([_short(n) for n in names], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("optimizer step")
    fig.colorbar(im, ax=ax, label="rank")
    ax.set_title(title or "GeoLoRA rank per module")
    if param_trajectory:
        ax2 = axes[1][0]
        ps = [int(s) for s, _ in param_trajectory]
        cs = [int(c) for _, c in param_trajectory]
        ax2.step(ps, cs, where="post")
        ax2.set_xlabel("optimizer step")
        ax2.set_ylabel("adapter params")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out
