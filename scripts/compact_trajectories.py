"""Rewrite GeoLoRA cell files recorded before the runner kept change points only (lossless).

Cells written before 2026-11-29 store ``method_info.rank_trajectory`` / ``param_trajectory`` at every
optimizer step; a 25-epoch STS-B cell was 9.6 MB, enough to push the working tree past the 64 MiB a GPU
call carries. A rank holds until the next recorded step, so keeping the entries where a rank or the
parameter count changes (plus the first and the last) describes the same step function. This script
applies :func:`validation.finetune.geolora.plots.compact_trajectories` exactly as the runner now does,
checks that the kept points give back every recorded entry, and adds ``trajectory_recorded_steps`` and
``trajectory_form``; every other key and value is unchanged.

    python scripts/compact_trajectories.py reports/gpu/*/cells
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gelora._io import atomic_write_json, read_json
from validation.finetune.geolora.plots import TRAJECTORY_FORM, compact_trajectories

FORM = TRAJECTORY_FORM + " (compacted from the per-step record by scripts/compact_trajectories.py)"


def _expand(kept: list[list[Any]], steps: list[int]) -> list[Any]:
    out, j = [], 0
    for s in steps:
        while j + 1 < len(kept) and kept[j + 1][0] <= s:
            j += 1
        out.append(kept[j][1])
    return out


def compact(path: Path) -> bool:
    """Compact one cell file in place; False when it has no per-step trajectory to compact."""
    cell = read_json(path)
    info = cell.get("method_info") or {}
    ranks, params = info.get("rank_trajectory"), info.get("param_trajectory")
    if not ranks or "trajectory_recorded_steps" in info:
        return False
    if params is None or len(params) != len(ranks):
        raise SystemExit(f"{path}: rank and parameter trajectories differ in length")
    new_r, new_p = compact_trajectories(ranks, params)
    steps = [int(r[0]) for r in ranks]
    if _expand(new_r, steps) != [r[1] for r in ranks] or _expand(new_p, steps) != [c[1] for c in params]:
        raise SystemExit(f"{path}: the change points do not give back the record")
    info.update(
        rank_trajectory=new_r,
        param_trajectory=new_p,
        trajectory_recorded_steps=len(ranks),
        trajectory_form=FORM,
    )
    atomic_write_json(path, cell)
    return True


def main(argv: list[str]) -> int:
    done = 0
    for d in map(Path, argv):
        for path in sorted(d.glob("*.json")):
            if path.name.endswith(".failed.json"):
                continue
            if compact(path):
                done += 1
                print(f"compacted {path}")
    print(f"{done} cell file(s) compacted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
