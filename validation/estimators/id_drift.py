"""Intrinsic-dimension drift during fine-tuning (GeLoRA's open question 3).

GeLoRA chooses ranks once, from the pretrained model's hidden states. :class:`IDTrajectoryCallback`
re-estimates every layer's intrinsic dimension at checkpoints of a ``transformers.Trainer`` run, on a
fixed, seeded token sample of fixed texts, and records the ranks the rule would give at each checkpoint,
so a report can say how far the IDs and the ranks move while the adapters train.

The callback is added to the runner's Trainer (``validation.finetune.runner``) through ``extra_callbacks``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from gelora.errors import ConfigError
from gelora.ranks import ranks_from_dimensions
from validation._cli import add_output_args, render_existing

try:  # transformers is a dependency; keep import-time cheap for docs tools
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover
    TrainerCallback = object  # type: ignore[assignment,misc]


class IDTrajectoryCallback(TrainerCallback):  # type: ignore[misc]
    """Re-estimate per-layer IDs and GeLoRA ranks at training checkpoints.

    Parameters
    ----------
    texts : sequence of str
        Fixed probe texts (the same rows are sampled at every checkpoint: same seed, same texts).
    tokenizer : transformers tokenizer
        The model's tokenizer.
    n_checkpoints : int
        Checkpoints evenly spaced over ``state.max_steps``, besides step 0 (before training) and the
        final step; ignored when ``every_n_steps`` is given.
    every_n_steps : int, optional
        Fixed checkpoint interval in optimizer steps.
    estimator : str
        Estimator name (``gelora.estimators.ESTIMATORS``).
    estimator_params : dict, optional
        Estimator parameters (default: ``{"duplicates": "dedupe"}``).
    token_sampling, max_tokens, max_length, batch_size, seed
        Passed to :func:`gelora.hidden_states.collect_hidden_states`.
    offset : int
        Offset of the rank rule.

    Attributes
    ----------
    records : list of dict
        One per checkpoint: ``step``, ``dims`` (``B + 1`` floats), ``cis``, ``ranks`` (``B`` ints),
        ``seconds`` (collection + estimation time).
    """

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        *,
        n_checkpoints: int = 4,
        every_n_steps: int | None = None,
        estimator: str = "twonn",
        estimator_params: dict[str, Any] | None = None,
        token_sampling: str = "all",
        max_tokens: int = 2000,
        max_length: int = 128,
        batch_size: int = 32,
        seed: int = 0,
        offset: int = 1,
    ) -> None:
        if n_checkpoints < 0:
            raise ConfigError(f"n_checkpoints must be >= 0, got {n_checkpoints}")
        if every_n_steps is not None and every_n_steps < 1:
            raise ConfigError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.texts = list(texts)
        self.tokenizer = tokenizer
        self.n_checkpoints = int(n_checkpoints)
        self.every_n_steps = every_n_steps
        self.estimator = estimator
        self.estimator_params = dict(estimator_params or {"duplicates": "dedupe"})
        self.sampling: dict[str, Any] = {
            "token_sampling": token_sampling,
            "max_tokens": int(max_tokens),
            "max_length": int(max_length),
            "batch_size": int(batch_size),
            "seed": int(seed),
        }
        self.offset = int(offset)
        self.records: list[dict[str, Any]] = []
        self._due: set[int] = set()

    # -- checkpoints -------------------------------------------------------------------------------
    def _schedule(self, max_steps: int) -> set[int]:
        if max_steps <= 0:
            return set()
        if self.every_n_steps is not None:
            return set(range(self.every_n_steps, max_steps + 1, self.every_n_steps)) | {max_steps}
        steps = np.linspace(0, max_steps, self.n_checkpoints + 2)[1:]
        return {int(round(s)) for s in steps if round(s) >= 1}

    def measure(self, model: Any, step: int) -> dict[str, Any]:
        """Collect hidden states of ``model`` and estimate every layer now; append and return the record."""
        from gelora.estimators import estimate_id
        from gelora.hidden_states import collect_hidden_states

        t0 = time.perf_counter()
        hs = collect_hidden_states(model, self.tokenizer, self.texts, **self.sampling)
        device = hs.layers[0].device
        results = [
            estimate_id(
                X, method=self.estimator, device=device, seed=self.sampling["seed"], **self.estimator_params
            )
            for X in hs.layers
        ]
        dims = [float(r.dimension) for r in results]
        rec = {
            "step": int(step),
            "dims": dims,
            "cis": [[float(r.ci[0]), float(r.ci[1])] for r in results],
            "ranks": ranks_from_dimensions(dims, offset=self.offset),
            "n_samples": hs.n_samples,
            "seconds": time.perf_counter() - t0,
        }
        self.records.append(rec)
        return rec

    # -- Trainer hooks -----------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._due = self._schedule(int(state.max_steps))
        if model is not None and not any(r["step"] == state.global_step for r in self.records):
            self.measure(model, state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if model is not None and state.global_step in self._due:
            self._due.discard(state.global_step)
            self.measure(model, state.global_step)

    # -- summary -----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """JSON-ready trajectory and drift summary (see :func:`drift_summary`)."""
        return {
            "estimator": self.estimator,
            "estimator_params": self.estimator_params,
            "sampling": self.sampling,
            "n_texts": len(self.texts),
            "offset": self.offset,
            "records": self.records,
            **drift_summary(self.records),
        }


def drift_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How far IDs and rule ranks move from the first checkpoint.

    Parameters
    ----------
    records : sequence of dict
        Checkpoint records with ``step``, ``dims`` and ``ranks``, the first being the reference.

    Returns
    -------
    dict
        ``max_abs_id_change`` (per layer, over checkpoints), ``max_rel_id_change`` (same, relative to the
        reference ID), ``rank_changes`` (per checkpoint: blocks whose rank differs from the reference),
        ``max_rank_change`` (largest absolute rank difference at any checkpoint), ``final_rank_changes``.
    """
    if not records:
        return {
            "max_abs_id_change": [],
            "max_rel_id_change": [],
            "rank_changes": [],
            "max_rank_change": 0,
            "final_rank_changes": 0,
        }
    ref = records[0]
    d0 = np.asarray(ref["dims"], dtype=np.float64)
    r0 = np.asarray(ref["ranks"], dtype=np.int64)
    D = np.asarray([r["dims"] for r in records], dtype=np.float64)
    R = np.asarray([r["ranks"] for r in records], dtype=np.int64)
    abs_change = np.max(np.abs(D - d0), axis=0)
    changes = [{"step": int(r["step"]), "blocks_changed": int(np.sum(rr != r0))} for r, rr in zip(records, R)]
    return {
        "max_abs_id_change": abs_change.tolist(),
        "max_rel_id_change": (abs_change / np.maximum(d0, 1e-12)).tolist(),
        "rank_changes": changes,
        "max_rank_change": int(np.max(np.abs(R - r0))),
        "final_rank_changes": int(np.sum(R[-1] != r0)),
    }


