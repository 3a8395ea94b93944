"""Verdicts of fake grids: informative tasks, dropped seeds, missing convergence, paper profile, average."""

from __future__ import annotations

import math

import pytest

from gelora.errors import ResultFileError
from validation.finetune.grid import summarise
from validation.finetune.stats import paired_difference
from validation.finetune.verdicts import (
    UNINFORMATIVE_NO_CEILING,
    UNINFORMATIVE_NO_FLOOR,
    UNINFORMATIVE_NO_REFERENCE,
    claim_line,
    compact_summary,
    compute_verdicts,
    format_verdicts,
    main,
    merge_summaries,
    pair_lines,
    partial_reason,
    planned_seeds,
    usable_scores,
    verdicts_from_grid,
)

# ceiling well above floor; GeLoRA clearly above LoRA (better), level with AdaLoRA (tie), below GeoLoRA
INFORMATIVE = {
    "full": [0.90, 0.91, 0.92],
    "head_only": [0.50, 0.52, 0.51],
    "gelora": [0.80, 0.81, 0.82],
    "lora": [0.70, 0.705, 0.715],
    "adalora": [0.79, 0.83, 0.80],
    "geolora": [0.85, 0.86, 0.875],
}


def test_informative_task_and_pair_verdicts(tmp_path, gridfix):
    run = gridfix.write_grid(tmp_path / "g", {"sst2": INFORMATIVE})
    v = verdicts_from_grid(run)
    t = v["tasks"]["sst2"]
    assert v["paper"] and v["profile"] == "paper"
    assert t["informative"] and t["reason"] is None
    assert t["floor_gap"]["ci"][0] > 0
    assert math.isclose(t["ceiling"], 0.91) and math.isclose(t["floor"], 0.51)
    assert v["baselines"] == ["lora", "adalora", "geolora"]
    assert {b: pd["verdict"] for b, pd in t["pairs"].items()} == {
        "lora": "better",
        "adalora": "tie",
        "geolora": "worse",
    }
    # the pair is exactly the shared paired statistic over seeds 0-2
    ref = paired_difference(dict(enumerate(INFORMATIVE["gelora"])), dict(enumerate(INFORMATIVE["lora"])))
    assert t["pairs"]["lora"]["ci"] == ref["ci"] and t["pairs"]["lora"]["n"] == 3
    assert (
        v["counts"]["lora"]["line"]
        == "GeLoRA vs lora: better on 1, tie on 0, worse on 0 of 1 informative tasks"
    )
    assert v["line"] == "better on 1, tie on 1, worse on 1 of 3 informative task/baseline pairs"
    assert v["exclusions"] == [] and v["uninformative"] == []


def test_task_without_reference_runs_is_uninformative_and_excluded(tmp_path, gridfix):
    no_floor = {k: v for k, v in INFORMATIVE.items() if k != "head_only"}
    no_ceiling = {k: v for k, v in INFORMATIVE.items() if k != "full"}
    neither = {k: v for k, v in INFORMATIVE.items() if k not in ("full", "head_only")}
    grid = {"sst2": INFORMATIVE, "rte": no_floor, "mrpc": no_ceiling, "cola": neither}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "all", grid))
    assert v["tasks"]["mrpc"]["reason"] == UNINFORMATIVE_NO_CEILING
    assert v["tasks"]["cola"]["reason"] == UNINFORMATIVE_NO_REFERENCE
    run = gridfix.write_grid(tmp_path / "g", {"sst2": INFORMATIVE, "rte": no_floor})
    v = verdicts_from_grid(run)
    assert not v["tasks"]["rte"]["informative"]
    assert v["tasks"]["rte"]["reason"] == UNINFORMATIVE_NO_FLOOR  # names the run that is missing
    assert v["uninformative"] == [{"task": "rte", "reason": UNINFORMATIVE_NO_FLOOR}]
    # the pair is still computed (shown) but marked excluded and not counted
    assert v["tasks"]["rte"]["pairs"]["lora"]["excluded"] is True
    assert v["counts"]["lora"]["n"] == 1


