"""C4's rate check: paper-protocol grids that selected rates from several factors, collected beside one-rate
grids, give C4 evidence and a caveat line but never its verdict, rows, trajectories or ablations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from validation.report import build as B

ONE_RATE = {"grid": [1e-3], "chosen": 1e-3, "scores": {"0.001": 0.8}, "metric": "accuracy"}
THREE_RATES = {
    "grid": [5e-4, 1e-3, 2e-3],
    "chosen": 2e-3,
    "scores": {"0.0005": 0.7, "0.001": 0.75, "0.002": 0.8},
    "metric": "accuracy",
}
BASE = {
    "full": [0.90, 0.91, 0.92],
    "head_only": [0.50, 0.52, 0.51],
    "gelora": [0.80, 0.81, 0.82],
    "lora": [0.79, 0.82, 0.80],
    "geolora": [0.79, 0.80, 0.83],
}


def _rate_dir(
    gridfix: Any, path: Path, scores: dict[str, list[float]], lr_grid: list[float], **kw: Any
) -> Path:
    gridfix.write_grid(path, {"sst2": scores}, lr_selection=THREE_RATES, **kw)
    grid = json.loads((path / "grid.json").read_text())
    grid["profile"]["lr_grid"] = lr_grid
    (path / "grid.json").write_text(json.dumps(grid))
    for cell in (path / "cells").glob("sst2__lora__seed*.json"):  # LoRA tried one rate here
        rec = json.loads(cell.read_text())
        cell.write_text(json.dumps({**rec, "lr_selection": ONE_RATE}))
    return path


def _claim(report: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in report["claims"] if c["id"] == cid)


def _c4_of(f: Any, gridfix: Any, path: Path, scores: dict[str, list[float]], **kw: Any) -> dict[str, Any]:
    """C4 of a report whose only run is a one-rate SST-2 grid of ``scores`` written at ``path``."""
    run = gridfix.write_grid(path, {"sst2": scores}, lr_selection=ONE_RATE, **kw)
    ctx = B.Context(profile="full", seed=0, out_dir=path.parent / f"{path.name}-report", runs_dirs=(run,))
    return _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx)))), "C4")


def test_rate_dirs_are_told_apart_by_their_profile(tmp_path: Path, gridfix: Any) -> None:
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    multi = _rate_dir(gridfix, tmp_path / "multi", BASE, [0.5, 1.0, 2.0])
    assert not B.is_rate_selected(one) and B.is_rate_selected(multi)
    assert not B.is_rate_selected(tmp_path / "nothing")
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one, multi))
    assert ctx.rate_dirs == (multi,) and ctx.collected_dirs == (one,)
    # a multi-rate grid alone is the main evidence, not a check
    alone = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(multi,))
    assert alone.rate_dirs == () and alone.collected_dirs == (multi,)


def test_rate_check_adds_evidence_and_a_caveat_but_not_the_verdict(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    # at the selected rates GeLoRA is lower on every seed, and one seed ends below the head-only floor
    rated = dict(BASE, gelora=[0.78, 0.30, 0.79], geolora=[0.80, 0.81, 0.82])
    multi = _rate_dir(gridfix, tmp_path / "multi", rated, [0.5, 1.0, 2.0])
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one, multi))
    data = B._clean(B.section_grid(ctx))
    assert "multi" not in data["source"]
    gelora = next(r for r in data["rows"] if r["method"] == "gelora")
    assert abs(gelora["mean"] - 0.81) < 1e-12  # the one-rate grid's row, not the rate check's
    assert data["paper_rate_check"]["table"]["sst2"]["gelora"]["per_seed"][1]["primary"] == 0.30
    c4 = _claim(f.make_report(grid=f.sec(data)), "C4")
    assert c4["verdict"] == "holds within estimator error"  # the one-rate ties decide it
    line = next(e for e in c4["evidence"] if e.startswith("Rate check"))
    assert "GeLoRA 0.0005/0.001/0.002 scoring 0.7000/0.7500/0.8000 -> 0.002" in line
    assert "(one run per rate, accuracy on the held-out part; a tie goes to the smaller rate)" in line
    assert "GeLoRA lower on 3 of 3 seeds" in line
    assert "below the head-only floor (0.510): GeLoRA seed 1 (0.300)" in line
    assert "LoRA" not in line.replace("GeLoRA", "").replace("GeoLoRA", "")  # LoRA selected no rate: no pair
    assert any(c.startswith("Rate check (SST-2") and "Not in the verdict" in c for c in c4["caveats"])
    assert c4["numbers"]["rate_check/sst2/gelora-geolora/lower_on"] == [3, 3]


def test_a_rate_check_pair_without_an_interval_is_named_with_why(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    """A baseline whose selected rate's seeds are all unconverged leaves its pair undetermined: the rate check
    names it and why (it was left out, as RTE's GeLoRA - AdaLoRA was on MiniLM-L6)."""
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    unconverged = {("sst2", "geolora", s): False for s in range(3)}
    multi = _rate_dir(gridfix, tmp_path / "multi", BASE, [0.5, 1.0, 2.0], converged=unconverged)
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one, multi))
    c4 = _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx)))), "C4")
    line = next(e for e in c4["evidence"] if e.startswith("Rate check, SST-2: GeLoRA - GeoLoRA"))
    assert line.startswith("Rate check, SST-2: GeLoRA - GeoLoRA undetermined (GeoLoRA: 3 seeds unconverged).")
    assert "GeoLoRA 0.0005/0.001/0.002 scoring 0.7000/0.7500/0.8000 -> 0.002" in line
    assert any("GeLoRA - GeoLoRA undetermined (GeoLoRA: 3 seeds unconverged)" in c for c in c4["caveats"])
    assert "rate_check/sst2/gelora-geolora" not in c4["numbers"]


