"""SIGTERM one grid worker in the middle of a real training cell and report how it stops (issue 19).

Usage, from a checkout::

    PYTHONPATH=. python scripts/sigterm_worker.py RUN_DIR [--task stsb] [--method lora] [--epochs 400]
        [--profile test] [--device cpu] [--after 2] [--model NAME]

Starts :func:`validation.finetune.parallel.run_workers` with one worker subprocess on one cell, waits until
training has logged a loss or written a checkpoint, waits ``--after`` more seconds, sends SIGTERM to the
worker holding the cell's claim and prints: the seconds until the worker exited (or "no exit" after
``--wait`` s, then a ``py-spy dump`` if py-spy is installed, then SIGKILL), whether its claim is still live,
whether the cell was written, whether and when the parent returned, and the tails of the worker and cell
logs. RUN_DIR must not hold a finished result of the cell.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from validation.finetune.claims import is_live
from validation.finetune.grid import claim_path
from validation.finetune.parallel import Slot, run_workers
from validation.finetune.runner import cell_name, cell_path, get_profile


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except (ProcessLookupError, FileNotFoundError):
        return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--task", default="stsb")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", default="test")
    ap.add_argument("--epochs", type=float, default=400.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--model", default=None, help="model name or path (default: the profile's, the bundled encoder)"
    )
    ap.add_argument("--after", type=float, default=2.0, help="seconds after the first loss line")
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the worker's exit")
    a = ap.parse_args()
    profile = get_profile(a.profile, epochs=a.epochs, save_steps=5, model=a.model)
    cell = (a.task, a.method, a.seed)
    name = cell_name(*cell)
    t0 = time.time()
    box: dict[str, Any] = {}

    def parent() -> None:
        box["outcome"] = run_workers(
            [cell],
            [Slot(0, None if a.device == "cpu" else 0, 1)],
            profile=profile,
            run_dir=a.run_dir,
            data_dir=None,
            device=a.device,
            keep_going=True,
            keep_checkpoints=False,
            progress=lambda n, s: print(f"  [{time.time() - t0:6.1f}] {s} {n}", flush=True),
            stale_after=600.0,
        )
        box["returned"] = time.time()

    threading.Thread(target=parent, daemon=True).start()
    claim = claim_path(a.run_dir, *cell)
    log = a.run_dir / "logs" / f"{name}.log"
    while not (
        list(a.run_dir.glob(f"work/{name}/checkpoint-*")) or (log.exists() and "'loss'" in log.read_text())
    ):
        time.sleep(0.5)
    time.sleep(a.after)
    pid = int(json.loads(claim.read_text())["pid"])
    print(f"[{time.time() - t0:6.1f}] SIGTERM worker pid {pid}", flush=True)
    sent = time.time()
    os.kill(pid, signal.SIGTERM)
    exited = None
    while time.time() - sent < a.wait:
        if _gone(pid):
            exited = time.time() - sent
            break
        time.sleep(0.2)
    print(
        f"worker exit: {'no exit' if exited is None else f'{exited:.1f} s'} after SIGTERM; "
        f"claim live {is_live(claim)}; cell written {cell_path(a.run_dir, *cell).exists()}"
    )
    if exited is None:
        if shutil.which("py-spy"):
            subprocess.run(["py-spy", "dump", "--pid", str(pid)], check=False)
        os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 60
    while "returned" not in box and time.time() < deadline:
        time.sleep(0.2)
    back = f"{box['returned'] - sent:.1f} s after SIGTERM" if "returned" in box else "not within 60 s"
    print(f"parent returned: {back}; outcome {box.get('outcome')}")
    print("worker log tail:\n" + (a.run_dir / "logs" / "worker-0.log").read_text()[-1000:])
    print("cell log tail:\n" + (log.read_text()[-600:] if log.exists() else "(none)"))
    return 0 if exited is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