def test_ceiling_not_clearly_above_floor_is_uninformative(tmp_path, gridfix):
    flat = dict(INFORMATIVE, full=[0.52, 0.50, 0.53], head_only=[0.51, 0.52, 0.50])
    run = gridfix.write_grid(tmp_path / "g", {"rte": flat})
    t = verdicts_from_grid(run)["tasks"]["rte"]
    assert not t["informative"]
    assert t["reason"].startswith("uninformative: ceiling not clearly above floor (full - head_only")
    assert t["floor_gap"]["ci"][0] <= 0


def test_one_reference_seed_cannot_be_clearly_above(tmp_path, gridfix):
    one = dict(INFORMATIVE, full=[0.9], head_only=[0.5])
    t = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", {"sst2": one}))["tasks"]["sst2"]
    assert not t["informative"] and "2 needed" in t["reason"]


def test_unconverged_seed_is_dropped_from_its_pairs_and_listed(tmp_path, gridfix):
    run = gridfix.write_grid(tmp_path / "g", {"sst2": INFORMATIVE}, converged={("sst2", "lora", 1): False})
    v = verdicts_from_grid(run)
    pairs = v["tasks"]["sst2"]["pairs"]
    assert pairs["lora"]["seeds"] == [0, 2] and pairs["lora"]["n"] == 2
    assert pairs["adalora"]["seeds"] == [0, 1, 2]  # GeLoRA's seed 1 is fine: other pairs keep it
    assert v["exclusions"] == [
        {"task": "sst2", "method": "lora", "seed": 1, "reason": "unconverged", "excluded": True}
    ]
    # an unconverged GeLoRA cell drops that seed from every pair
    run2 = gridfix.write_grid(tmp_path / "h", {"sst2": INFORMATIVE}, converged={("sst2", "gelora", 0): False})
    v2 = verdicts_from_grid(run2)
    assert all(pd["seeds"] == [1, 2] for pd in v2["tasks"]["sst2"]["pairs"].values())


def test_missing_convergence_excludes_under_paper_only(tmp_path, gridfix):
    miss = {("sst2", "lora", 2): gridfix.MISSING, ("sst2", "gelora", 2): None}
    paper = verdicts_from_grid(gridfix.write_grid(tmp_path / "p", {"sst2": INFORMATIVE}, converged=miss))
    assert paper["tasks"]["sst2"]["pairs"]["lora"]["seeds"] == [0, 1]
    assert paper["tasks"]["sst2"]["pairs"]["adalora"]["seeds"] == [0, 1]
    reasons = {(e["method"], e["seed"]): (e["reason"], e["excluded"]) for e in paper["exclusions"]}
    assert reasons == {
        ("lora", 2): ("convergence not recorded", True),
        ("gelora", 2): ("convergence not recorded", True),
    }
    other = verdicts_from_grid(
        gridfix.write_grid(tmp_path / "q", {"sst2": INFORMATIVE}, converged=miss, profile="gpu")
    )
    assert not other["paper"]
    assert other["tasks"]["sst2"]["pairs"]["lora"]["seeds"] == [0, 1, 2]
    assert {(e["method"], e["excluded"]) for e in other["exclusions"]} == {("lora", False), ("gelora", False)}


def test_average_over_tasks_where_all_compared_methods_have_results(tmp_path, gridfix):
    no_geo = {k: v for k, v in INFORMATIVE.items() if k != "geolora"}
    scores = {"sst2": INFORMATIVE, "mrpc": INFORMATIVE, "rte": no_geo, "squad_v1": INFORMATIVE}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", scores))
    avg = v["average"]
    assert avg["tasks"] == ["mrpc", "sst2"]
    assert avg["left_out"] == {"rte": "not run: geolora", "squad_v1": "not a GLUE task"}
    assert math.isclose(avg["methods"]["gelora"], 0.81)
    assert math.isclose(avg["methods"]["lora"], (0.70 + 0.705 + 0.715) / 3)
    assert set(avg["methods"]) == {"gelora", "lora", "adalora", "geolora"}
    # a method whose cells all ran but none is usable is named apart from one without any cell
    conv = {("rte", "geolora", s): False for s in range(3)}
    both = {"sst2": INFORMATIVE, "rte": {k: v for k, v in INFORMATIVE.items() if k != "adalora"}}
    avg2 = verdicts_from_grid(gridfix.write_grid(tmp_path / "h", both, converged=conv))["average"]
    assert avg2["left_out"]["rte"] == "not run: adalora; no usable result for geolora"
    # a method planned without a result is not "not run": it has not run every seed yet
    planned = {"sst2": INFORMATIVE, "rte": dict(INFORMATIVE, adalora=[None, None, None])}
    avg3 = verdicts_from_grid(gridfix.write_grid(tmp_path / "i", planned))["average"]
    assert avg3["left_out"]["rte"] == "no usable result for adalora"


