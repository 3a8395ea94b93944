"""scripts/compact_trajectories.py: per-step GeoLoRA trajectories of old cells become change points, losslessly."""

from __future__ import annotations

import json


def test_compaction_keeps_every_recorded_value_and_nothing_else(tmp_path, load_script):
    mod = load_script("compact_trajectories.py")
    a = [8, 16, 7, 7, 7, 7, 3, 3]
    b = [8, 16, 16, 9, 9, 9, 9, 9]
    ranks = [[s, {"a": x, "b": y}] for s, (x, y) in enumerate(zip(a, b, strict=True))]
    params = [[s, 10 * (x + y)] for s, (x, y) in enumerate(zip(a, b, strict=True))]
    cell = {
        "task": "stsb",
        "metrics": {"pearson": 0.5},
        "method_info": {"rank_trajectory": ranks, "param_trajectory": params, "tau": 0.1},
    }
    path = tmp_path / "stsb__geolora__seed0.json"
    path.write_text(json.dumps(cell))
    assert mod.compact(path)
    out = json.loads(path.read_text())
    info = out["method_info"]
    assert [s for s, _ in info["rank_trajectory"]] == [0, 1, 2, 3, 6, 7]
    assert info["trajectory_recorded_steps"] == 8 and info["tau"] == 0.1 and out["metrics"] == cell["metrics"]
    assert mod._expand(info["rank_trajectory"], list(range(8))) == [r for _, r in ranks]
    assert mod._expand(info["param_trajectory"], list(range(8))) == [c for _, c in params]
    assert not mod.compact(path)  # already compacted: left alone
