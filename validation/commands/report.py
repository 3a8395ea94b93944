"""``gelora report``: build the validation report, or re-render one from its ``report.json``."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Run (or collect the finished results of) the estimator validation, the theory checks, the model's
per-layer ranks and the fine-tuning grid, and write reports/NAME/ with report.md, a self-contained
report.html, report.json (every number) and figures/*.png.

  gelora report                                  # quick profile on CPU -> reports/quick/
  gelora report --profile full --runs runs/glue  # collect a finished GPU grid
  gelora report --from reports/quick/report.json # re-render byte for byte
  gelora report --profile full --runs runs/glue --id-profiles ranks_big_twonn.json ranks_big_mle.json
                                                 # + further models' ID profiles (`gelora ranks` files) for C3

Finished sections are kept in reports/NAME/raw/ and reused by the next run (use --force to redo them).
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand to ``subparsers``."""
    from validation.report.build import PROFILES, SECTIONS

    p = subparsers.add_parser(
        "report",
        help="build the validation report (Markdown, HTML, JSON, figures)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--profile", choices=PROFILES, default="quick", help="quick (CPU, minutes) or full (default quick)"
    )
    p.add_argument("--out", type=Path, default=None, help="report directory (default reports/<profile>)")
    p.add_argument(
        "--runs",
        type=Path,
        action="append",
        default=None,
        help="finished grid run directory to collect (repeatable; for a task and method found in "
        "several, the last directory with a result wins)",
    )
    p.add_argument(
        "--id-profiles",
        dest="profiles",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        metavar="FILE",
        help="`gelora ranks` JSON files of further models' per-layer ID profiles (claim C3 covers them)",
    )
    p.add_argument("--seed", type=int, default=0, help="base seed of every section (default 0)")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)} (default all)",
    )
    p.add_argument("--force", action="store_true", help="recompute sections that already finished")
    p.add_argument(
        "--from",
        dest="from_json",
        type=Path,
        default=None,
        help="re-render an existing report.json (no section is run)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``gelora report`` with parsed ``args``; returns the exit code."""
    from gelora.errors import ConfigError
    from validation.report.build import SECTIONS, build_report, rebuild_from

    if args.from_json is not None:
        if args.profiles:
            raise ConfigError(
                "--from re-renders a report.json as it is; --id-profiles needs a build (drop --from)"
            )
        path = rebuild_from(args.from_json, args.out)
        print(
            f"re-rendered {path.parent / 'report.md'} and {path.parent / 'report.html'} from {args.from_json}"
        )
        return 0
    out = args.out if args.out is not None else Path("reports") / args.profile
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    parts = ["gelora", "report", "--profile", args.profile, "--out", str(out), "--seed", str(args.seed)]
    for d in args.runs or []:
        parts += ["--runs", str(d)]
    if args.profiles:
        parts += ["--id-profiles", *(str(f) for f in args.profiles)]
    if args.sections != ",".join(SECTIONS):
        parts += ["--sections", args.sections]
    command = " ".join(shlex.quote(a) for a in parts)
    path = build_report(
        args.profile,
        out,
        runs_dir=None if not args.runs else (args.runs[0] if len(args.runs) == 1 else args.runs),
        seed=args.seed,
        sections=sections,
        force=args.force,
        command=command,
        profile_files=tuple(args.profiles or ()),
    )
    print(f"wrote {path.parent / 'report.md'}, {path.parent / 'report.html'} and {path}")
    return 0
