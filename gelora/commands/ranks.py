"""``gelora ranks``: per-block LoRA ranks of a model from the intrinsic dimension of its hidden states."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Run MODEL on texts, estimate the intrinsic dimension (ID) of every hidden state and print the GeLoRA
ranks r_i = max(d[i+1] - d[i], 0) + offset of every block (hidden state 0 is the embedding output,
hidden state i+1 the output of block i). Without MODEL the bundled all-MiniLM-L6-v2 encoder is used
(offline); without --data, 300 GLUE sentences shipped with gelora. The full result (per-layer ID with
confidence interval, ranks, budget, sampling, data hash, versions, timings) goes to --out as JSON.
"""


def register(subparsers: Any) -> None:
    """Add the ``ranks`` subcommand to ``subparsers``."""
    from gelora.hidden_states import DEFAULT_MAX_TOKENS, TOKEN_SAMPLING
    from gelora.pipeline import DEFAULT_MAX_DUPLICATE_FRACTION, DEFAULT_MIN_SAMPLES
    from gelora.ranks import ROUNDING

    p = subparsers.add_parser(
        "ranks",
        help="per-block LoRA ranks from hidden-state intrinsic dimensions",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model", nargs="?", default=None, help="Hugging Face model id or local path (default: bundled)"
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", default=None, help=".txt / .jsonl / .tsv[.gz] / .csv[.gz] file of texts")
    data.add_argument(
        "--text-column",
        default=None,
        help="column(s) with the text, comma-separated pairs are joined (e.g. sentence1,sentence2)",
    )
    data.add_argument("--n-texts", type=int, default=None, help="seeded random subset of this many texts")
    samp = p.add_argument_group("sampling")
    samp.add_argument(
        "--token-sampling", choices=TOKEN_SAMPLING, default="all", help="rows per text (default all)"
    )
    samp.add_argument(
        "--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="rows per layer (default %(default)s)"
    )
    samp.add_argument("--include-special-tokens", action="store_true", help="keep [CLS]/[SEP]/BOS tokens")
    samp.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default 32)")
    samp.add_argument("--max-length", type=int, default=128, help="truncation length in tokens (default 128)")
    samp.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    run = p.add_argument_group("model and estimator")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    run.add_argument(
        "--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="model dtype (default fp32)"
    )
    run.add_argument("--estimator", default="twonn", help="twonn (default), mle or danco")
    run.add_argument(
        "--estimator-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="estimator parameter (repeatable), e.g. --estimator-param discard_fraction=0.1",
    )
    run.add_argument(
        "--min-samples", type=int, default=DEFAULT_MIN_SAMPLES, help="fewest distinct rows per layer"
    )
    run.add_argument(
        "--max-duplicate-fraction",
        type=float,
        default=DEFAULT_MAX_DUPLICATE_FRACTION,
        help="flag layers above",
    )
    run.add_argument(
        "--flag-degenerate", action="store_true", help="flag degenerate layers instead of failing"
    )
    mods = p.add_argument_group("target modules (discovered from the model; any architecture)")
    mods.add_argument(
        "--target-modules",
        default=None,
        help="linears of every block that get ranks, comma-separated: names or suffixes (query,value / "
        "q_proj,v_proj), groups (attention, ffn), roles (q,k,v,o,qkv) or all-linear (default)",
    )
    mods.add_argument(
        "--layers",
        default=None,
        help="dotted path of the block list when discovery cannot tell (e.g. encoder.layer, model.layers)",
    )
    mods.add_argument(
        "--show-modules",
        action="store_true",
        help="print the discovered blocks and their linears and exit (no forward pass)",
    )
    rule = p.add_argument_group("rank rule")
    rule.add_argument("--offset", type=int, default=1, help="added to every rank (default 1)")
    rule.add_argument("--rounding", choices=ROUNDING, default="ceil", help="integer gap (default ceil)")
    rule.add_argument(
        "--use-ci-upper", action="store_true", help="gap = upper CI of d[i+1] - lower CI of d[i]"
    )
    budget = rule.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=int, default=None, help="target number of trainable LoRA parameters")
    budget.add_argument(
        "--budget-rank", type=int, default=None, help="match the budget of uniform LoRA of this rank (e.g. 8)"
    )
    p.add_argument("--out", default=None, help="write the result JSON here (atomically)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_ranks)


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    return text


def _estimator_params(items: list[str]) -> dict[str, Any]:
    from gelora.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--estimator-param expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def run_ranks(args: argparse.Namespace) -> int:
    """Execute ``gelora ranks``; returns the exit code."""
    from gelora.pipeline import compute_gelora_ranks, load_texts

    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if args.show_modules:
        return _show_modules(args)
    texts = None
    source = None
    if args.data is not None:
        texts = load_texts(args.data, text_column=args.text_column)
        source = str(args.data) + (f" [{args.text_column}]" if args.text_column else "")
    elif args.text_column is not None:
        from gelora.errors import ConfigError

        raise ConfigError("--text-column needs --data")
    result = compute_gelora_ranks(
        args.model,
        texts,
        estimator=args.estimator,
        estimator_params=_estimator_params(args.estimator_param),
        token_sampling=args.token_sampling,
        max_tokens=args.max_tokens,
        include_special_tokens=args.include_special_tokens,
        n_texts=args.n_texts,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        offset=args.offset,
        rounding=args.rounding,
        use_ci_upper=args.use_ci_upper,
        budget=args.budget,
        budget_rank=args.budget_rank,
        target_modules=args.target_modules,
        layers=args.layers,
        min_samples=args.min_samples,
        max_duplicate_fraction=args.max_duplicate_fraction,
        on_degenerate="flag" if args.flag_degenerate else "raise",
        data_source=source,
        progress=not args.quiet,
    )
    print(result.format_table())
    t = result.timings
    print(
        f"time: load {t['load_s']:.1f} s, forward {t['forward_s']:.1f} s, estimation {t['estimation_s']:.1f} s, "
        f"total {t['total_s']:.1f} s; peak RSS {t['peak_rss_mib']:.0f} MiB"
        + (f"; CUDA peak {t['cuda_peak_allocated_mib']:.0f} MiB" if "cuda_peak_allocated_mib" in t else "")
    )
    if result.flagged_layers:
        print(
            f"warning: hidden states {result.flagged_layers} are flagged; see the notes above",
            file=sys.stderr,
        )
    if args.out:
        path = result.save_json(args.out)
        print(f"wrote {path}")
    return 0


def _show_modules(args: argparse.Namespace) -> int:
    from gelora.architecture import discover_architecture, format_architecture
    from gelora.models import load_model

    loaded = load_model(args.model, device="cpu")
    arch = discover_architecture(loaded.model, layers=args.layers, n_blocks=loaded.n_blocks)
    print(format_architecture(arch))
    print(
        f"selected by --target-modules {args.target_modules or 'all-linear'}: {arch.resolve(args.target_modules)}"
    )
    return 0


__all__ = ["register", "run_ranks"]
