"""Claim C5: wall time of GeLoRA against its baselines, one method at a time on one device.

The paper reports that GeLoRA trains 13.5 %-64.2 % faster than adaptive-rank baselines. Wall times of a
grid's cells do not carry that comparison: cells share the GPU with a varying number of neighbours. This
module times the methods *alone*, one after another in one process, on the same task with the same
training subset, number of optimizer steps, batch size and precision, and no checkpoints, after an
untimed warm-up cell (CUDA context, kernels, the token cache). Each of ``repeats`` rounds runs every
method once, in an order rotated by one per round, so a slow drift of the machine spreads over all of
them. The compared time of a method is its preparation plus its training:

* ``prep_s``: GeLoRA's preprocessing (hidden states of its texts, intrinsic dimensions, ranks;
  ``method_info.timings.total_s`` of its cell); 0 for the other methods, whose rank adaptation (AdaLoRA,
  GeoLoRA) happens inside training;
* ``train_s``: the Trainer's ``train()`` call;

and ``cell_s`` (the whole cell: model load, preparation, training, evaluation) is recorded beside them.

Usage (the committed measurement: reports/gpu/README.md)::

    python -m validation.finetune.walltime --task stsb --methods lora,adalora,gelora,geolora \\
        --train-size 6400 --epochs 2 --repeats 2 --device cuda --out RUN_DIR/walltime.json

A method name may be a variant (:data:`VARIANTS`): ``adalora@peft`` and ``adalora@fast`` time AdaLoRA with
peft's allocation step and with ours (the same allocation without its host syncs), so the comparison can
name the implementation; each round records the allocator that ran.

A ``walltime.json`` inside a grid run directory is collected by ``gelora report --runs RUN_DIR`` and
decides claim C5 (:func:`validation.report.claims.claim_time`).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json
from gelora.errors import ConfigError

#: schema tag of a wall-time measurement file
WALLTIME_SCHEMA = "gelora.validation.walltime/1"

#: the methods whose speed the paper compares GeLoRA with (rank-adaptive baselines)
ADAPTIVE_BASELINES: tuple[str, ...] = ("adalora", "geolora")

#: timed variants of a method: ``name@variant`` -> (method, its options). AdaLoRA's allocation step has two
#: implementations with the same result (peft's, which users of peft run, and ours without its host syncs),
#: so C5 can time both; GeoLoRA's integrator can factorise its bases in batches.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "adalora@peft": ("adalora", {"allocator": "peft"}),
    "adalora@fast": ("adalora", {"allocator": "fast"}),
    "geolora@batched_qr": ("geolora", {"batched_qr": True}),
}


def base_method(name: str) -> str:
    """The method a timed name runs: ``"adalora@peft"`` -> ``"adalora"``; a plain name is itself."""
    return VARIANTS[name][0] if name in VARIANTS else name


def _variant_profile(profile: Any, name: str) -> Any:
    """``profile`` with the options of variant ``name`` merged into its ``method_options`` (a plain name:
    unchanged)."""
    from dataclasses import replace

    if name not in VARIANTS:
        return profile
    method, opts = VARIANTS[name]
    merged = {**profile.method_options, method: {**profile.method_options.get(method, {}), **opts}}
    return replace(profile, method_options=merged)


def _other_gpu_processes() -> int | None:
    """Compute processes on the GPUs other than this one (``nvidia-smi``), or None when unknown."""
    import os

    from validation.report.environment import nvidia_smi

    out = nvidia_smi("--query-compute-apps=pid")
    if out is None:
        return None
    pids = {line.strip() for line in out.splitlines() if line.strip()}
    pids.discard(str(os.getpid()))
    return len(pids)


def partial_path(out: Path) -> Path:
    """Where the rounds finished so far are kept while a measurement runs: ``walltime.partial.json`` beside
    ``walltime.json`` (removed when the measurement completes; the report reads complete files only)."""
    return out.with_name(f"{out.stem}.partial{out.suffix or '.json'}")


def rotated(methods: Sequence[str], round_index: int) -> list[str]:
    """``methods`` rotated left by ``round_index`` (round r starts with method r mod len)."""
    k = round_index % len(methods)
    return [*methods[k:], *methods[:k]]


def _timing(cell: dict[str, Any]) -> dict[str, Any]:
    info = cell.get("method_info") or {}
    prep = float((info.get("timings") or {}).get("total_s") or 0.0)
    train = float(cell["train"]["train_time_s"])
    return {
        "prep_s": prep,
        "train_s": train,
        "time_s": prep + train,
        "cell_s": float(cell["wall_time_s"]),
        "steps": int(cell["train"]["steps"]),
        "primary": cell.get("primary"),
        # which implementation ran, where a method has two (AdaLoRA's allocator, GeoLoRA's batched QRs)
        **{k: info[k] for k in ("allocator", "allocator_fallback_reason", "batched_qr") if k in info},
    }


def summarise_times(rounds: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per method: the times of every round, their median, min and max, and the preprocessing share.

    Parameters
    ----------
    rounds : sequence of dict
        One ``{method: timing}`` per round (timing as recorded by :func:`time_methods`).
    """
    methods = sorted({m for r in rounds for m in r})
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        ts = [r[m] for r in rounds if m in r]
        times = [t["time_s"] for t in ts]
        preps = [t["prep_s"] for t in ts]
        out[m] = {
            "time_s": times,
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "prep_median_s": statistics.median(preps),
            "prep_share": statistics.median([t["prep_s"] / t["time_s"] for t in ts if t["time_s"] > 0]),
            "train_median_s": statistics.median([t["train_s"] for t in ts]),
            "per_step_s": statistics.median(
                [t["train_s"] / t["steps"] for t in ts if t["steps"] > 0] or [0.0]
            ),
            "cell_median_s": statistics.median([t["cell_s"] for t in ts]),
            "steps": sorted({t["steps"] for t in ts}),
        }
    return out


