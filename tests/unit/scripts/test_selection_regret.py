"""scripts/selection_regret.py: the held-out choice against the dev-best rate, over one-rate run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gelora.errors import ConfigError

FACTOR = {"0.00025": 0.5, "0.0005": 1.0, "0.001": 2.0}


def _one_rate_dir(
    gridfix: Any,
    root: Path,
    key: str,
    heldout: float | None,
    dev: dict[int, float],
    converged: bool = True,
    name: str | None = None,
) -> Path:
    """A one-rate run directory: GeLoRA's RTE cells ``dev`` ({seed: score}) and its selection record."""
    d = root / (name or f"r{FACTOR[key]}")
    values = [dev.get(s) for s in range(max(dev) + 1)] if dev else []
    gridfix.write_grid(d, {"rte": {"gelora": values}})
    (d / "lr_select").mkdir()
    sel = {
        "grid": [float(key)],
        "scores": {key: heldout},
        "chosen": float(key),
        "done": True,
        "runs": {key: {"convergence": {"converged": converged}}},
    }
    (d / "lr_select" / "rte__gelora.json").write_text(json.dumps(sel))
    return d


def _seeds(*xs: float) -> dict[int, float]:
    return dict(enumerate(xs))


def test_regret_is_the_dev_best_rate_minus_the_held_out_choice(tmp_path, load_script, gridfix, capsys):
    mod = load_script("selection_regret.py")
    dirs = [
        _one_rate_dir(gridfix, tmp_path, "0.00025", 0.60, _seeds(0.62, 0.60, 0.61)),  # dev-best
        _one_rate_dir(gridfix, tmp_path, "0.0005", 0.62, _seeds(0.58, 0.57, 0.59), converged=False),
        _one_rate_dir(gridfix, tmp_path, "0.001", 0.65, _seeds(0.52, 0.50, 0.51)),  # held-out best: chosen
    ]
    r, _ = mod.row("rte", "gelora", mod.collect(dirs, "rte", "gelora"))
    assert r["chosen"] == "0.001" and r["dev_best"] == "0.00025" and r["unconverged"] == ["0.0005"]
    assert abs(r["regret"]["diff"] - 0.10) < 1e-12 and r["regret"]["n"] == 3 and r["regret"]["ci"][0] > 0
    assert mod.main(["--tasks", "rte", "--methods", "gelora,lora", *map(str, dirs)]) == 0
    out = capsys.readouterr().out
    assert "0.0005: 0.6200 / 0.5800 (unconverged)" in out and "0.001: 0.6500 / 0.5100*" in out
    assert "picked the dev-best rate in 0 of 1" in out and "lies above 0 in 1 (rte/gelora)" in out


def test_ties_go_to_the_smaller_rate_on_both_sides(tmp_path, load_script, gridfix):
    mod = load_script("selection_regret.py")
    dirs = [  # the larger rate first: the tie rules, not the order, must pick
        _one_rate_dir(gridfix, tmp_path, "0.001", 0.60, _seeds(0.62, 0.60)),
        _one_rate_dir(gridfix, tmp_path, "0.00025", 0.60, _seeds(0.62, 0.60)),
    ]
    r, _ = mod.row("rte", "gelora", mod.collect(dirs, "rte", "gelora"))
    assert r["chosen"] == r["dev_best"] == "0.00025"


def test_the_choice_runs_over_every_rate_and_means_over_common_seeds(tmp_path, load_script, gridfix):
    mod = load_script("selection_regret.py")
    # the held-out best rate has no dev cells: no row (the merged grid would choose it), not a false hit
    no_cells = [
        _one_rate_dir(gridfix, tmp_path / "a", "0.00025", 0.60, _seeds(0.62, 0.60)),
        _one_rate_dir(gridfix, tmp_path / "a", "0.0005", 0.61, _seeds(0.58, 0.57)),
        _one_rate_dir(gridfix, tmp_path / "a", "0.001", 0.70, {}),
    ]
    r, why = mod.row("rte", "gelora", mod.collect(no_cells, "rte", "gelora"))
    assert r is None and "without dev cells: 0.001" in why
    # seed 2 only at the chosen rate, where it is very low: means and the regret use seeds 0 and 1 only
    uneven = [
        _one_rate_dir(gridfix, tmp_path / "b", "0.00025", 0.60, _seeds(0.62, 0.60)),
        _one_rate_dir(gridfix, tmp_path / "b", "0.001", 0.65, {0: 0.58, 1: 0.56, 2: 0.10}),
    ]
    r, _ = mod.row("rte", "gelora", mod.collect(uneven, "rte", "gelora"))
    assert r["seeds"] == [0, 1] and math.isclose(r["dev"]["0.001"], 0.57)
    assert math.isclose(r["regret"]["diff"], 0.04) and r["regret"]["n"] == 2


def test_a_rate_without_a_finite_held_out_score_never_wins(tmp_path, load_script, gridfix, capsys):
    mod = load_script("selection_regret.py")
    dirs = [
        _one_rate_dir(gridfix, tmp_path, "0.00025", 0.60, _seeds(0.62, 0.60)),
        _one_rate_dir(gridfix, tmp_path, "0.001", None, _seeds(0.70, 0.71)),
    ]
    r, _ = mod.row("rte", "gelora", mod.collect(dirs, "rte", "gelora"))
    assert r["chosen"] == "0.00025" and r["dev_best"] == "0.001"
    assert "0.001: none / 0.7050" in mod._fmt(r)
    half = [_one_rate_dir(gridfix, tmp_path / "h", "0.00025", float("nan"), _seeds(0.6, 0.6))]
    half.append(_one_rate_dir(gridfix, tmp_path / "h", "0.001", 0.5, _seeds(0.6, 0.6)))
    r, _ = mod.row("rte", "gelora", mod.collect(half, "rte", "gelora"))
    assert r["chosen"] == "0.001" and "0.00025: none / 0.6000" in mod._fmt(r)
    nan = [_one_rate_dir(gridfix, tmp_path / "n", "0.00025", float("nan"), _seeds(0.6, 0.6))]
    nan.append(_one_rate_dir(gridfix, tmp_path / "n", "0.001", None, _seeds(0.6, 0.6)))
    r, why = mod.row("rte", "gelora", mod.collect(nan, "rte", "gelora"))
    assert r is None and "no rate gave a finite score" in why
    assert mod.main(["--tasks", "rte", "--methods", "gelora", *map(str, nan)]) == 1
    assert "left out" in capsys.readouterr().err


def test_input_that_is_not_one_rate_runs_is_refused(tmp_path, load_script, gridfix, capsys):
    mod = load_script("selection_regret.py")
    a = _one_rate_dir(gridfix, tmp_path, "0.00025", 0.60, _seeds(0.62, 0.60))
    twice = _one_rate_dir(gridfix, tmp_path, "0.00025", 0.61, _seeds(0.62, 0.60), name="again")
    with pytest.raises(ConfigError, match="rate 0.00025 in both"):
        mod.collect([a, twice], "rte", "gelora")
    merged = tmp_path / "merged"
    (merged / "lr_select").mkdir(parents=True)
    sel = {"grid": [2.5e-4, 1e-3], "scores": {"0.00025": 0.6, "0.001": 0.7}, "done": True}
    (merged / "lr_select" / "rte__gelora.json").write_text(json.dumps(sel))
    assert mod.main(["--tasks", "rte", "--methods", "gelora", str(merged)]) == 2
    assert "one-rate, finished selection is expected" in capsys.readouterr().err
    assert mod.row("rte", "gelora", mod.collect([a], "rte", "gelora"))[0] is None