def test_average_empty_when_no_task_qualifies(tmp_path, gridfix):
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", {"squad_v1": INFORMATIVE}))
    assert v["average"]["tasks"] == [] and v["average"]["methods"] == {}


def test_missing_cells_and_other_methods(tmp_path, gridfix):
    scores = {"sst2": dict(INFORMATIVE, gelora_permuted=[0.7, 0.71, 0.72], lora=[0.7, None, None])}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", scores))
    # an ablation of GeLoRA is not a baseline of C4 (it has its own section)
    assert v["baselines"] == ["lora", "adalora", "geolora"]
    assert "gelora_permuted" not in v["tasks"]["sst2"]["pairs"]
    pd = v["tasks"]["sst2"]["pairs"]["lora"]
    assert pd["n"] == 1 and pd["verdict"] == "undetermined"
    assert "1 undetermined" in v["counts"]["lora"]["line"]


def test_summarise_carries_per_seed_records_and_one_loss_curve(tmp_path, gridfix):
    run = gridfix.write_grid(
        tmp_path / "g", {"sst2": INFORMATIVE}, converged={("sst2", "lora", 0): False}, curves=True
    )
    gridfix.write_cell(
        run,
        "sst2",
        "gelora",
        0,
        0.80,
        lr_selection={"grid": [1e-4, 1e-3], "chosen": 1e-3, "metric": "accuracy"},
    )
    s = summarise(run)
    assert s["profile_name"] == "paper"
    e = s["table"]["sst2"]["lora"]
    assert [r["seed"] for r in e["per_seed"]] == [0, 1, 2]
    assert [r["converged"] for r in e["per_seed"]] == [False, True, True]
    assert e["per_seed"][0]["primary"] == 0.70 and e["per_seed"][0]["eval_loss"] == 0.4
    assert e["loss_curve"]["seed"] == 0 and len(e["loss_curve"]["points"]) == 12
    g = s["table"]["sst2"]["gelora"]
    assert g["per_seed"][0]["lr_selection"]["chosen"] == 1e-3
    assert g["loss_curve"]["seed"] == 1  # seed 0 was rewritten without a curve
    c = compact_summary(s)
    assert c["table"]["sst2"]["lora"]["per_seed"][0]["rule"] == "test rule"
    assert compute_verdicts(c)["tasks"] == compute_verdicts(s)["tasks"]


def test_long_loss_curves_are_thinned(tmp_path, gridfix):
    from validation.finetune.grid import LOSS_CURVE_MAX_POINTS

    run = gridfix.write_grid(tmp_path / "g", {"sst2": {"lora": [None]}})
    gridfix.write_cell(run, "sst2", "lora", 0, 0.7, loss_curve=[[k, 1.0 / (k + 1)] for k in range(1001)])
    lc = summarise(run)["table"]["sst2"]["lora"]["loss_curve"]
    assert len(lc["points"]) == LOSS_CURVE_MAX_POINTS and lc["n_points"] == 1001
    assert lc["points"][0] == [0, 1.0] and lc["points"][-1][0] == 1000


def test_merge_summaries_later_directory_wins(tmp_path, gridfix):
    a = compact_summary(summarise(gridfix.write_grid(tmp_path / "a", {"sst2": INFORMATIVE})))
    b = compact_summary(
        summarise(
            gridfix.write_grid(tmp_path / "b", {"sst2": {"lora": [0.9, 0.91, 0.92]}, "rte": INFORMATIVE})
        )
    )
    m = merge_summaries([a, b])
    assert m["profile_name"] == "paper"
    assert m["origin"]["sst2"]["lora"] == str(tmp_path / "b")
    assert m["origin"]["sst2"]["gelora"] == str(tmp_path / "a")
    assert compute_verdicts(m)["tasks"]["sst2"]["pairs"]["lora"]["verdict"] == "worse"