def run_id_drift(
    tasks: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    profile: Any = "quick",
    run_dir: str | Any = "runs/id_drift",
    device: str | None = None,
    data_dir: str | None = None,
    n_checkpoints: int = 4,
    estimator: str = "twonn",
    probe_texts: int = 256,
    max_tokens: int = 2000,
    method: str = "gelora",
) -> dict[str, Any]:
    """Fine-tune with the runner's GeLoRA method and track per-layer IDs and rule ranks at checkpoints.

    Each (task, seed) is one runner cell (:func:`validation.finetune.runner.run_cell`) with an
    :class:`IDTrajectoryCallback` whose probe is the first ``probe_texts`` training inputs of the cell
    (the same for every checkpoint). Finished cells are read back, not rerun, so the run resumes.

    Returns
    -------
    dict
        ``{"schema", "params", "cells": [{"task", "seed", "primary", "drift": summary}, ...]}``.
    """
    from pathlib import Path

    from gelora._io import read_json
    from validation.finetune.runner import cell_path, get_profile, run_cell

    prof = get_profile(profile) if isinstance(profile, str) else profile
    out: list[dict[str, Any]] = []
    for task in tasks:
        for seed in seeds:
            path = cell_path(run_dir, task, method, int(seed))
            if Path(path).is_file():
                cell = read_json(path)
            else:

                def factory(context: Any, seed: int = int(seed)) -> IDTrajectoryCallback:
                    return IDTrajectoryCallback(
                        list(context.train_texts)[:probe_texts],
                        context.tokenizer,
                        n_checkpoints=n_checkpoints,
                        estimator=estimator,
                        max_tokens=max_tokens,
                        max_length=context.max_length,
                        seed=seed,
                    )

                cell = run_cell(
                    task,
                    method,
                    int(seed),
                    profile=prof,
                    run_dir=run_dir,
                    data_dir=data_dir,
                    device=device,
                    callback_factories=[factory],
                )
            drift = cell.get("callbacks", {}).get("IDTrajectoryCallback")
            if drift is None:
                raise ConfigError(f"cell {path} has no ID trajectory; delete it to rerun with the callback")
            out.append(
                {
                    "task": cell["task"],
                    "seed": int(seed),
                    "method": method,
                    "primary_metric": cell.get("primary_metric"),
                    "primary": cell.get("primary"),
                    "initial_ranks_used": cell.get("method_info", {}).get("block_ranks"),
                    "drift": drift,
                }
            )
    return {
        "schema": "gelora.id_drift/1",
        "params": {
            "tasks": list(tasks),
            "seeds": [int(s) for s in seeds],
            "profile": prof.to_dict(),
            "n_checkpoints": n_checkpoints,
            "estimator": estimator,
            "probe_texts": probe_texts,
            "max_tokens": max_tokens,
            "device": str(device),
        },
        "cells": out,
    }


