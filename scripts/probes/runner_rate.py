"""The runner's own training-step rate with the Trainer's per-step host syncs on or off (issue 19: SST-2's cost).

Why: twelve MiniLM-L6 LoRA processes made about 143 steps/s together in the runner on SST-2 (2026-12-01
05:40), while the model's step alone, twelve processes side by side, made 250 (``step_rate.py``, eager, a
fixed 32-token batch, another session: ``reports/gpu/minilm_h200/``), which suggests that the runner's loop
costs about as much as the model step. Two things in it may wait for the GPU at every step: the Trainer's
``logging_nan_inf_filter`` (``torch.isnan(loss) or torch.isinf(loss)`` reads a CUDA tensor on the host) and
the copy of each batch to the GPU (from pinned memory already: ``dataloader_pin_memory`` defaults to True,
but not ``non_blocking``). This probe runs ``gelora validate glue`` unchanged except for the TrainingArguments
it builds:

* ``default``: as the runner builds them;
* ``no_nan_filter``: ``logging_nan_inf_filter=False`` (the weights do not change; only a NaN/inf step's logged
  loss would: the filter replaces it by the running mean);
* ``no_nan_filter_nonblocking``: also the accelerator's ``non_blocking`` copies (``accelerator_config``).

Run one process per variant and cell (each its own ``--out``), read ``train.steps / train.train_time_s`` of its
cell; the probe prints one JSON line, ``{"probe": "runner_rate", "variant": ..., "training_args": [...]}``,
with the arguments the Trainer was actually given (a patch that did not reach the runner fails the probe:
on 2026-12-01 an earlier form patched ``TrainingArguments`` on the module object ``import transformers``
returned, but in transformers 5.17 and 5.24 the first lookup of a name on it puts another module object into
``sys.modules``, which ``from transformers import`` reads, so its three variants ran the same code).
Alternate the variants (A B A B ...): on 2026-12-01 the first of three batches of twelve identical processes
was 1.36-1.40x slower than the other two (one run per position: the cause is not known). The cells must run
in this process (no ``--workers``: a worker subprocess would not see the patch; then no arguments are
recorded and the probe exits 1). E.g. twelve side by side on the GPU::

    for i in $(seq 0 11); do python3 scripts/probes/runner_rate.py --variant no_nan_filter -- --profile paper \\
        --tasks sst2 --methods lora --seeds 1 --no-lr-select --epochs 0.15 --out runs/rate_B_$i & done; wait

(every process trains seed 0 into its own ``--out``: the rate, not the seed, is measured). Back here,
``python scripts/probes/runner_rate.py --collect runs/rate_B_0 runs/rate_B_1 ...`` prints one JSON line a run
(its cell's steps, training time and rate, score and loss, and the probe line of ``<run>.log`` beside it).
Nothing here changes a committed result:
adopting a variant in the runner is a separate decision with CPU tests that the weights stay bit-identical.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

VARIANTS = ("default", "no_nan_filter", "no_nan_filter_nonblocking")


def overrides(variant: str) -> dict[str, Any]:
    """The TrainingArguments a variant sets over the runner's."""
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    out: dict[str, Any] = {}
    if variant != "default":
        out["logging_nan_inf_filter"] = False
    if variant == "no_nan_filter_nonblocking":
        out["accelerator_config"] = {"non_blocking": True}
    return out


@contextlib.contextmanager
def patched(variant: str) -> Iterator[list[dict[str, Any]]]:
    """While open, ``from transformers import TrainingArguments`` (what the runner does) builds the
    arguments with the variant's overrides; yields the list of the keyword arguments each build used."""
    # transformers' lazy module puts another module object into sys.modules at the first lookup of a name;
    # ``from transformers import X`` reads that one: look the name up first, then patch sys.modules' object
    import transformers

    transformers.TrainingArguments  # noqa: B018 - the lookup that settles sys.modules["transformers"]
    module = sys.modules["transformers"]
    base = module.TrainingArguments
    seen: list[dict[str, Any]] = []
    extra = overrides(variant)

    def build(*args: Any, **kwargs: Any) -> Any:
        kwargs.update(extra)
        keys = ("logging_nan_inf_filter", "dataloader_pin_memory", "accelerator_config")
        seen.append({k: kwargs[k] for k in keys if k in kwargs})
        return base(*args, **kwargs)

    module.TrainingArguments = build
    try:
        from transformers import TrainingArguments

        if TrainingArguments is not build:
            raise SystemExit(
                "runner_rate: the TrainingArguments patch does not reach `from transformers import`"
            )
        yield seen
    finally:
        module.TrainingArguments = base