def test_format_and_cli(tmp_path, gridfix, capsys):
    run = gridfix.write_grid(tmp_path / "g", {"sst2": INFORMATIVE, "rte": {"gelora": [0.5], "lora": [0.5]}})
    text = format_verdicts(verdicts_from_grid(run))
    assert "sst2: ceiling" in text and UNINFORMATIVE_NO_REFERENCE in text and "average" in text
    # p-values per pair and the family-wise reading of the decided pairs (the tie has p > 0.05)
    assert "p=" in text
    fw = next(ln for ln in text.splitlines() if "family-wise" in ln)
    assert fw.startswith("  family-wise (Holm, 5% over these 3 decided pairs): ")
    assert "sst2/lora better" in fw and "sst2/geolora worse" in fw and "adalora" not in fw
    assert main([str(run)]) == 0
    assert "GeLoRA vs lora" in capsys.readouterr().out
    assert main([str(tmp_path / "nothing")]) == 2
    with pytest.raises(ResultFileError):
        verdicts_from_grid(tmp_path / "nothing")


def test_usable_scores_keeps_the_seeds_a_comparison_may_use() -> None:
    entry = {
        "per_seed": [
            {"seed": 0, "primary": 0.8, "converged": True},
            {"seed": 1, "primary": 0.9, "converged": False},  # unconverged: dropped
            {"seed": 2, "primary": None, "converged": True},  # no score
            {"seed": 3, "primary": float("nan"), "converged": True},  # collapsed metric
            {"seed": 4, "primary": 0.7},  # convergence not recorded: only outside the paper protocol
        ]
    }
    assert usable_scores(entry) == {0: 0.8}
    assert usable_scores(entry, paper=False) == {0: 0.8, 4: 0.7}
    assert usable_scores(None) == {} and usable_scores({}) == {}


def test_pair_lines_and_the_cli_pair_option(tmp_path, gridfix, capsys):
    # full fine-tuning's seed 2 unconverged: the pair uses seeds 0-1 only; on RTE one usable common seed;
    # on MRPC full fine-tuning ran one seed of two: undetermined, as compute_verdicts says
    scores = {
        "sst2": INFORMATIVE,
        "rte": {"lora": [0.6, 0.7], "full": [0.65, 0.66]},
        "mrpc": {"lora": [0.6, 0.7], "full": [0.65]},
    }
    unconverged = {("sst2", "full", 2): False, ("rte", "full", 1): False}
    run = gridfix.write_grid(tmp_path / "g", scores, converged=unconverged)
    lines = sorted(pair_lines(summarise(run), "lora", "full"), reverse=True)  # sst2, rte, mrpc
    expect = paired_difference({0: 0.70, 1: 0.705}, {0: 0.90, 1: 0.91})
    assert lines[0] == (
        f"sst2: lora - full {expect['diff']:+.4f} [{expect['ci'][0]:+.4f}, {expect['ci'][1]:+.4f}] n=2 "
        f"p={expect['p']:.2g} worse; lora lower on 2 of 2 seeds"
    )
    assert lines[1] == "rte: lora - full: fewer than two usable common seeds"
    assert lines[2] == "mrpc: lora - full: undetermined (full: 1 of 2 seeds run)"
    assert pair_lines(summarise(run), "lora", "geolora")[0].startswith("sst2: lora - geolora -0.")
    assert len(pair_lines(summarise(run), "lora", "geolora")) == 1  # rte has no geolora
    assert main([str(run), "--pair", "lora-full", "--pair", "geolora-head_only"]) == 0
    out = capsys.readouterr().out
    assert lines[0] in out and "sst2: geolora - head_only +0." in out
    assert main([str(run), "--pair", "lora-fulll"]) == 2  # a misspelt method is an error, not "no task"
    assert "--pair names method(s) fulll not in" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(run), "--pair", "lorafull"])
    assert "two method names joined by '-'" in capsys.readouterr().err