def test_a_rate_check_pair_with_one_common_seed_or_an_uninformative_task_says_why(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    """One usable common seed gives a difference but no interval: the line says undetermined and why, as
    the README table does, not a bare difference; an uninformative task (no floor) is named as such."""
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    single = {("sst2", "geolora", s): False for s in (1, 2)}
    multi = _rate_dir(gridfix, tmp_path / "multi", BASE, [0.5, 1.0, 2.0], converged=single)
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one, multi))
    c4 = _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx)))), "C4")
    line = next(e for e in c4["evidence"] if e.startswith("Rate check, SST-2: GeLoRA - GeoLoRA"))
    assert line.startswith("Rate check, SST-2: GeLoRA - GeoLoRA undetermined (GeoLoRA: 2 seeds unconverged).")
    assert "no CI" not in line
    no_floor = {k: v for k, v in BASE.items() if k != "head_only"}
    multi2 = _rate_dir(gridfix, tmp_path / "multi2", no_floor, [0.5, 1.0, 2.0], converged=single)
    ctx2 = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep2", runs_dirs=(one, multi2))
    c4b = _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx2)))), "C4")
    line2 = next(e for e in c4b["evidence"] if e.startswith("Rate check, SST-2: GeLoRA - GeoLoRA"))
    assert "undetermined (GeoLoRA: 2 seeds unconverged; task uninformative)" in line2


def test_a_rate_check_pair_short_of_seeds_says_how_many_have_run(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    """A rate-check method with fewer seeds than its task (a shard merged early) leaves its pair
    undetermined, and the line says how many seeds have run rather than giving a difference."""
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    multi = _rate_dir(gridfix, tmp_path / "multi", dict(BASE, geolora=BASE["geolora"][:2]), [0.5, 1.0, 2.0])
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one, multi))
    c4 = _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx)))), "C4")
    line = next(e for e in c4["evidence"] if e.startswith("Rate check, SST-2: GeLoRA - GeoLoRA"))
    assert line.startswith("Rate check, SST-2: GeLoRA - GeoLoRA undetermined (GeoLoRA: 2 of 3 seeds run).")
    assert "rate_check/sst2/gelora-geolora" not in c4["numbers"]
    # seed 2 planned for every method and run by none: the merged rate-check summary keeps it
    planned = {m: [*xs[:2], None] for m, xs in BASE.items()}
    multi2 = _rate_dir(gridfix, tmp_path / "multi2", planned, [0.5, 1.0, 2.0])
    ctx2 = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep2", runs_dirs=(one, multi2))
    c4b = _claim(f.make_report(grid=f.sec(B._clean(B.section_grid(ctx2)))), "C4")
    line2 = next(e for e in c4b["evidence"] if e.startswith("Rate check, SST-2: GeLoRA - GeoLoRA"))
    assert "undetermined (GeLoRA: 2 of 3 seeds run; GeoLoRA: 2 of 3 seeds run)" in line2