def collect(runs: list[Path], *, skip_unfinished: bool = False) -> list[dict[str, Any]]:
    """One record a probe run: ``runs`` are the ``--out`` folders; each holds one cell, and ``<run>.log``
    beside it holds the probe's JSON line (the variant and the arguments the Trainer was given).

    A run without exactly one finished cell (killed by ``timeout``, failed) is an error, or, with
    ``skip_unfinished``, left out with a line on stderr; a missing or malformed log is always an error."""
    from gelora.errors import ResultFileError
    from validation.finetune.runner import read_cell

    records = []
    for run in runs:
        cells = sorted((run / "cells").glob("*.json"))
        try:
            cell = read_cell(cells[0]) if len(cells) == 1 else {}
        except ResultFileError as exc:
            raise SystemExit(f"runner_rate: {exc}") from exc
        train = cell.get("train")
        if len(cells) != 1 or cell.get("status") not in (None, "ok") or not train:
            why = (
                f"holds {len(cells)} cells, expected 1 (did it finish?)"
                if len(cells) != 1
                else f"has no finished training (status {cell.get('status')!r})"
            )
            if not skip_unfinished:
                raise SystemExit(f"runner_rate: {run} {why}")
            print(f"runner_rate: left out {run}: it {why}", file=sys.stderr)
            continue
        log = run.parent / f"{run.resolve().name}.log"
        if not log.is_file():
            raise SystemExit(f"runner_rate: {log} is missing (the probe's output beside the run)")
        probe = [
            json.loads(x) for x in log.read_text(encoding="utf-8").splitlines() if x.startswith('{"probe"')
        ]
        if len(probe) != 1:
            raise SystemExit(f"runner_rate: {log} has {len(probe)} probe lines, expected 1")
        records.append(
            {
                "run": run.name,
                "variant": probe[0]["variant"],
                "training_args": probe[0]["training_args"],
                "steps": train["steps"],
                "train_time_s": train["train_time_s"],
                "steps_per_s": train["steps"] / train["train_time_s"],
                "primary_metric": cell["primary_metric"],
                "primary": cell["primary"],
                "train_loss": train["train_loss"],
                "finished_at": cell["finished_at"],
            }
        )
    return records


def main(argv: list[str] | None = None) -> int:
    """Parse ``--variant``, patch, and run ``gelora validate glue`` with the arguments after ``--``; or, with
    ``--collect RUN...``, print the records of finished runs (:func:`collect`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        usage="%(prog)s [--variant V] -- GLUE_ARGS... | %(prog)s --collect [--skip-unfinished] RUN...",
    )
    ap.add_argument("--variant", choices=VARIANTS, help="default: the runner as it is")
    # --collect is a switch and the runs are positional, so `--collect --skip-unfinished RUN...` and
    # `--skip-unfinished --collect RUN...` both work (a 2026-12-01 plan had the first, which nargs="+" refused);
    # run directories go before any `--` (what follows it is `gelora validate glue`'s)
    ap.add_argument("--collect", action="store_true", help="print the records of the finished runs RUN...")
    ap.add_argument("runs", nargs="*", type=Path, metavar="RUN", help="with --collect: run directories")
    ap.add_argument(
        "--skip-unfinished",
        action="store_true",
        help="with --collect: leave out runs without a finished cell",
    )
    a = ap.parse_intermixed_args(argv)  # runs and switches in any order
    if a.runs and not a.collect:
        raise SystemExit("runner_rate: run directories are read only with --collect")
    if a.collect:
        if rest or a.variant:
            raise SystemExit(
                "runner_rate: --collect takes no --variant and no `gelora validate glue` arguments"
            )
        if not a.runs:
            raise SystemExit("runner_rate: --collect needs at least one run directory")
        for record in collect(a.runs, skip_unfinished=a.skip_unfinished):
            print(json.dumps(record))
        return 0
    if not rest:
        raise SystemExit("runner_rate: give the `gelora validate glue` arguments after `--`")
    from validation.commands.validate import main as validate_main

    variant = a.variant or "default"
    with patched(variant) as seen:
        rc = int(validate_main(["glue", *rest]))
    print(json.dumps({"probe": "runner_rate", "variant": variant, "training_args": seen}))
    if not seen:
        print("runner_rate: the runner built no TrainingArguments (nothing trained?)", file=sys.stderr)
        return rc or 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