def test_pair_lines_drop_unrecorded_convergence_under_the_paper_protocol(tmp_path, gridfix):
    """Under the paper protocol a cell without a convergence record leaves the pair, as in the verdicts."""
    run = gridfix.write_grid(
        tmp_path / "g", {"sst2": INFORMATIVE}, converged={("sst2", "full", 2): gridfix.MISSING}
    )
    summary = summarise(run)
    (line,) = pair_lines(summary, "lora", "full")
    assert " n=2 " in line
    dropped = [e for e in compute_verdicts(summary)["exclusions"] if e["method"] == "full"]
    assert [(e["seed"], e["excluded"]) for e in dropped] == [(2, True)]


def test_a_non_finite_score_leaves_its_pairs_and_is_listed(tmp_path, gridfix):
    """A cell whose primary score is NaN (e.g. Pearson of a constant prediction) is excluded like an
    unconverged one: listed with its reason, its pairs computed over the other seeds, never a NaN interval."""
    summary = summarise(gridfix.write_grid(tmp_path / "g", {"sst2": INFORMATIVE}))
    for rec in summary["table"]["sst2"]["lora"]["per_seed"]:
        if rec["seed"] == 1:
            rec["primary"] = float("nan")
    v = compute_verdicts(summary)
    pair = v["tasks"]["sst2"]["pairs"]["lora"]
    assert pair["n"] == 2 and all(math.isfinite(x) for x in pair["ci"])
    ref = paired_difference({0: 0.80, 2: 0.82}, {0: 0.70, 2: 0.715})
    assert pair["ci"] == ref["ci"]
    assert [e for e in v["exclusions"] if e["method"] == "lora"] == [
        {"task": "sst2", "method": "lora", "seed": 1, "reason": "non-finite primary score", "excluded": True}
    ]
    assert usable_scores(summary["table"]["sst2"]["lora"]) == {0: 0.70, 2: 0.715}


def test_a_pair_waits_for_every_seed_of_its_task_under_the_paper_profile(tmp_path, gridfix):
    """A method that ran fewer seeds than its task (a shard merged before the rest: no plan names the other
    seeds) leaves its pairs undetermined, with no difference over the part run so far."""
    scores = {"sst2": dict(INFORMATIVE, adalora=INFORMATIVE["adalora"][:2])}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", scores))
    pd = v["tasks"]["sst2"]["pairs"]["adalora"]
    assert pd["verdict"] == "undetermined" and pd["diff"] is None and pd["ci"] is None and pd["n"] == 2
    assert pd["partial"] == {"adalora": {"ran": 2, "of": 3, "missing": [2]}}
    assert partial_reason(pd, {"adalora": "AdaLoRA"}) == "AdaLoRA: 2 of 3 seeds run"
    assert partial_reason(v["tasks"]["sst2"]["pairs"]["lora"]) is None
    # the complete pairs are decided as before; the partial one counts as undetermined, outside Holm
    assert {b: p["verdict"] for b, p in v["tasks"]["sst2"]["pairs"].items()} == {
        "lora": "better",
        "adalora": "undetermined",
        "geolora": "worse",
    }
    # counted once, as undetermined, in "of n" (a partial pair is not a fifth outcome)
    assert v["counts"]["adalora"]["line"] == (
        "GeLoRA vs adalora: better on 0, tie on 0, worse on 0 of 1 informative tasks "
        "(1 undetermined: not every seed run)"
    )
    assert v["counts"]["adalora"]["n"] == 1 and v["counts"]["adalora"]["partial"] == 1
    assert v["line"] == (
        "better on 1, tie on 0, worse on 1 of 3 informative task/baseline pairs (1 undetermined: not every "
        "seed run)"
    )
    assert "gelora - adalora: n/a no CI n=2 undetermined (adalora: 2 of 3 seeds run)" in format_verdicts(v)
    # --pair applies the rule, except to GeLoRA's ablations (their section compares on the seeds present)
    summary = summarise(
        gridfix.write_grid(
            tmp_path / "p", dict(scores, sst2=dict(scores["sst2"], gelora_permuted=INFORMATIVE["gelora"][:2]))
        )
    )
    assert pair_lines(summary, "gelora", "adalora") == [
        "sst2: gelora - adalora: undetermined (adalora: 2 of 3 seeds run)"
    ]
    assert pair_lines(summary, "gelora", "gelora_permuted")[0].startswith(
        "sst2: gelora - gelora_permuted +0."
    )