def test_no_rate_check_without_a_multi_rate_dir(f: Any, tmp_path: Path, gridfix: Any) -> None:
    one = gridfix.write_grid(tmp_path / "one", {"sst2": BASE}, lr_selection=ONE_RATE)
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=(one,))
    data = B._clean(B.section_grid(ctx))
    assert "paper_rate_check" not in data
    c4 = _claim(f.make_report(grid=f.sec(data)), "C4")
    assert not any(e.startswith("Rate check") for e in c4["evidence"])


def test_c4_lists_cells_below_the_head_only_floor_and_keeps_them(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    failed = dict(BASE, lora=[0.79, 0.40, 0.80])  # LoRA's seed 1 ended below the floor (0.51)
    c4 = _c4_of(f, gridfix, tmp_path / "one", failed)
    assert (
        "SST-2/LoRA/seed 1: 0.400, below the head-only floor (0.510): a failed training run; kept in its "
        "pairs (it counts against its method)." in c4["evidence"]
    )
    assert c4["numbers"]["sst2/gelora-lora/n_seeds"] == 3
    assert sum("below the head-only floor" in e for e in c4["evidence"]) == 1


def test_c4_does_not_call_a_dropped_or_uninformative_cell_below_the_floor_kept(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    """A below-floor cell whose seed is dropped (unconverged), or whose task is uninformative, counts in no
    pair: the note says so instead of "kept in its pairs" (SQuAD v2.0 on MiniLM-L6, 2026-12-02)."""
    failed = dict(BASE, lora=[0.79, 0.40, 0.80])
    c4 = _c4_of(f, gridfix, tmp_path / "dropped", failed, converged={("sst2", "lora", 1): False})
    line = next(e for e in c4["evidence"] if "below the head-only floor" in e)
    assert line == (
        "SST-2/LoRA/seed 1: 0.400, below the head-only floor (0.510); its seed is dropped (unconverged), so it "
        "counts in no pair."
    )
    assert c4["numbers"]["sst2/gelora-lora/n_seeds"] == 2
    # the ceiling (full fine-tuning) below the floor: the task is uninformative
    flat = dict(failed, full=[0.50, 0.51, 0.52], head_only=[0.50, 0.52, 0.51])
    c4b = _c4_of(f, gridfix, tmp_path / "flat", flat)
    line2 = next(e for e in c4b["evidence"] if "below the head-only floor" in e)
    assert line2 == (
        "SST-2/LoRA/seed 1: 0.400, below the head-only floor (0.510); its task is uninformative, so it counts in "
        "no verdict."
    )
    # both (SQuAD v2.0's case): the dropped seed is the reason given
    c4c = _c4_of(f, gridfix, tmp_path / "both", flat, converged={("sst2", "lora", 1): False})
    line3 = next(e for e in c4c["evidence"] if "below the head-only floor" in e)
    assert line3.endswith("; its seed is dropped (unconverged), so it counts in no pair.")


def test_c4_below_floor_note_of_a_cell_whose_partner_is_dropped_or_of_an_ablation(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    """A converged below-floor cell whose seed no pair uses (GeLoRA's seed 1 dropped) counts in no pair; an
    ablation's cells sit in no C4 pair at all, so C4 lists none of them."""
    failed = dict(BASE, lora=[0.79, 0.40, 0.80], gelora_permuted=[0.80, 0.30, 0.81])
    c4 = _c4_of(f, gridfix, tmp_path / "partner", failed, converged={("sst2", "gelora", 1): False})
    lines = [e for e in c4["evidence"] if "below the head-only floor" in e]
    assert lines == [
        "SST-2/LoRA/seed 1: 0.400, below the head-only floor (0.510); no pair uses its seed (the other method's "
        "seed is dropped), so it counts in no pair."
    ]


def test_c4_says_when_adapters_score_above_the_full_fine_tuning_ceiling(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    # full fine-tuning (mean 0.80) below LoRA (0.85) and GeLoRA (0.81), above GeoLoRA (0.79)
    low_ceiling = dict(
        BASE,
        full=[0.80, 0.79, 0.81],
        lora=[0.85, 0.84, 0.86],
        gelora=[0.81, 0.80, 0.82],
        geolora=[0.78, 0.79, 0.80],
    )
    c4 = _c4_of(f, gridfix, tmp_path / "one", low_ceiling)
    assert (
        "SST-2: LoRA 0.850, GeLoRA 0.810 above the mean of full fine-tuning (0.800): the ceiling is the "
        "protocol's reference run, not an upper bound of the task." in c4["evidence"]
    )
    # the usual case (BASE: full fine-tuning above every adapter) adds no such line
    c4 = _c4_of(f, gridfix, tmp_path / "two", BASE)
    assert not any("above the mean of full fine-tuning" in e for e in c4["evidence"])


def test_the_above_ceiling_line_reads_the_verdicts_seeds_and_names_only_c4_methods(
    f: Any, tmp_path: Path, gridfix: Any
) -> None:
    # full fine-tuning's seed 2 (0.95) is unconverged: the ceiling is the mean of seeds 0-1 (0.80), as the
    # verdicts compute it; LoRA's unconverged seed 0 (0.99) does not lift its mean (0.80 -> not above);
    # GeLoRA's ablation is above the ceiling but is not a C4 method, so it is not named
    scores = dict(
        BASE,
        full=[0.80, 0.80, 0.95],
        lora=[0.99, 0.80, 0.80],
        gelora=[0.84, 0.85, 0.86],
        geolora=[0.70, 0.71, 0.72],
        gelora_permuted=[0.90, 0.90, 0.90],
    )
    conv = {("sst2", "full", 2): False, ("sst2", "lora", 0): False}
    c4 = _c4_of(f, gridfix, tmp_path / "one", scores, converged=conv)
    lines = [e for e in c4["evidence"] if "above the mean of full fine-tuning" in e]
    assert lines == [
        "SST-2: GeLoRA 0.850 above the mean of full fine-tuning (0.800): the ceiling is the protocol's "
        "reference run, not an upper bound of the task."
    ]
    # without a full fine-tuning run there is no ceiling to compare with
    no_full = {m: v for m, v in scores.items() if m != "full"}
    c4 = _c4_of(f, gridfix, tmp_path / "two", no_full)
    assert not any("above the mean of full fine-tuning" in e for e in c4["evidence"])


def test_the_rate_text_gives_each_rates_held_out_score_and_size() -> None:
    """How close a selection was is part of the check: one selection run per rate, scored on n examples; a
    rate without a score (a diverged selection run) says so rather than hiding the others."""
    from validation.report.claims import _rates_text, _selection_basis

    sel = {**THREE_RATES, "heldout": {"n": 249}}
    assert _rates_text(sel) == "0.0005/0.001/0.002 scoring 0.7000/0.7500/0.8000 -> 0.002"
    partial = {**sel, "scores": {"0.0005": 0.7, "0.001": None, "0.002": 0.8}}
    assert _rates_text(partial) == "0.0005/0.001/0.002 scoring 0.7000/none/0.8000 -> 0.002"
    assert _rates_text({**sel, "scores": {}}) == "0.0005/0.001/0.002 -> 0.002"
    assert (
        _selection_basis(sel)
        == "one run per rate, accuracy on 249 held-out examples; a tie goes to the smaller rate"
    )
    assert _selection_basis({"metric": "matthews_correlation"}).startswith(
        "one run per rate, MCC on the held-out"
    )