def render_markdown(res: dict[str, Any]) -> str:
    """Markdown table of a :func:`run_id_drift` result: IDs and rule ranks at every checkpoint."""
    lines = [
        "| task | seed | metric | step | ID per hidden state | rule ranks | blocks changed vs step 0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in res["cells"]:
        d = c["drift"]
        changed = {x["step"]: x["blocks_changed"] for x in d["rank_changes"]}
        for r in d["records"]:
            metric = f"{c['primary_metric']} {c['primary']:.3f}" if c.get("primary") is not None else "n/a"
            ids = ", ".join(f"{x:.2f}" for x in r["dims"])
            lines.append(
                f"| {c['task']} | {c['seed']} | {metric} | {r['step']} | {ids} | {r['ranks']} | "
                f"{changed.get(r['step'], 0)} |"
            )
    return "\n".join(lines) + "\n"


def plot_trajectories(res: dict[str, Any], path: str | Any) -> Any:
    """Per-layer ID against training step, one panel per (task, seed) cell; writes a PNG.

    Parameters
    ----------
    res : dict
        A :func:`run_id_drift` result.
    path : str or Path
        Output PNG.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = res["cells"]
    if not cells:
        raise ConfigError("no cells to plot")
    fig, axes = plt.subplots(1, len(cells), figsize=(5.2 * len(cells), 4.0), squeeze=False)
    for ax, c in zip(axes[0], cells):
        recs = c["drift"]["records"]
        steps = [r["step"] for r in recs]
        n_layers = len(recs[0]["dims"])
        cmap = plt.get_cmap("viridis")
        for layer in range(n_layers):
            ys = [r["dims"][layer] for r in recs]
            lo = [r["cis"][layer][0] for r in recs]
            hi = [r["cis"][layer][1] for r in recs]
            color = cmap(layer / max(n_layers - 1, 1))
            ax.plot(steps, ys, marker="o", ms=3, color=color, label=f"h{layer}")
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
        metric = f"{c['primary_metric']} {c['primary']:.3f}" if c.get("primary") is not None else ""
        ax.set_title(f"{c['task']} seed {c['seed']} ({metric})", fontsize=11)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"intrinsic dimension ({c['drift']['estimator']}, 95% CI)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(title="hidden state", fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, metadata={"Software": None})
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from gelora._io import atomic_write_json

    p = argparse.ArgumentParser(
        prog="python -m validation.estimators.id_drift", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--tasks", default="rte,stsb")
    p.add_argument("--seeds", default="0")
    p.add_argument("--profile", default="quick")
    p.add_argument("--run-dir", default="runs/id_drift")
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--estimator", default="twonn")
    p.add_argument("--probe-texts", type=int, default=256)
    p.add_argument("--max-tokens", type=int, default=2000)
    add_output_args(p, "table", "trajectory plot")
    a = p.parse_args(argv)
    if render_existing(a, render_markdown, plot_trajectories):
        return 0
    if not a.out:
        p.error("--out is required")
    res = run_id_drift(
        a.tasks.split(","),
        seeds=[int(s) for s in a.seeds.split(",")],
        profile=a.profile,
        run_dir=a.run_dir,
        device=a.device,
        data_dir=a.data_dir,
        n_checkpoints=a.checkpoints,
        estimator=a.estimator,
        probe_texts=a.probe_texts,
        max_tokens=a.max_tokens,
    )
    atomic_write_json(a.out, res)
    for c in res["cells"]:
        d = c["drift"]
        print(
            f"{c['task']} seed {c['seed']}: {c['primary_metric']}={c['primary']}, "
            f"max |dID| per layer={[round(x, 2) for x in d['max_abs_id_change']]}, "
            f"max rank change={d['max_rank_change']}, blocks changed at end={d['final_rank_changes']}"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
