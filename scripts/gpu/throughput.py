"""Grid throughput against the number of workers (issue 23): the same cells with 1, 4, 6, 8 workers.

Runs ``python -m validation.commands.validate glue ... --workers N --gpus G`` once per configuration on a fresh
run directory, each under a time cap, and records wall time, finished cells and cells per minute (a capped
configuration reports the cells it finished in its time). Writes ``throughput.json`` and ``throughput.md``.

GPU (one device call, ~7 min; see docs/validation.md, "Parallel and sharded grids"):
    python3 scripts/gpu/throughput.py --out "$OUT" --budget-s 400
CPU check of the logic (test profile):
    python scripts/gpu/throughput.py --device cpu --profile test --workers 1,2 --tasks rte --methods lora \
        --seeds 2 --train-size 0 --epochs 0 --out /tmp/tp
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def configurations(workers: list[int], device: str, n_gpus: int) -> list[dict[str, Any]]:
    """``[{"label", "workers", "gpus"}]``: each worker count on GPU 0 (or CPU), plus 2 GPUs x 4 when present."""
    on_gpu = device != "cpu" and n_gpus > 0
    out = [
        {
            "label": f"{w} worker(s)" + (" on GPU 0" if on_gpu else " on CPU"),
            "workers": w,
            "gpus": "0" if on_gpu else None,
        }
        for w in workers
    ]
    if on_gpu and n_gpus >= 2:
        out.append({"label": "8 workers on GPUs 0,1 (4 each)", "workers": 8, "gpus": "0,1"})
    return out


def run_one(conf: dict[str, Any], args: argparse.Namespace, run_dir: Path, cap_s: float) -> dict[str, Any]:
    """Run one configuration under ``cap_s`` seconds; count its finished cells."""
    cmd = [
        sys.executable,
        "-m",
        "validation.commands.validate",
        "glue",
        "--tasks",
        args.tasks,
        "--methods",
        args.methods,
        "--seeds",
        args.seeds,
        "--profile",
        args.profile,
        "--device",
        args.device,
        "--out",
        str(run_dir),
        "--workers",
        str(conf["workers"]),
    ]
    if conf["gpus"]:
        cmd += ["--gpus", conf["gpus"]]
    for flag, value in (
        ("--train-size", args.train_size),
        ("--eval-size", args.eval_size),
        ("--epochs", args.epochs),
    ):
        if value:
            cmd += [flag, str(value)]
    log = run_dir.with_suffix(".log")
    t0 = time.perf_counter()
    with log.open("w") as fh:
        try:
            rc: int | str = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=cap_s).returncode
        except subprocess.TimeoutExpired:
            rc = "capped"
    wall = time.perf_counter() - t0
    cells = [p for p in (run_dir / "cells").glob("*.json") if not p.name.endswith(".failed.json")]
    failed = list((run_dir / "cells").glob("*.failed.json"))
    built = run_dir / "cache" / "built.log"
    return {
        **conf,
        "command": " ".join(cmd[1:]),
        "rc": rc,
        "wall_s": round(wall, 2),
        "cells_done": len(cells),
        "cells_failed": len(failed),
        "cells_per_min": round(len(cells) / wall * 60, 3) if wall > 0 else None,
        "tokenised_entries": len(built.read_text().splitlines()) if built.exists() else 0,
        "log_tail": log.read_text()[-400:],
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table, with the speed-up against the first configuration."""
    rows = result["runs"]
    base = rows[0]["cells_per_min"] if rows and rows[0]["cells_per_min"] else None
    lines = [
        f"Grid throughput, {result['n_cells']} cells ({result['settings']}), {result['device']}",
        "",
        "| configuration | wall s | cells done | failed | cells/min | vs first | exit |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = f"{r['cells_per_min'] / base:.2f}x" if base and r["cells_per_min"] is not None else "n/a"
        lines.append(
            f"| {r['label']} | {r['wall_s']:.1f} | {r['cells_done']}/{result['n_cells']} | "
            f"{r['cells_failed']} | {r['cells_per_min']} | {ratio} | {r['rc']} |"
        )
    for s in result.get("skipped", []):
        lines.append(f"| {s} | skipped: time budget spent | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", default="1,4,6,8", help="worker counts on one GPU (default 1,4,6,8)")
    p.add_argument("--tasks", default="sst2,rte")
    p.add_argument("--methods", default="lora,gelora")
    p.add_argument("--seeds", default="3")
    p.add_argument("--profile", default="gpu")
    p.add_argument("--device", default="cuda")
    p.add_argument("--train-size", type=int, default=1024, help="0 keeps the profile's")
    p.add_argument("--eval-size", type=int, default=0, help="0 keeps the profile's")
    p.add_argument("--epochs", type=float, default=1.0, help="0 keeps the profile's")
    p.add_argument("--budget-s", type=float, default=400.0, help="total seconds for all configurations")
    p.add_argument("--cap-s", type=float, default=120.0, help="seconds per configuration at most")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_cells = (
        len(args.tasks.split(","))
        * len(args.methods.split(","))
        * (int(args.seeds) if "," not in args.seeds else len([s for s in args.seeds.split(",") if s]))
    )
    confs = configurations([int(w) for w in args.workers.split(",")], args.device, _gpu_count())
    deadline = time.monotonic() + args.budget_s
    work = Path(tempfile.mkdtemp(prefix="gelora-throughput-"))
    result: dict[str, Any] = {
        "n_cells": n_cells,
        "device": args.device,
        "n_gpus": _gpu_count(),
        "cpu_count": os.cpu_count(),
        "settings": f"tasks {args.tasks}, methods {args.methods}, seeds {args.seeds}, profile {args.profile}, "
        f"train_size {args.train_size or 'profile'}, epochs {args.epochs or 'profile'}",
        "runs": [],
        "skipped": [],
    }
    for i, conf in enumerate(confs):
        left = deadline - time.monotonic()
        if left < 20:
            result["skipped"].append(conf["label"])
            continue
        r = run_one(conf, args, work / f"run{i}", min(args.cap_s, left))
        result["runs"].append(r)
        print(
            f"{r['label']}: {r['cells_done']}/{n_cells} cells in {r['wall_s']:.1f} s "
            f"({r['cells_per_min']} cells/min, exit {r['rc']})",
            flush=True,
        )
        (out / "throughput.json").write_text(json.dumps(result, indent=1))
        (out / "throughput.md").write_text(markdown(result))
    (out / "throughput.json").write_text(json.dumps(result, indent=1))
    (out / "throughput.md").write_text(markdown(result))
    print(markdown(result))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