def test_a_planned_seed_without_a_result_keeps_every_pair_of_its_task_undetermined(tmp_path, gridfix):
    """Seed 2 planned for every method but run by none (killed workers): the task's seed set comes from the
    plan's missing cells too, so no pair is decided on seeds 0 and 1."""
    scores = {"sst2": {m: [*xs[:2], None] for m, xs in INFORMATIVE.items()}}
    summary = summarise(gridfix.write_grid(tmp_path / "g", scores))
    assert planned_seeds(summary, "sst2") == {0, 1, 2}
    v = compute_verdicts(summary)
    for b, pd in v["tasks"]["sst2"]["pairs"].items():
        missing = {"ran": 2, "of": 3, "missing": [2]}
        assert pd["verdict"] == "undetermined" and pd["partial"] == {"gelora": missing, b: missing}


def test_unconverged_seeds_have_run_and_other_profiles_keep_the_seeds_present(tmp_path, gridfix):
    """A seed dropped as unconverged has run (its pair is decided on the rest); outside the paper profile a
    pair uses the seeds present, as before."""
    conv = {("sst2", "adalora", 0): False}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "a", {"sst2": INFORMATIVE}, converged=conv))
    pd = v["tasks"]["sst2"]["pairs"]["adalora"]
    assert "partial" not in pd and pd["n"] == 2 and pd["diff"] is not None
    scores = {"sst2": dict(INFORMATIVE, adalora=INFORMATIVE["adalora"][:2])}
    summary = summarise(gridfix.write_grid(tmp_path / "b", scores, profile="gpu"))
    v = compute_verdicts(summary)
    pd = v["tasks"]["sst2"]["pairs"]["adalora"]
    assert "partial" not in pd and pd["n"] == 2 and pd["diff"] is not None
    # nor do the average and --pair apply the rule there
    assert v["average"]["tasks"] == ["sst2"]
    assert pair_lines(summary, "gelora", "adalora")[0].startswith("sst2: gelora - adalora -0.0050 [")


def test_whose_seeds_make_the_task_seed_set(tmp_path, gridfix):
    """The ceiling's seeds count (adapters that ran fewer are short), an ablation's do not (an extra
    permuted seed leaves every pair decided), and a planned seed of another task is not this task's."""
    two = {m: xs[:2] for m, xs in INFORMATIVE.items() if m not in ("full", "head_only")}
    scores = {"sst2": dict(two, full=INFORMATIVE["full"], head_only=INFORMATIVE["head_only"][:2])}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "a", scores))
    assert all(pd.get("partial") for pd in v["tasks"]["sst2"]["pairs"].values())
    pd = v["tasks"]["sst2"]["pairs"]["lora"]
    labels = {"gelora": "GeLoRA", "lora": "LoRA"}
    assert partial_reason(pd, labels) == "GeLoRA: 2 of 3 seeds run; LoRA: 2 of 3 seeds run"
    extra = {
        "sst2": dict(INFORMATIVE, gelora_permuted=[0.8, 0.8, 0.8, 0.8], gelora_reversed=[0.8] * 4 + [None])
    }
    summary = summarise(gridfix.write_grid(tmp_path / "b", extra))
    assert planned_seeds(summary, "sst2") == {0, 1, 2}
    assert not any(pd.get("partial") for pd in compute_verdicts(summary)["tasks"]["sst2"]["pairs"].values())
    # a seed planned without a result on RTE (seed 3, which SST-2 lacks) is RTE's, not SST-2's
    other = {"sst2": INFORMATIVE, "rte": {m: [*xs, None] for m, xs in INFORMATIVE.items()}}
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "c", other))
    assert not any(pd.get("partial") for pd in v["tasks"]["sst2"]["pairs"].values())
    assert all(pd.get("partial") for pd in v["tasks"]["rte"]["pairs"].values())