def compare(methods: dict[str, dict[str, Any]], reference: str = "gelora") -> list[dict[str, Any]]:
    """``reference`` against every other method: ratio of medians and whether the rounds separate.

    ``separated`` is ``"faster"`` when every round of ``reference`` took less time than every round of
    the other method, ``"slower"`` for the reverse, else ``"overlap"``.
    """
    if reference not in methods:
        return []
    g = methods[reference]
    rows = []
    for m, b in sorted(methods.items()):
        if m == reference:
            continue
        if g["max_s"] < b["min_s"]:
            sep = "faster"
        elif g["min_s"] > b["max_s"]:
            sep = "slower"
        else:
            sep = "overlap"
        rows.append(
            {
                "baseline": m,
                "ratio": g["median_s"] / b["median_s"],
                "reduction": 1.0 - g["median_s"] / b["median_s"],
                "separated": sep,
                "adaptive": base_method(m) in ADAPTIVE_BASELINES,
            }
        )
    return rows


def time_methods(
    task: str,
    methods: Sequence[str],
    *,
    profile: Any,
    repeats: int = 2,
    warmup: bool | str = True,
    seed: int = 0,
    data_dir: str | Path | None = None,
    device: str | None = None,
    work_root: str | Path | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Time ``methods`` one at a time on ``task`` (see the module docstring).

    Parameters
    ----------
    task : str
        A GLUE or SQuAD task name.
    methods : sequence of str
        Keys of :data:`validation.finetune.methods.METHODS`, at least one.
    profile : validation.finetune.runner.Profile
        Settings of every cell (its per-task table applies); learning-rate selection and checkpoints are
        switched off here so that every method runs the same steps and nothing else.
    repeats : int
        Rounds; every method runs once per round.
    warmup : bool or str
        Untimed cells before the rounds: ``"first"`` (or True) one of the first method (CUDA context, kernels
        shared by all methods, the token cache); ``"all"`` one of every method, so that each method's own
        one-time costs (e.g. GeLoRA's estimator kernels) are paid before timing and the rounds measure the
        steady state; ``"none"`` (or False) none.
    seed : int
        Training seed of every cell (the same for all methods).
    work_root : str, Path or None
        Where the cells' scratch directories go (default: a temporary directory, removed afterwards).
    on_round : callable or None
        Called after each finished round with the record so far (``"complete": False``), so that a run cut
        short (a device call's time limit) keeps its finished rounds.

    Returns
    -------
    dict
        ``{"schema", "task", "rounds": [{method: timing}], "methods": summary, "comparisons", ...,
        "complete": True}``.

    Raises
    ------
    ConfigError
        No method, an unknown method, or ``repeats < 1``.
    """
    from dataclasses import replace

    from validation.finetune.methods import get_method
    from validation.finetune.runner import run_cell
    from validation.finetune.tasks import task_family

    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError("walltime: no method to time")
    for m in methods:
        if "@" in m and m not in VARIANTS:
            raise ConfigError(f"walltime: unknown variant {m!r} (known: {', '.join(sorted(VARIANTS))})")
        get_method(base_method(m))
    if int(repeats) < 1:
        raise ConfigError(f"walltime: repeats must be >= 1, got {repeats}")
    mode = ("first" if warmup else "none") if isinstance(warmup, bool) else str(warmup)
    if mode not in ("first", "all", "none"):
        raise ConfigError(f"walltime: warmup must be 'first', 'all' or 'none', got {warmup!r}")
    task = task_family(task).canonical(task)
    eff = replace(profile.for_task(task), lr_select=False, save_steps=10**9, task_overrides={})
    tmp = Path(tempfile.mkdtemp(prefix="gelora-walltime-", dir=work_root))
    before = _other_gpu_processes() if device != "cpu" else None
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rounds: list[dict[str, dict[str, Any]]] = []
    orders: list[list[str]] = []
    env: dict[str, Any] = {}

    def record(complete: bool) -> dict[str, Any]:
        summary = summarise_times(rounds)
        return {
            "schema": WALLTIME_SCHEMA,
            "task": task,
            "methods_order": methods,
            "orders": orders[: len(rounds)],
            "seed": int(seed),
            "repeats": int(repeats),
            "warmup": mode,
            "profile": eff.to_dict(),
            "rounds": rounds,
            "methods": summary,
            "comparisons": compare(summary),
            "other_gpu_processes": {
                "before": before,
                "after": (_other_gpu_processes() if device != "cpu" else None) if complete else None,
            },
            "environment": {k: v for k, v in env.items() if k != "host"},
            "started_at": started,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": complete,
        }

    try:

        def one(m: str, where: Path) -> dict[str, Any]:
            # a directory per timed name: two variants of one method share its cell name
            return run_cell(
                task,
                base_method(m),
                seed,
                profile=_variant_profile(eff, m),
                run_dir=where / m.replace("@", "_"),
                data_dir=data_dir,
                device=device,
            )

        for m in {"first": methods[:1], "all": methods, "none": []}[mode]:
            one(m, tmp / "warmup")
        for r in range(int(repeats)):
            order = rotated(methods, r)
            orders.append(order)
            got: dict[str, dict[str, Any]] = {}
            for m in order:
                cell = one(m, tmp / f"round{r}")
                got[m] = _timing(cell)
                env = cell.get("environment") or env
                print(
                    f"[walltime] round {r} {m}: prep {got[m]['prep_s']:.2f} s + train {got[m]['train_s']:.2f} s "
                    f"({got[m]['steps']} steps)",
                    file=sys.stderr,
                    flush=True,
                )
            rounds.append(got)
            if on_round is not None:
                on_round(record(complete=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return record(complete=True)


def format_walltime(record: dict[str, Any]) -> str:
    """A plain-text table of a measurement (what the command prints)."""
    lines = [f"{record['task']}: {record['repeats']} round(s), seed {record['seed']}"]
    w = max([12, *(len(m) for m in record["methods"])])
    lines.append(f"{'method':<{w}} {'median s':>9} {'min s':>8} {'max s':>8} {'prep s':>7} {'prep %':>7}")
    for m, s in record["methods"].items():
        lines.append(
            f"{m:<{w}} {s['median_s']:>9.2f} {s['min_s']:>8.2f} {s['max_s']:>8.2f} "
            f"{s['prep_median_s']:>7.2f} {100 * s['prep_share']:>6.2f}%"
        )
    for c in record["comparisons"]:
        lines.append(f"gelora / {c['baseline']}: {c['ratio']:.3f} ({c['separated']})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from validation.finetune.runner import get_profile

    p = argparse.ArgumentParser(
        prog="python -m validation.finetune.walltime",
        description="Time fine-tuning methods one at a time on one device (claim C5).",
    )
    p.add_argument("--task", default="stsb")
    p.add_argument(
        "--methods",
        default="lora,adalora,gelora,geolora",
        help="comma-separated; a method or a variant: " + ", ".join(sorted(VARIANTS)),
    )
    p.add_argument("--profile", default="paper", help="base profile (default paper)")
    p.add_argument("--train-size", type=int, default=None, help="training examples (default: the profile's)")
    p.add_argument("--epochs", type=float, default=None, help="epochs (default: the profile's for the task)")
    p.add_argument("--model", default=None, help="model name or path (default: the profile's)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--warmup",
        choices=("first", "all", "none"),
        default="first",
        help="untimed cells before the rounds: of the first method (default), of every method, or none",
    )
    p.add_argument("--no-warmup", action="store_true", help="the same as --warmup none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, required=True, help="JSON file to write")
    a = p.parse_args(argv)
    from validation.report.portable import portable_path

    args = list(sys.argv[1:] if argv is None else argv)
    # paths in the recorded command are written without this machine's absolute prefixes
    args = [
        portable_path(x) if i and args[i - 1] in ("--out", "--data-dir", "--model") else x
        for i, x in enumerate(args)
    ]
    command = "python -m validation.finetune.walltime " + " ".join(args)
    partial = partial_path(a.out)

    def keep_round(rec: dict[str, Any]) -> None:
        atomic_write_json(partial, {**rec, "command": command})
        print(f"[walltime] {len(rec['rounds'])} round(s) kept in {partial}", file=sys.stderr, flush=True)

    try:
        profile = get_profile(a.profile, train_size=a.train_size, epochs=a.epochs, model=a.model)
        record = time_methods(
            a.task,
            [m.strip() for m in a.methods.split(",") if m.strip()],
            profile=profile,
            repeats=a.repeats,
            warmup="none" if a.no_warmup else a.warmup,
            seed=a.seed,
            data_dir=a.data_dir,
            device=a.device,
            on_round=keep_round,
        )
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record["command"] = command
    atomic_write_json(a.out, record)
    partial.unlink(missing_ok=True)
    print(format_walltime(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
