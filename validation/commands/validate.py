"""``gelora validate``: end-to-end fine-tuning grids on GLUE, and their summaries.

Examples::

    gelora validate glue --tasks rte,stsb --methods lora,adalora,gelora --seeds 3 --profile quick --out runs/quick
    gelora validate summary runs/quick
    torchrun --nproc-per-node 2 -m gelora.cli validate glue --tasks sst2 --methods lora --profile gpu --out runs/gpu
    gelora validate glue --tasks sst2,rte --methods lora,gelora --seeds 3 --profile gpu --gpus 0,1 --per-gpu 4 --out runs/gpu
    gelora validate glue ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT --out /shared/runs/gpu
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DESCRIPTION = """\
Fine-tune a pretrained encoder on GLUE tasks with every method (uniform LoRA, AdaLoRA, GeLoRA, GeoLoRA,
full fine-tuning) at the same adapter-parameter budget (uniform LoRA of rank --lora-r on the attention
query/value projections), for several seeds, with the Hugging Face Trainer. Each cell
(task x method x seed) writes OUT/cells/<task>__<method>__seed<k>.json atomically; rerunning the same
command skips finished cells and resumes interrupted ones from their Trainer checkpoints. Profiles:
'test' (seconds, for tests), 'quick' (CPU, bundled all-MiniLM-L6-v2, 256 train / 256 dev examples,
128 tokens, 1 epoch), 'gpu' (full dev sets, 20000 train examples, 3 epochs, bf16) and 'paper' (the
paper's protocol: adapters on every linear module, budget = uniform LoRA r=8 there (--lora-r 2: the
smaller budget), per-task schedules, learning rates chosen per task and method on a held-out part of the
training data, methods lora,adalora,gelora,geolora,full,head_only; docs/validation.md). Multi-GPU:
launch with torchrun / accelerate launch; only rank 0 writes results.
"""


def _csv(value: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _seeds(value: str) -> list[int]:
    """``3`` means seeds 0, 1, 2; ``0,5,7`` lists them."""
    try:
        if "," in value:
            return [int(v) for v in _csv(value)]
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds takes a count (3) or a list (0,1,2), got {value!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError("--seeds count must be >= 1")
    return list(range(n))


def _lr_multipliers(
    values: list[str] | None, base: dict[str, float] | None = None
) -> dict[str, float] | None:
    """``["adalora=4", ...]`` -> ``base`` (the chosen profile's multipliers; default: a profile's defaults)
    with these replaced; None when no value is given (keep the profile's).

    Raises
    ------
    gelora.errors.ConfigError
        An item that is not ``METHOD=FACTOR`` with a known method and a factor that
        :func:`validation._cli.positive_number` accepts.
    """
    if not values:
        return None
    from gelora.errors import ConfigError
    from validation._cli import positive_number
    from validation.finetune.methods import METHODS
    from validation.finetune.runner import Profile

    out = dict(Profile(name="_").lr_multipliers if base is None else base)
    for item in values:
        method, sep, factor = item.partition("=")
        method = method.strip()
        if not sep or method not in METHODS:
            raise ConfigError(
                f"--lr-multiplier expects METHOD=FACTOR with METHOD in {sorted(METHODS)}, got {item!r}"
            )
        out[method] = positive_number(factor, "--lr-multiplier factor", within=item)
    return out


def register(subparsers: Any) -> None:
    """Add ``validate glue`` and ``validate summary`` to the ``gelora`` command."""
    p = subparsers.add_parser(
        "validate",
        help="fine-tuning grids on GLUE (LoRA, AdaLoRA, GeLoRA, ...) and their summaries",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="validate_command", metavar="SUITE")
    g = sub.add_parser(
        "glue",
        help="run (or resume) a GLUE grid",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g.add_argument(
        "--tasks",
        type=_csv,
        default=["rte", "stsb"],
        help="comma-separated GLUE tasks, or squad_v1/squad_v2 (needs squad/v<ver>/train-v<ver>.json[.gz] under the data dir) (default rte,stsb)",
    )
    g.add_argument(
        "--methods",
        type=_csv,
        default=None,
        help="comma-separated (default lora,adalora,gelora; with --profile paper "
        "lora,adalora,gelora,geolora,full,head_only)",
    )
    g.add_argument(
        "--seeds", type=_seeds, default=[0, 1, 2], help="a count (3 = seeds 0,1,2) or a list (default 3)"
    )
    g.add_argument(
        "--profile",
        default="quick",
        choices=["test", "quick", "gpu", "paper"],
        help="default quick; 'paper' = the paper's protocol (all-linear adapters, per-task schedules, "
        "learning rates chosen on held-out training data; docs/validation.md)",
    )
    g.add_argument("--out", default=None, help="run directory (default runs/glue-<profile>)")
    g.add_argument("--model", default=None, help="model name or path (default: bundled all-MiniLM-L6-v2)")
    g.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    g.add_argument("--data-dir", default=None, help="data root (default $GELORA_DATA_DIR or ../shared/data)")
    g.add_argument("--train-size", type=int, default=None, help="override the profile's train subset size")
    g.add_argument("--eval-size", type=int, default=None, help="override the profile's dev subset size")
    g.add_argument("--epochs", type=float, default=None, help="override the profile's epochs")
    g.add_argument(
        "--lora-r",
        type=int,
        default=None,
        help="rank of the uniform-LoRA budget (default 8; 2 = the paper protocol's smaller budget)",
    )
    g.add_argument(
        "--target-modules",
        default=None,
        help="adapted linears of every block, comma-separated (default query,value): names, suffixes, "
        "attention, ffn, roles q,k,v,o or all-linear; the budget is uniform LoRA on exactly these",
    )
    g.add_argument("--layers", default=None, help="dotted path of the block list when discovery cannot tell")
    g.add_argument("--max-length", type=int, default=None, help="override the token length")
    g.add_argument(
        "--learning-rate", type=float, default=None, help="override the adapter methods' learning rate"
    )
    g.add_argument(
        "--lr-multiplier",
        action="append",
        default=None,
        metavar="METHOD=FACTOR",
        help="learning-rate factor of one method (repeatable; default adalora=10, others 1)",
    )
    g.add_argument(
        "--lr-grid",
        default=None,
        help="factors of each method's default learning rate tried by the learning-rate selection, "
        "comma-separated (paper profile default 0.5,1,2); turns the selection on",
    )
    g.add_argument(
        "--no-lr-select",
        action="store_true",
        help="skip the learning-rate selection (use each method's default rate)",
    )
    g.add_argument(
        "--compile",
        action="store_true",
        help="opt-in torch.compile of the model (inductor, batches padded to multiples of 32 tokens); "
        "changes numerics, so a run directory holds compiled or eager cells, never both (default: eager)",
    )
    g.add_argument("--stop-on-error", action="store_true", help="stop at the first failing cell")
    g.add_argument(
        "--keep-checkpoints", action="store_true", help="keep Trainer checkpoints of finished cells"
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="run cells concurrently on N worker subprocesses (default 1 = in this process; with --gpus: "
        "len(gpus) x --per-gpu); on CPU each worker gets cpu_count/N threads",
    )
    g.add_argument(
        "--gpus",
        type=_gpus,
        default=None,
        help="GPU indices the workers are pinned to, e.g. 0,1 (default: all)",
    )
    g.add_argument("--per-gpu", type=int, default=None, help="workers per GPU (default: fit --workers)")
    g.add_argument(
        "--shard",
        default=None,
        help="run only shard i/N of the planned cells (hash of the cell name; e.g. a Slurm array index)",
    )
    g.add_argument(
        "--claim-timeout",
        type=float,
        default=None,
        help="seconds without heartbeat after which another host's cell claim is abandoned (default 600)",
    )
    g.set_defaults(func=run_glue)
    q = sub.add_parser(
        "squad",
        help="score SQuAD predictions (official EM/F1, v2.0 no-answer handling)",
        description="Score a predictions file {question id: answer text} ('' = no answer) against an "
        "official SQuAD JSON file (default: the v2.0 dev file under the data directory).",
    )
    q.add_argument("predictions", help="JSON object {question id: predicted text}")
    q.add_argument("--data", default=None, help="official SQuAD JSON[.gz] (default: dev file of --version)")
    q.add_argument("--version", default="2.0", choices=["1.1", "2.0"], help="default 2.0")
    q.add_argument("--data-dir", default=None, help="data root used when --data is not given")
    q.add_argument("--out", default=None, help="also write the scores as JSON (atomically)")
    q.set_defaults(func=run_squad)
    s = sub.add_parser("summary", help="mean ± std per task x method of a run directory")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true", help="print the full summary as JSON")
    s.set_defaults(func=run_summary)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _gpus(value: str) -> list[int]:
    try:
        return [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus expects comma-separated integers, got {value!r}") from None


def _target_modules(text: str | None) -> tuple[str, ...] | None:
    """``"query,value"`` -> ``("query", "value")``; None keeps the profile's."""
    if text is None:
        return None
    items = tuple(t.strip() for t in text.split(",") if t.strip())
    if not items:
        from gelora.errors import ConfigError

        raise ConfigError("--target-modules is empty")
    return items


def _lr_grid(text: str | None) -> tuple[float, ...] | None:
    """``"0.5,1,2"`` -> ``(0.5, 1.0, 2.0)``; None keeps the profile's.

    Raises
    ------
    gelora.errors.ConfigError
        See :func:`validation._cli.positive_numbers`.
    """
    if text is None:
        return None
    from validation._cli import positive_numbers

    return positive_numbers(text, "--lr-grid")


def _lr_select(args: argparse.Namespace) -> bool | None:
    if args.no_lr_select and args.lr_grid is not None:
        from gelora.errors import ConfigError

        raise ConfigError("--no-lr-select and --lr-grid contradict each other")
    if args.no_lr_select:
        return False
    return True if args.lr_grid is not None else None


def run_glue(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from validation.finetune import stop
    from validation.finetune.claims import DEFAULT_STALE_AFTER
    from validation.finetune.grid import format_summary, run_grid, summarise
    from validation.finetune.parallel import parse_shard
    from validation.finetune.runner import get_profile, is_main_process

    hf_logging.set_verbosity_error()
    profile = get_profile(
        args.profile,
        model=args.model,
        train_size=args.train_size,
        eval_size=args.eval_size,
        epochs=args.epochs,
        lora_r=args.lora_r,
        target_modules=_target_modules(args.target_modules),
        layers=args.layers,
        max_length=args.max_length,
        learning_rate=args.learning_rate,
        lr_multipliers=_lr_multipliers(args.lr_multiplier, get_profile(args.profile).lr_multipliers),
        lr_grid=_lr_grid(args.lr_grid),
        lr_select=_lr_select(args),
        torch_compile=True if args.compile else None,  # None keeps the profile's (eager)
    )
    methods = args.methods
    if methods is None:
        from validation.finetune.runner import PAPER_METHODS

        methods = list(PAPER_METHODS) if profile.name == "paper" else ["lora", "adalora", "gelora"]
    if profile.torch_compile:
        from validation.finetune.runner import check_compile_methods

        check_compile_methods(methods)  # before any cell trains
    out = args.out or f"runs/glue-{profile.name}"

    def progress(name: str, status: str) -> None:
        if is_main_process():
            print(f"[{status:6s}] {name}", file=sys.stderr, flush=True)

    try:
        outcome = run_grid(
            args.tasks,
            methods,
            args.seeds,
            profile=profile,
            run_dir=out,
            data_dir=args.data_dir,
            device=args.device,
            keep_going=not args.stop_on_error,
            keep_checkpoints=args.keep_checkpoints,
            progress=progress,
            workers=args.workers,
            gpus=args.gpus,
            per_gpu=args.per_gpu,
            shard=parse_shard(args.shard) if args.shard else None,
            stale_after=args.claim_timeout or DEFAULT_STALE_AFTER,
            # in this process (no workers, no torchrun): SIGTERM stops at the next step, the cell keeps its
            # checkpoints and releases its claim (validation.finetune.stop); with workers, run_workers stops
            # them instead. run_grid decides from its slot plan (validation.finetune.parallel.plan_slots).
            stop_label="gelora validate",
        )
    except stop.StopRequested as exc:
        print(f"stopping: {exc}; rerun the command to resume; exit code {exc.exit_code}", file=sys.stderr)
        print(format_summary(summarise(out)))
        return exc.exit_code
    if is_main_process():
        print(
            f"ran {len(outcome.ran)}, skipped {len(outcome.skipped)} finished, failed {len(outcome.failed)}"
            + (f", not run {len(outcome.not_run)} (no offline data)" if outcome.not_run else "")
            + (f", busy elsewhere {len(outcome.busy)}" if outcome.busy else "")
            + (f", held {len(outcome.held)}" if outcome.held else ""),
            file=sys.stderr,
        )
        for name, err in outcome.errors.items():
            print(f"  {name}: {err}", file=sys.stderr)
        for task, why in outcome.not_run_tasks().items():
            print(f"  {why}" if task in why else f"  not run: {task}: {why}", file=sys.stderr)
        print(format_summary(summarise(out)))
    # a task without offline data (MNLI, QQP) is reported, not an error: the other tasks' grid succeeded
    return 1 if outcome.failed or outcome.errors else 0


def run_squad(args: argparse.Namespace) -> int:
    from gelora._io import atomic_write_json, read_json
    from gelora.errors import InvalidInputError
    from validation.data.squad import load_squad
    from validation.finetune.metrics import squad_metrics

    examples = load_squad(args.data, version=args.version, data_dir=args.data_dir)
    preds = read_json(args.predictions)
    if not isinstance(preds, dict) or not all(isinstance(v, str) for v in preds.values()):
        raise InvalidInputError(f"{args.predictions}: expected a JSON object {{question id: answer text}}")
    scores = squad_metrics(preds, examples, version=args.version)
    if args.out:
        atomic_write_json(args.out, scores)
    print(json.dumps(scores, indent=2))
    return 0


def run_summary(args: argparse.Namespace) -> int:
    from validation.finetune.grid import format_summary, summarise

    summary = summarise(args.run_dir)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m validation.commands.validate glue ...``), same as ``gelora validate``."""
    from gelora.errors import GeLoRAError

    parser = argparse.ArgumentParser(prog="gelora")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["validate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except GeLoRAError as exc:
        print(f"gelora validate: error: {exc}", file=sys.stderr)
        return 2


__all__ = ["main", "register", "run_glue", "run_squad", "run_summary"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