def test_a_partial_pair_of_an_uninformative_task_is_excluded_and_not_counted(tmp_path, gridfix):
    scores = {"sst2": {k: v for k, v in INFORMATIVE.items() if k != "head_only"}}
    scores["sst2"]["adalora"] = INFORMATIVE["adalora"][:2]
    v = verdicts_from_grid(gridfix.write_grid(tmp_path / "g", scores))
    pd = v["tasks"]["sst2"]["pairs"]["adalora"]
    assert pd["partial"] and pd["excluded"] and pd["verdict"] == "undetermined"
    assert v["counts"]["adalora"]["n"] == 0 and v["counts"]["adalora"]["partial"] == 0


def test_the_claim_line_says_why_pairs_are_undetermined():
    base = {"better": 1, "tie": 2, "worse": 0, "n": 5}
    assert claim_line(dict(base, undetermined=2), "lora").endswith(
        "(2 undetermined: fewer than 2 usable seeds)"
    )
    assert claim_line(dict(base, undetermined=2, partial=2), None).endswith(
        "(2 undetermined: not every seed run)"
    )
    assert claim_line(dict(base, undetermined=2, partial=1), None).endswith(
        "(2 undetermined: 1 fewer than 2 usable seeds, 1 not every seed run)"
    )
    assert "undetermined" not in claim_line(dict(base, undetermined=0, partial=0), None)


def test_the_average_leaves_out_a_task_short_of_seeds_and_merges_keep_the_planned_cells(tmp_path, gridfix):
    """A task where a compared method has not run every seed is left out of the GLUE average (its mean would
    sit beside whole-seed-set means); compact and merged summaries keep the planned cells without a result,
    so the task's seed set survives them (the rate check reads merged summaries)."""
    scores = {"sst2": INFORMATIVE, "rte": dict(INFORMATIVE, adalora=[*INFORMATIVE["adalora"][:2], None])}
    summary = summarise(gridfix.write_grid(tmp_path / "g", scores))
    v = compute_verdicts(summary)
    assert v["average"]["tasks"] == ["sst2"]
    assert v["average"]["left_out"]["rte"] == "not every seed run (adalora: 2 of 3 seeds run)"
    merged = merge_summaries([compact_summary(summary)])
    assert [(x["task"], x["method"], x["seed"]) for x in merged["missing"]] == [("rte", "adalora", 2)]
    assert compute_verdicts(merged)["tasks"]["rte"]["pairs"]["adalora"]["partial"]
    # a later directory that holds the cell drops it from the missing ones
    done = summarise(gridfix.write_grid(tmp_path / "h", {"rte": {"adalora": INFORMATIVE["adalora"]}}))
    assert merge_summaries([compact_summary(summary), compact_summary(done)])["missing"] == []


def test_campaign_gaps_name_the_methods_without_any_cell(tmp_path, gridfix):
    """C4's methods with no cell on a campaign task: a whole task when none ran, the absent methods of a task
    some ran; a method planned without a result (the summary's missing cells) is not a gap, nor is an ablation
    or a task outside the campaign."""
    from validation.finetune.verdicts import CAMPAIGN_TASKS, campaign_gaps

    every = ["gelora", "lora", "adalora", "geolora", "full", "head_only"]
    scores = {
        "sst2": dict(INFORMATIVE),
        "rte": {m: xs for m, xs in INFORMATIVE.items() if m not in ("adalora", "geolora")},
        "mrpc": dict(INFORMATIVE, geolora=[None, None, None], gelora_permuted=[0.8] * 3),
    }
    gaps = dict(campaign_gaps(summarise(gridfix.write_grid(tmp_path / "g", scores))))
    assert gaps["rte"] == ["adalora", "geolora"]
    assert "sst2" not in gaps and "mrpc" not in gaps  # geolora planned on MRPC: missing, not a gap
    assert set(gaps) == set(CAMPAIGN_TASKS) - {"sst2", "mrpc"}
    assert all(gaps[t] == every for t in CAMPAIGN_TASKS if t not in ("sst2", "mrpc", "rte"))
    assert campaign_gaps({}) == [(t, every) for t in CAMPAIGN_TASKS]
