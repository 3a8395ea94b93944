"""scripts/selection_regret.py: the held-out choice against the dev-best rate, over one-rate run directories."""

from __future__ import annotations

import json
from pathlib import Path

RATES = {"0.00025": 0.5, "0.0005": 1.0, "0.001": 2.0}


def _one_rate_dir(root: Path, key: str, heldout: float, dev: list[float], converged: bool = True) -> Path:
    d = root / f"r{RATES[key]}"
    (d / "lr_select").mkdir(parents=True)
    (d / "cells").mkdir()
    sel = {
        "grid": [float(key)],
        "scores": {key: heldout},
        "chosen": float(key),
        "runs": {key: {"convergence": {"converged": converged}}},
    }
    (d / "lr_select" / "rte__gelora.json").write_text(json.dumps(sel))
    for seed, x in enumerate(dev):
        cell = {"task": "rte", "method": "gelora", "seed": seed, "primary": x}
        (d / "cells" / f"rte__gelora__seed{seed}.json").write_text(json.dumps(cell))
    return d


def test_regret_is_the_dev_best_rate_minus_the_held_out_choice(tmp_path, load_script, capsys):
    mod = load_script("selection_regret.py")
    dirs = [
        _one_rate_dir(tmp_path, "0.00025", 0.60, [0.62, 0.60, 0.61]),  # dev-best
        _one_rate_dir(tmp_path, "0.0005", 0.62, [0.58, 0.57, 0.59], converged=False),
        _one_rate_dir(tmp_path, "0.001", 0.65, [0.52, 0.50, 0.51]),  # held-out best: chosen
    ]
    r = mod.row("rte", "gelora", mod.collect(dirs, "rte", "gelora"))
    assert r["chosen"] == "0.001" and r["dev_best"] == "0.00025" and r["unconverged"] == ["0.0005"]
    assert abs(r["regret"]["diff"] - 0.10) < 1e-12 and r["regret"]["n"] == 3 and r["regret"]["ci"][0] > 0
    assert mod.main(["--tasks", "rte", "--methods", "gelora,lora", *map(str, dirs)]) == 0
    out = capsys.readouterr().out
    assert "0.0005: 0.6200 / 0.5800 (unconverged)" in out and "0.001: 0.6500 / 0.5100*" in out
    assert "picked the dev-best rate in 0 of 1" in out and "excludes 0 in 1 (rte/gelora)" in out


def test_a_held_out_tie_goes_to_the_smaller_rate_and_one_rate_gives_no_row(tmp_path, load_script, capsys):
    mod = load_script("selection_regret.py")
    dirs = [  # the larger rate first: the tie rule, not the order, must pick
        _one_rate_dir(tmp_path, "0.001", 0.60, [0.52, 0.50]),
        _one_rate_dir(tmp_path, "0.00025", 0.60, [0.62, 0.60]),
    ]
    r = mod.row("rte", "gelora", mod.collect(dirs, "rte", "gelora"))
    assert r["chosen"] == r["dev_best"] == "0.00025"
    assert mod.row("rte", "gelora", mod.collect(dirs[1:], "rte", "gelora")) is None
    assert mod.main(["--tasks", "rte", "--methods", "gelora", str(dirs[1])]) == 1
    assert "two or more rates" in capsys.readouterr().err
