"""C4, C6 and section 5 from paper-protocol grids (fake run directories through the real grid section)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from validation.report import build as B
from validation.report.claims import HOLDS, HOLDS_WITHIN_ERROR, NOT_REPRODUCED, NOT_TESTED
from validation.report.render_md import Figure, Heading, Notice, document, render_markdown, visible

GOOD = {  # informative (ceiling far above floor); GeLoRA clearly above every baseline
    "full": [0.90, 0.91, 0.92],
    "head_only": [0.50, 0.52, 0.51],
    "gelora": [0.80, 0.81, 0.82],
    "lora": [0.70, 0.705, 0.715],
    "adalora": [0.72, 0.73, 0.735],
    "geolora": [0.60, 0.62, 0.61],
}


def _grid_data(tmp_path: Path, dirs: list[Path]) -> dict[str, Any]:
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / "rep", runs_dirs=tuple(dirs))
    return B.section_grid(ctx)


def _claim(report: dict[str, Any], cid: str) -> dict[str, Any]:
    return next(c for c in report["claims"] if c["id"] == cid)


def _report(f, tmp_path, gridfix, scores, **kw) -> dict[str, Any]:
    run = gridfix.write_grid(tmp_path / "paper", scores, **kw)
    return f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [run]))))


def test_c4_holds_on_informative_tasks_and_states_the_protocol(f, tmp_path, gridfix):
    no_ref = {k: v for k, v in GOOD.items() if k not in ("full", "head_only")}
    r = _report(f, tmp_path, gridfix, {"sst2": GOOD, "rte": dict(no_ref, lora=[0.9, 0.9, 0.9])})
    c4 = _claim(r, "C4")
    # RTE (GeLoRA far below LoRA there) is uninformative, so it cannot decide the verdict
    assert c4["verdict"] == HOLDS
    assert re.match(
        r"GeLoRA - \w+ on SST-2: \+0\.\d{3} \[\+0\.\d{3}, \+0\.\d{3}\], 3 seeds, converged", c4["key"]["text"]
    )
    assert c4["key"]["n"] == 3 and c4["key"]["ci"][0] > 0
    assert c4["exclusions"] == "uninformative: RTE"
    assert "paper protocol" in c4["setup"] and "seeds 0-2" in c4["setup"] and "test-model" in c4["setup"]
    rows = {(row[0], row[1]): row[5] for row in c4["table"]["rows"]}
    assert rows[("RTE", "LoRA")] == "excluded (task uninformative)" and rows[("SST-2", "LoRA")] == "better"
    assert c4["evidence"][0] == "Better on 3, tie on 0, worse on 0 of 3 informative task/baseline pairs."


def test_c4_names_what_the_campaign_did_not_run(f, tmp_path, gridfix):
    """C4's evidence lists, per model, the campaign tasks and C4 methods without any cell (out of every pair
    and count), a whole task as "every method"; the exclusions cell of page 1 is unchanged by it."""
    rte = {m: xs for m, xs in GOOD.items() if m not in ("adalora", "geolora")}
    r = _report(f, tmp_path, gridfix, {"sst2": GOOD, "rte": rte})
    c4 = _claim(r, "C4")
    line = next(e for e in c4["evidence"] if e.startswith("Not run under the paper protocol"))
    assert line.endswith(
        "test-model: CoLA, MRPC, STS-B, QNLI, SQuAD v1.1, SQuAD v2.0 (every method); RTE (AdaLoRA, GeoLoRA)."
    )
    assert c4["exclusions"] == "none (every task informative, every cell converged)"  # page 1: unchanged


def test_c4_names_the_gaps_of_every_model_and_none_where_all_ran(f, tmp_path, gridfix):
    """A first model that ran every campaign task gets no gap; a further model's gaps are named with it, tasks
    lacking the same methods together in the campaign's order."""
    from validation.finetune.verdicts import CAMPAIGN_TASKS

    full = gridfix.write_grid(tmp_path / "a", {t: GOOD for t in CAMPAIGN_TASKS}, model="small-model")
    no_ada = {m: xs for m, xs in GOOD.items() if m != "adalora"}
    big = gridfix.write_grid(
        tmp_path / "b", {"sst2": GOOD, "mrpc": no_ada, "qnli": no_ada}, model="big-model"
    )
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [full, big]))))
    lines = [e for e in _claim(r, "C4")["evidence"] if e.startswith("Not run under the paper protocol")]
    assert len(lines) == 1 and "small-model" not in lines[0]
    assert lines[0].endswith(
        "big-model: CoLA, STS-B, RTE, SQuAD v1.1, SQuAD v2.0 (every method); MRPC, QNLI (AdaLoRA)."
    )
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [full]))))
    assert not any(e.startswith("Not run under") for e in _claim(r, "C4")["evidence"])


def test_c4_worse_tie_and_no_informative_task(f, tmp_path, gridfix):
    worse = dict(GOOD, lora=[0.85, 0.86, 0.87])
    assert _claim(_report(f, tmp_path / "a", gridfix, {"sst2": worse}), "C4")["verdict"] == NOT_REPRODUCED
    tie = dict(GOOD, lora=[0.79, 0.83, 0.80])
    assert _claim(_report(f, tmp_path / "b", gridfix, {"sst2": tie}), "C4")["verdict"] == HOLDS_WITHIN_ERROR
    flat = dict(GOOD, full=[0.5, 0.52, 0.51])
    c4 = _claim(_report(f, tmp_path / "c", gridfix, {"sst2": flat}), "C4")
    assert c4["verdict"] == NOT_TESTED and "no informative task" in c4["key"]["text"]


def test_c4_drops_unconverged_and_unrecorded_seeds(f, tmp_path, gridfix):
    conv = {("sst2", "lora", 0): False, ("sst2", "adalora", 1): gridfix.MISSING}
    c4 = _claim(_report(f, tmp_path, gridfix, {"sst2": GOOD}, converged=conv), "C4")
    assert c4["exclusions"] == (
        "seeds dropped: 1 convergence not recorded (SST-2/AdaLoRA), 1 unconverged (SST-2/LoRA)"
    )
    assert c4["numbers"]["sst2/gelora-lora/n_seeds"] == 2
    assert c4["numbers"]["sst2/gelora-adalora/n_seeds"] == 2
    assert any("seed 0: unconverged; dropped" in e for e in c4["evidence"])


def test_c4_baseline_with_every_seed_unconverged_is_undetermined(f, tmp_path, gridfix):
    conv = {("sst2", "adalora", s): False for s in range(3)}
    c4 = _claim(_report(f, tmp_path, gridfix, {"sst2": GOOD}, converged=conv), "C4")
    row = next(r for r in c4["table"]["rows"] if r[:2] == ["SST-2", "AdaLoRA"])
    assert row[2:] == ["—", "no CI (no usable common seed)", "0", "undetermined"]
    assert c4["exclusions"] == "seeds dropped: 3 unconverged (SST-2/AdaLoRA)"
    assert "(1 undetermined: fewer than 2 usable seeds)" in c4["evidence"][0]


def test_c6_reports_the_paper_protocol_average(f, tmp_path, gridfix):
    r = _report(f, tmp_path, gridfix, {"sst2": GOOD, "squad_v1": GOOD})
    c6 = _claim(r, "C6")
    assert c6["verdict"] == NOT_TESTED  # not DeBERTaV3
    assert c6["key"]["text"] == "ours: GeLoRA 0.810 over 1 task(s) (test-model); paper 87.92"
    assert c6["numbers"]["average/tasks"] == ["sst2"]
    assert "SQuAD v1.1 (not a GLUE task)" in c6["exclusions"] and "SST-2" not in c6["exclusions"]


def test_short_and_paper_grids_are_kept_apart(f, tmp_path, gridfix):
    short = gridfix.write_grid(
        tmp_path / "short", {"sst2": {"gelora": [0.1, 0.1], "lora": [0.9, 0.9]}}, profile="gpu"
    )
    paper = gridfix.write_grid(tmp_path / "paper", {"sst2": GOOD})
    data = B._clean(_grid_data(tmp_path, [short, paper]))
    assert [(x["profile"], x["paper"]) for x in data["runs"]] == [("gpu", False), ("paper", True)]
    keys = sorted((r["task"], r["method"], r["profile"]) for r in data["rows"])
    assert ("sst2", "lora", "gpu") in keys and ("sst2", "lora", "paper") in keys
    r = f.make_report(grid=f.sec(data))
    assert _claim(r, "C4")["verdict"] == HOLDS  # the short grid (GeLoRA far below) does not enter
    md, _, figures = B.render_all(r)
    assert "## 5. Fine-tuning under the paper protocol" in md
    assert "appendix D" in md and "| gpu |" in md and "| paper |" in md
    # the short grid is explained in the appendix, after the paper protocol's section
    assert md.index("**A short, unconverged schedule** (profile gpu)") > md.index("## 5. Fine-tuning")
    assert "What the short schedule shows" in md
    assert "grid_scores" not in figures


def test_section_opens_with_the_forest_plot_and_omits_missing_curves(f, tmp_path, gridfix):
    r = _report(f, tmp_path, gridfix, {"sst2": GOOD})
    blocks = document(r)
    i = next(k for k, b in enumerate(blocks) if isinstance(b, Heading) and b.anchor == "sec-grid")
    assert isinstance(blocks[i + 1], Figure) and blocks[i + 1].stem == "paired_differences"
    notices = [b.text for b in blocks if isinstance(b, Notice)]
    assert any("loss_curves: not drawn — no cell of the paper-protocol grid recorded" in t for t in notices)
    _, _, figures = B.render_all(r)
    assert "paired_differences" in figures and "loss_curves" not in figures


def test_paper_figures_have_alt_text_and_rebuild_byte_for_byte(f, tmp_path, gridfix):
    r = _report(f, tmp_path, gridfix, {"sst2": GOOD, "stsb": GOOD}, curves=True)
    out = tmp_path / "out"
    B.write_documents(r, out)
    assert (out / "figures" / "paired_differences.png").is_file()
    assert (out / "figures" / "loss_curves.png").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    imgs = re.findall(r"<img [^>]*>", html)
    assert len(imgs) == len(list((out / "figures").glob("*.png")))
    assert all(len(re.search(r'alt="([^"]*)"', i).group(1)) > 10 for i in imgs)
    again = tmp_path / "again"
    B.rebuild_from(out / "report.json", again)
    for name in ("report.md", "report.html", "report.json"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    for p in (out / "figures").glob("*.png"):
        assert (again / "figures" / p.name).read_bytes() == p.read_bytes(), p.name
    # page 1 stays short with the paper protocol too
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    for c in rep["claims"]:
        for cell in (c["key"]["text"], c["setup"], c["exclusions"]):
            assert len(visible(cell)) <= 120, cell


@pytest.mark.parametrize("with_loss", [True, False])
def test_stsb_plateau_sentence_uses_the_report_numbers(with_loss):
    from validation.report.render_md import stsb_plateau

    rows = [
        {"task": "stsb", "method": "gelora", "mean": 0.05, "values": [0.01, 0.09]},
        {"task": "stsb", "method": "lora", "mean": 0.7, "values": [0.7, 0.7]},
    ]
    if with_loss:
        rows[0]["train_loss"] = [2.8, 2.7]
        rows[1]["train_loss"] = [2.1, 2.2]
    text = stsb_plateau(rows)
    assert text is not None and "0.010-0.090 over 2 seed(s)" in text and "lora reaches 0.700" in text
    if with_loss:
        assert "final training loss is 2.700-2.800, lora's 2.100-2.200" in text
    else:
        assert "docs/validation.md" in text
    rows[0]["values"] = [0.5, 0.6]
    assert stsb_plateau(rows) is None  # no plateau: nothing to explain


def test_learning_rates_say_whether_they_were_selected(f, tmp_path, gridfix):
    run = gridfix.write_grid(tmp_path / "paper", {"sst2": GOOD})
    one = {"grid": [0.001], "chosen": 0.001, "scores": {"0.001": 0.8}, "metric": "accuracy"}
    three = {"grid": [0.0005, 0.001, 0.002], "chosen": 0.002, "scores": {}, "metric": "accuracy"}
    for seed, score in enumerate(GOOD["lora"]):
        gridfix.write_cell(run, "sst2", "lora", seed, score, lr_selection=one)
    for seed, score in enumerate(GOOD["gelora"]):
        gridfix.write_cell(run, "sst2", "gelora", seed, score, lr_selection=three)
    md, _, _ = B.render_all(f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [run])))))
    assert "SST-2 / LoRA: learning rate 0.001 (the default rate: a one-rate grid, nothing selected)" in md
    assert "SST-2 / GeLoRA: learning rate 0.002 (selected on held-out train from 0.0005, 0.001, 0.002)" in md


def _set_lora_r(run: Path, r: int, params: int) -> None:
    """Turn a fake paper grid into one at adapter budget rank ``r`` (plan and every cell's budget)."""
    plan = json.loads((run / "grid.json").read_text())
    plan["profile"]["lora_r"] = r
    (run / "grid.json").write_text(json.dumps(plan))
    for cell in (run / "cells").glob("*.json"):
        c = json.loads(cell.read_text())
        c["budget"]["trainable_adapter_params"] = params
        cell.write_text(json.dumps(c))


def test_another_budget_enters_score_vs_budget_not_c4(f, tmp_path, gridfix):
    """A paper grid at --lora-r 2 where GeLoRA is far below LoRA: C4 (at r = 8) is not touched by it, and
    section 5 shows both budgets side by side."""
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD})
    _set_lora_r(r8, 8, 800)
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": dict(GOOD, gelora=[0.3, 0.31, 0.32])})
    _set_lora_r(r2, 2, 200)
    for order in ([r8, r2], [r2, r8]):  # whichever comes last, C4 stays at r = 8
        data = _grid_data(tmp_path, order)
        assert data["paper_protocol"]["lora_r"] == 8
        assert [b["lora_r"] for b in data["paper_budgets"]] == [2, 8]
        assert {run["lora_r"]: run["in_c4"] for run in data["runs"]} == {2: False, 8: True}
        r = f.make_report(grid=f.sec(B._clean(data)))
        assert _claim(r, "C4")["verdict"] == HOLDS
    by_r = {b["lora_r"]: b["scores"]["sst2"] for b in data["paper_budgets"]}
    assert by_r[2]["gelora"]["mean"] == pytest.approx(0.31) and by_r[2]["gelora"]["budget_params"] == 200
    assert by_r[8]["gelora"]["n"] == 3 and by_r[8]["gelora"]["seeds"] == [0, 1, 2]
    # both budgets' rows survive the merge of the appendix table
    assert sum(1 for row in data["rows"] if row["method"] == "gelora") == 2
    md = visible(render_markdown(document(r)))
    assert "Score against adapter budget" in md and "| task | method | r = 2 | r = 8 |" in md
    assert " ± 0.01 (n=3, 200 params) |" in md and " ± 0.01 (n=3, 800 params) |" in md
    from validation.report.figures import budget_series

    series = budget_series(r)
    assert [x[0] for x in series["sst2"]["gelora"]] == [2, 8]
    assert series["sst2"]["gelora"][0][1] == pytest.approx(0.31)
    assert any(isinstance(b, Figure) and b.stem == "score_vs_budget" for b in document(r))
    _, _, figures = B.render_all(r)
    assert figures["score_vs_budget"].startswith(b"\x89PNG")


def test_a_further_models_second_budget_has_its_own_table(f, tmp_path, gridfix):
    """The second budget of a model that is not the first given (MPNet-base's r = 2 beside MiniLM's r = 8):
    its scores reach the score-vs-budget table and figure, named with the model; C4 stays at r = 8 for both
    models; a model with one budget has no table."""
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    _set_lora_r(small, 8, 800)
    big8 = gridfix.write_grid(tmp_path / "big8", {"sst2": GOOD}, model="big-model")
    _set_lora_r(big8, 8, 800)
    big2 = gridfix.write_grid(
        tmp_path / "big2", {"sst2": dict(GOOD, gelora=[0.3, 0.31, 0.32])}, model="big-model"
    )
    _set_lora_r(big2, 2, 200)
    data = _grid_data(tmp_path, [small, big8, big2])
    assert [(b["model"], b["lora_r"], b["c4_lora_r"]) for b in data["paper_budgets"]] == [
        ("big-model", 2, 8),
        ("big-model", 8, 8),
    ]
    assert data["paper_protocol"]["model"] == "small-model" and "lora_r" not in data["paper_protocol"]
    assert data["paper_protocol_more"][0]["lora_r"] == 8
    r = f.make_report(grid=f.sec(B._clean(data)))
    md = visible(render_markdown(document(r)))
    assert "Score against adapter budget on big-model (" in md and "C4 uses the r = 8 grids only." in md
    assert md.count("| task | method | r = 2 | r = 8 |") == 1
    # GeLoRA paired with each baseline at both budgets: at r = 2 far below LoRA (0.31 vs 0.71), above at 8
    r2, r8 = (b["pairs"]["sst2"]["lora"] for b in data["paper_budgets"])
    assert r2["diff"] == pytest.approx(0.31 - (0.70 + 0.705 + 0.715) / 3) and r2["verdict"] == "worse"
    assert r8["verdict"] == "better" and r8["n"] == 3
    assert "full" not in data["paper_budgets"][0]["pairs"]["sst2"]  # no adapter budget, no pair
    line = next(p for p in md.split("\n\n") if p.startswith("GeLoRA against each baseline at every budget"))
    assert "SST-2, GeLoRA − LoRA: r = 2: -0.3967 [" in line and "worse (n = 3); r = 8 (C4): +0.1033 [" in line
    # the supplementary pairs read family-wise: the three at r = 2 (p far below 5 %) stay decided; the r = 8
    # (C4) pairs are not in that family
    assert (
        "over the 3 GeLoRA pairs above at a rank other than C4's that carry a p-value and whose task is "
        "informative at C4's rank, every model together: 3 decided at 95 % alone: " in md
    )
    assert (
        "after Holm SST-2, GeLoRA − AdaLoRA at r = 2 on big-model; SST-2, GeLoRA − GeoLoRA at r = 2 on "
        "big-model; SST-2, GeLoRA − LoRA at r = 2 on big-model stay decided." in md
    )
    from validation.report.figures import _budget_model, budget_series

    assert budget_series(r)["sst2"]["gelora"][0] == (2, pytest.approx(0.31), pytest.approx(0.01))
    assert _budget_model(r) == "big-model"
    assert B.render_all(r)[2]["score_vs_budget"].startswith(b"\x89PNG")
    # both models at two budgets: one table each, the figure's panels name the model
    small2 = gridfix.write_grid(tmp_path / "small2", {"sst2": GOOD}, model="small-model")
    _set_lora_r(small2, 2, 200)
    both = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big8, big2, small2]))))
    md = visible(render_markdown(document(both)))
    assert md.count("| task | method | r = 2 | r = 8 |") == 2
    assert "over the 6 GeLoRA pairs above at a rank other than C4's that carry a p-value and" in md
    assert "on small-model (" in md and "on big-model (" in md
    assert sorted(budget_series(both)) == ["sst2, big-model", "sst2, small-model"]
    assert _budget_model(both) is None


def test_every_supplementary_pair_is_listed_even_without_a_c4_partner() -> None:
    """The per-pair list names every pair at a rank other than C4's, with "no pair" at a rank that has none
    (the baseline did not run there); a pair only at C4's rank is not listed (C4's table shows it); a pair
    without a difference reads as its verdict, with "no usable common seed" where n is 0."""
    from validation.report.render_md import _budget_pair_paras

    def pair(diff: float | None, verdict: str, n: int) -> dict:
        ci = None if diff is None else [diff - 0.01, diff + 0.01]
        return {"diff": diff, "ci": ci, "n": n, "verdict": verdict, "p": None if diff is None else 0.5}

    budgets = [
        {
            "lora_r": 2,
            "pairs": {"rte": {"adalora": pair(-0.0094, "tie", 5), "geolora": pair(None, "undetermined", 0)}},
        },
        {"lora_r": 8, "pairs": {"rte": {"lora": pair(0.01, "tie", 5), "geolora": pair(0.02, "tie", 5)}}},
    ]
    (para,) = _budget_pair_paras(budgets, {"rte"}, 8)
    assert (
        "RTE, GeLoRA − AdaLoRA: r = 2: -0.0094 [" in para.text
        and "tie (n = 5); r = 8 (C4): no pair." in para.text
    )
    assert (
        "RTE, GeLoRA − GeoLoRA: r = 2: undetermined (no usable common seed); r = 8 (C4): +0.0200 ["
        in para.text
    )
    assert "GeLoRA − LoRA" not in para.text  # only at C4's rank
    assert _budget_pair_paras(budgets[1:], {"rte"}, 8) == []
    # a pair only above C4's rank is listed; one only in a directory without a rank (merged into C4's) is not
    above = [*budgets[1:], {"lora_r": 16, "pairs": {"rte": {"lora": pair(0.03, "better", 5)}}}]
    (para,) = _budget_pair_paras(above, {"rte"}, 8)
    assert "RTE, GeLoRA − LoRA: r = 8 (C4): +0.0100 [" in para.text and "r = 16: +0.0300 [" in para.text
    unranked = [{"lora_r": None, "pairs": {"rte": {"lora": pair(0.03, "better", 5)}}}, budgets[1]]
    assert _budget_pair_paras(unranked, {"rte"}, 8) == []


def test_the_supplementary_pairs_are_read_family_wise() -> None:
    """Holm over the GeLoRA pairs listed at ranks other than C4's (below and above it), of tasks informative
    at C4's rank, all models together: not Bonferroni (p = 0.01, 0.02, 0.04 all stay); two pairs decided
    alone at p = 0.03 do not stay among three; pairs at C4's rank, of a task trained at one rank only (not
    listed) or of an uninformative task, and undetermined ones (no p-value) are not in the family."""
    from validation.report.render_md import _budget_familywise

    def pair(verdict: str, p: float | None) -> dict:
        return {"diff": 0.01, "ci": [0.0, 0.02], "n": 5, "verdict": verdict, "p": p}

    def budget(r: int, pairs: dict) -> dict:
        scores = {t: {"gelora": {"mean": 0.8, "n": 5}} for t in pairs}
        return {"lora_r": r, "c4_lora_r": 8, "scores": scores, "pairs": pairs}

    def groups(p2: float, p16: float, p_big: float) -> dict:
        return {
            "small": [
                budget(2, {"rte": {"lora": pair("better", p2), "adalora": pair("undetermined", None)}}),
                budget(8, {"rte": {"lora": pair("better", 0.0001)}, "sst2": {"lora": pair("tie", 0.5)}}),
                budget(16, {"rte": {"geolora": pair("worse", p16)}}),
                # CoLA at r = 2 only: not listed, not counted, however small its p
                budget(2, {"cola": {"lora": pair("worse", 0.0001)}}),
            ],
            "big": [
                budget(2, {"mrpc": {"lora": pair("tie", p_big)}, "sst2": {"lora": pair("worse", 0.0001)}}),
                budget(8, {"mrpc": {}, "sst2": {}}),
            ],
        }

    informative = {"small": {"rte", "cola"}, "big": {"mrpc"}}  # big's SST-2 uninformative
    (para,) = _budget_familywise(groups(0.03, 0.03, 0.4), informative)
    assert (
        "over the 3 GeLoRA pairs above at a rank other than C4's that carry a p-value (1 listed without one: "
        "fewer than two common seeds, or not every seed run) and whose task is informative" in para.text
    )
    assert (
        "2 decided at 95 % alone: RTE, GeLoRA − LoRA at r = 2 on small (better, p = 0.03), RTE, GeLoRA − "
        "GeoLoRA at r = 16 on small (worse, p = 0.03); after Holm none stays decided." in para.text
    )
    (para,) = _budget_familywise(groups(0.01, 0.02, 0.04), informative)
    assert para.text.endswith(
        "after Holm RTE, GeLoRA − LoRA at r = 2 on small; RTE, GeLoRA − GeoLoRA at r = 16 on small; MRPC, "
        "GeLoRA − LoRA at r = 2 on big stay decided."
    )
    (para,) = _budget_familywise(groups(0.001, 0.3, 0.5), informative)
    assert para.text.endswith("after Holm RTE, GeLoRA − LoRA at r = 2 on small stays decided.")
    assert _budget_familywise(groups(0.01, 0.02, 0.04), {}) == []


def test_the_family_wise_line_leaves_out_a_task_without_ceiling_and_floor(f, tmp_path, gridfix):
    """From the grids themselves: a task without full fine-tuning and head-only runs is uninformative at C4's
    rank, so its r = 2 pairs are listed but not in the family-wise count; the informative task's are."""
    bare = {m: v for m, v in GOOD.items() if m not in ("full", "head_only")}
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD, "mrpc": bare})
    _set_lora_r(r8, 8, 800)
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": GOOD, "mrpc": bare})
    _set_lora_r(r2, 2, 200)
    md = visible(
        render_markdown(document(f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [r8, r2]))))))
    )
    assert "MRPC, GeLoRA − LoRA: r = 2: " in md and "SST-2, GeLoRA − LoRA: r = 2: " in md
    assert "over the 3 GeLoRA pairs above at a rank other than C4's that carry a p-value and whose task" in md


def test_a_pair_at_another_rank_waits_for_every_seed(f, tmp_path, gridfix):
    """C4's whole-seed-set rule at every rank: AdaLoRA at r = 2 with two of the task's three seeds (a first
    shard) makes GeLoRA − AdaLoRA there undetermined, with no difference and no p-value, out of the
    family-wise count; the other r = 2 pairs are decided as before."""
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD})
    _set_lora_r(r8, 8, 800)
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": dict(GOOD, adalora=[0.72, 0.73])})
    _set_lora_r(r2, 2, 200)
    data = _grid_data(tmp_path, [r8, r2])
    at2 = next(b for b in data["paper_budgets"] if b["lora_r"] == 2)["pairs"]["sst2"]
    assert at2["adalora"]["verdict"] == "undetermined" and at2["adalora"]["diff"] is None
    assert at2["adalora"]["p"] is None and at2["adalora"]["partial"]["adalora"]["missing"] == [2]
    assert at2["lora"]["verdict"] == "better" and at2["lora"]["p"] is not None
    md = visible(render_markdown(document(f.make_report(grid=f.sec(B._clean(data))))))
    assert (
        "SST-2, GeLoRA − AdaLoRA: r = 2: undetermined (n = 2; AdaLoRA: 2 of 3 seeds run); r = 8 (C4): " in md
    )
    assert (
        "over the 2 GeLoRA pairs above at a rank other than C4's that carry a p-value (1 listed without one:"
        in md
    )
    # GeLoRA short of a seed makes every pair of the task wait; the seed set is that of any method of the task
    r2b = gridfix.write_grid(tmp_path / "r2b", {"sst2": dict(GOOD, gelora=[0.80, 0.81])})
    _set_lora_r(r2b, 2, 200)
    at2 = next(b for b in _grid_data(tmp_path, [r8, r2b])["paper_budgets"] if b["lora_r"] == 2)["pairs"][
        "sst2"
    ]
    assert {m: pd["verdict"] for m, pd in at2.items()} == dict.fromkeys(
        ("adalora", "geolora", "lora"), "undetermined"
    )
    assert at2["lora"]["partial"] == {"gelora": {"ran": 2, "of": 3, "missing": [2]}}


def test_a_cell_at_another_rank_without_a_convergence_record_is_dropped_as_in_c4(f, tmp_path, gridfix):
    """Section 5 keeps a cell by C4's rule at every rank: at r = 2 LoRA's seed 0 records no convergence, so
    LoRA's score and GeLoRA − LoRA there use seeds 1 and 2 only (as C4 would)."""
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD})
    _set_lora_r(r8, 8, 800)
    conv = {("sst2", "lora", 0): gridfix.MISSING}
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": GOOD}, converged=conv)
    _set_lora_r(r2, 2, 200)
    at2 = next(b for b in _grid_data(tmp_path, [r8, r2])["paper_budgets"] if b["lora_r"] == 2)
    assert at2["scores"]["sst2"]["lora"]["seeds"] == [1, 2] and at2["scores"]["sst2"]["lora"]["n"] == 2
    assert at2["scores"]["sst2"]["lora"]["mean"] == pytest.approx((0.705 + 0.715) / 2)
    assert at2["pairs"]["sst2"]["lora"]["n"] == 2 and at2["pairs"]["sst2"]["adalora"]["n"] == 3


def test_a_pair_without_a_usable_common_seed_is_undetermined_at_every_rank(f, tmp_path, gridfix):
    """AdaLoRA ran SST-2 and MRPC at both ranks, every cell unconverged on SST-2 at r = 8 (C4's rank) and on
    MRPC at r = 2: section 5 lists the pair as C4 does, undetermined with n = 0 and no p-value ("no usable
    common seed"), not as a missing pair; GeoLoRA, not run on MRPC at r = 8, still reads "no pair" there."""
    no_geo = {m: v for m, v in GOOD.items() if m != "geolora"}
    conv8 = {("sst2", "adalora", s): False for s in range(3)}
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD, "mrpc": no_geo}, converged=conv8)
    _set_lora_r(r8, 8, 800)
    conv2 = {("mrpc", "adalora", s): False for s in range(3)}
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": GOOD, "mrpc": GOOD}, converged=conv2)
    _set_lora_r(r2, 2, 200)
    data = _grid_data(tmp_path, [r8, r2])
    at = {b["lora_r"]: b["pairs"] for b in data["paper_budgets"]}
    assert at[8]["sst2"]["adalora"] == {
        "diff": None,
        "ci": None,
        "n": 0,
        "seeds": [],
        "verdict": "undetermined",
        "p": None,
    }
    assert at[2]["mrpc"]["adalora"]["n"] == 0 and at[2]["mrpc"]["adalora"]["p"] is None
    assert "geolora" not in at[8]["mrpc"] and at[2]["sst2"]["adalora"]["verdict"] == "better"
    r = f.make_report(grid=f.sec(B._clean(data)))
    c4_row = next(row for row in _claim(r, "C4")["table"]["rows"] if row[:2] == ["SST-2", "AdaLoRA"])
    assert c4_row[-1] == "undetermined"
    md = visible(render_markdown(document(r)))
    assert re.search(
        r"SST-2, GeLoRA − AdaLoRA: r = 2: \+[^;]*; r = 8 \(C4\): undetermined \(no usable common seed\)\.", md
    )
    assert "MRPC, GeLoRA − AdaLoRA: r = 2: undetermined (no usable common seed); r = 8 (C4): +" in md
    assert re.search(r"MRPC, GeLoRA − GeoLoRA: r = 2: \+[^;]*; r = 8 \(C4\): no pair\.", md)
    # counted among the pairs listed without a p-value, not in the family
    assert "(1 listed without one: fewer than two common seeds, or not every seed run)" in md


def test_gelora_without_a_kept_seed_leaves_every_pair_of_the_task_undetermined(f, tmp_path, gridfix):
    """GeLoRA ran SST-2 at r = 2 but every cell of it is unconverged: each baseline's pair there is
    undetermined with n = 0 (as C4's would be), not left out, and the line prints it."""
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD})
    _set_lora_r(r8, 8, 800)
    conv2 = {("sst2", "gelora", s): False for s in range(3)}
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": GOOD}, converged=conv2)
    _set_lora_r(r2, 2, 200)
    data = _grid_data(tmp_path, [r8, r2])
    at2 = next(b for b in data["paper_budgets"] if b["lora_r"] == 2)
    assert at2["scores"]["sst2"]["gelora"]["n"] == 0
    assert {m: (pd["verdict"], pd["n"], pd["p"]) for m, pd in at2["pairs"]["sst2"].items()} == dict.fromkeys(
        ("adalora", "geolora", "lora"), ("undetermined", 0, None)
    )
    md = visible(render_markdown(document(f.make_report(grid=f.sec(B._clean(data))))))
    assert "SST-2, GeLoRA − LoRA: r = 2: undetermined (no usable common seed); r = 8 (C4): +" in md


def test_a_directory_without_a_rank_is_c4s_in_section_5_too(f, tmp_path, gridfix):
    """C4 merges a paper directory whose profile has no rank into its rank; section 5's C4 column does the
    same (no "r = None" column), the later directory winning there as in C4."""
    r8 = gridfix.write_grid(tmp_path / "r8", {"sst2": GOOD})
    _set_lora_r(r8, 8, 800)
    late = gridfix.write_grid(tmp_path / "late", {"sst2": dict(GOOD, lora=[0.95, 0.96, 0.97])})
    plan = json.loads((late / "grid.json").read_text())
    plan["profile"].pop("lora_r", None)
    (late / "grid.json").write_text(json.dumps(plan))
    r2 = gridfix.write_grid(tmp_path / "r2", {"sst2": GOOD})
    _set_lora_r(r2, 2, 200)
    data = _grid_data(tmp_path, [r8, late, r2])
    assert [b["lora_r"] for b in data["paper_budgets"]] == [2, 8]
    at8 = data["paper_budgets"][1]
    assert len(at8["sources"]) == 2 and at8["pairs"]["sst2"]["lora"]["verdict"] == "worse"


def test_one_budget_has_no_budget_table(f, tmp_path, gridfix):
    data = _grid_data(tmp_path, [gridfix.write_grid(tmp_path / "p", {"sst2": GOOD})])
    assert "paper_budgets" not in data and "lora_r" not in data["paper_protocol"]
    r = f.make_report(grid=f.sec(B._clean(data)))
    assert "Score against adapter budget" not in render_markdown(document(r))
    from validation.report.figures import budget_series

    assert budget_series(r) == {} and "score_vs_budget" not in B.render_all(r)[2]


def test_c4_says_when_every_method_ran_at_its_default_rate(f, tmp_path, gridfix):
    one = {"grid": [5e-4], "chosen": 5e-4, "metric": "accuracy", "scores": {"0.0005": 0.8}}
    c4 = _claim(_report(f, tmp_path / "a", gridfix, {"sst2": GOOD}, lr_selection=one), "C4")
    assert c4["setup"].endswith("default rates (none selected)")
    assert any(
        c.startswith("Learning rates: every method trained at its default rate") for c in c4["caveats"]
    )
    three = dict(one, grid=[2.5e-4, 5e-4, 1e-3])
    c4 = _claim(_report(f, tmp_path / "b", gridfix, {"sst2": GOOD}, lr_selection=three), "C4")
    assert "default learning rates" not in c4["setup"]
    assert not any(c.startswith("Learning rates") for c in c4["caveats"])


def test_c4_names_a_baseline_that_trained_below_its_budget(f, tmp_path, gridfix):
    run = gridfix.write_grid(tmp_path / "paper", {"sst2": GOOD})
    for path in sorted((run / "cells").glob("sst2__geolora__*.json")):
        cell = json.loads(path.read_text())
        cell["method_info"] = {"summary": {"mean_params": 25.0}}  # budget 100 in the fixture
        path.write_text(json.dumps(cell))
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [run]))))
    lines = [e for e in _claim(r, "C4")["evidence"] if "adapter parameters on average" in e]
    assert lines == [
        "SST-2/GeoLoRA: 25 adapter parameters on average over training (25% of the 100 budget, mean over 3 seed(s))."
    ]


def test_c4_names_a_further_models_baseline_below_its_budget_with_the_model(f, tmp_path, gridfix):
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    big = gridfix.write_grid(tmp_path / "big", {"sst2": GOOD}, model="big-model")
    for path in sorted((big / "cells").glob("sst2__geolora__*.json")):
        cell = json.loads(path.read_text())
        cell["method_info"] = {"summary": {"mean_params": 30.0}}  # budget 100 in the fixture
        path.write_text(json.dumps(cell))
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big]))))
    lines = [e for e in _claim(r, "C4")["evidence"] if "adapter parameters on average" in e]
    assert lines == [
        "SST-2 (big-model)/GeoLoRA: 30 adapter parameters on average over training (30% of the 100 budget, "
        "mean over 3 seed(s))."
    ]


def test_familywise_line_keeps_only_what_survives_holm():
    from validation.report.claims import familywise_line

    def pair(verdict: str, p: float) -> dict:
        return {"verdict": verdict, "p": p, "diff": 0.01, "ci": [0.0, 0.02], "n": 5}

    decided = [
        ("STS-B", "geolora", pair("worse", 0.002)),  # 0.002 <= 0.05 / 4
        ("MRPC", "lora", pair("better", 0.02)),  # 0.02 > 0.05 / 3: Holm stops here
        ("RTE", "lora", pair("tie", 0.30)),
        ("CoLA", "lora", pair("tie", 0.90)),
    ]
    line, numbers = familywise_line(decided)
    assert line == (
        "Family-wise (Holm over the 4 decided pairs, 5% chance of any false 'better' or 'worse'): 1 of the 2 "
        "pairs decided at 95% each stay decided: GeLoRA - GeoLoRA on STS-B worse (p = 0.002); the rest read "
        "as ties at that level."
    )
    assert numbers == {
        "familywise/m": 4,
        "familywise/kept": ["STS-B: GeLoRA-geolora"],
        "familywise/better": 0,
        "familywise/worse": 1,
    }
    assert familywise_line([("RTE", "lora", {"verdict": "tie", "p": None})]) == (None, {})


def test_tie_reach_line_says_how_large_a_deficit_the_ties_allow():
    from validation.report.claims import tie_reach_line

    def pair(verdict: str, lo: float, hi: float) -> dict:
        return {"verdict": verdict, "p": 0.5, "diff": (lo + hi) / 2, "ci": [lo, hi], "n": 5}

    decided = [
        ("STS-B", "lora", pair("tie", -0.003, 0.004)),  # narrow: excludes a one-point deficit
        ("RTE", "lora", pair("tie", -0.0845, 0.0051)),  # wide
        ("MRPC", "adalora", pair("tie", 0.001 - 0.01, 0.02)),  # -0.009: within one point
        ("MRPC", "lora", pair("better", 0.002, 0.017)),  # not a tie: not counted
        ("CoLA", "lora", pair("tie", 0.0, 0.03)),  # touches 0 from above: allows no deficit
    ]
    line, numbers = tie_reach_line(decided)
    assert line == (
        "A tie is not a shown equality: the 95% CIs of the 4 tie(s) still allow a GeLoRA deficit of up to "
        "0.0000 (CoLA/LoRA) to 0.0845 (RTE/LoRA); 3 of 4 exclude a deficit larger than 0.01 (one point of "
        "the primary metric). No equivalence margin was fixed before the runs, so none is read as 'equal'."
    )
    assert numbers == {"ties/n": 4, "ties/max_deficit": 0.0845, "ties/within_point": 3}
    one, _ = tie_reach_line(decided[1:2])
    assert one is not None and "allow a GeLoRA deficit of up to 0.0845 (RTE/LoRA);" in one
    assert tie_reach_line(decided[3:4]) == (None, {})
    # what the line prints is what it counts: 0.01004 prints 0.0100 and is within one point
    edge, n_edge = tie_reach_line([("SST-2", "lora", pair("tie", -0.01004, 0.02))])
    assert edge is not None and "0.0100 (SST-2/LoRA)" in edge and n_edge["ties/within_point"] == 1
    # a collapsed metric's interval (NaN) is not a tie that excludes anything: left out and named
    nan_pair = {"verdict": "tie", "p": None, "diff": float("nan"), "ci": [float("nan"), float("nan")], "n": 5}
    line2, numbers2 = tie_reach_line([*decided, ("STS-B", "geolora", nan_pair)])
    assert numbers2 == numbers and line2 is not None
    assert line2.endswith("Left out (interval not finite): STS-B/GeoLoRA.")
    assert tie_reach_line([("STS-B", "geolora", nan_pair)]) == (None, {})


def test_c4_says_how_far_its_ties_reach_in_evidence_and_caveats(f, tmp_path, gridfix):
    tie = dict(GOOD, lora=[0.79, 0.83, 0.80])
    c4 = _claim(_report(f, tmp_path, gridfix, {"sst2": tie}), "C4")
    assert c4["numbers"]["ties/n"] >= 1
    assert any(e.startswith("A tie is not a shown equality") for e in c4["evidence"])
    assert any(c.startswith("A tie is not a shown equality") for c in c4["caveats"])


def test_c4_reads_its_pairs_family_wise_too(f, tmp_path, gridfix):
    c4 = _claim(_report(f, tmp_path, gridfix, {"sst2": GOOD}), "C4")
    assert c4["numbers"]["familywise/m"] >= 1
    assert any(e.startswith("Family-wise (Holm over the") for e in c4["evidence"])
    assert any(c.startswith("Family-wise (Holm over the") for c in c4["caveats"])


def test_dropped_seeds_name_where_up_to_two_pairs():
    from validation.report.claims import _dropped_text

    assert _dropped_text("unconverged", ["RTE/AdaLoRA"] * 5) == "5 unconverged (RTE/AdaLoRA)"
    three = ["RTE/AdaLoRA", "CoLA/LoRA", "MRPC/GeLoRA", "RTE/AdaLoRA"]
    assert _dropped_text("unconverged", three) == "4 unconverged (3 task/method pairs)"


def _selection(task: str, method: str, seed: int) -> dict[str, Any]:
    """A one-rate selection record whose run at the chosen rate carries a held-out curve (AdaLoRA's rises
    in its tail: unconverged)."""
    rising = method == "adalora"
    curve = [[10 * (k + 1), 0.5 + (0.03 * k if rising else 0.1 * (k > 0))] for k in range(10)]
    conv = {"converged": not rising, "curve": curve, "tail": 0.3, "tol": 0.01, "metric": "accuracy"}
    return {"grid": [5e-4], "chosen": 5e-4, "metric": "accuracy", "runs": {"0.0005": {"convergence": conv}}}


def test_heldout_curves_come_from_each_methods_chosen_selection_run(f, tmp_path, gridfix):
    from validation.report.figures import heldout_curve_series

    r = _report(f, tmp_path, gridfix, {"sst2": GOOD}, lr_selection=_selection)
    series = heldout_curve_series(r)
    assert sorted(series["sst2"]) == sorted(GOOD)
    assert series["sst2"]["adalora"]["converged"] is False and series["sst2"]["lora"]["converged"] is True
    assert series["sst2"]["lora"]["points"][-1] == [100, pytest.approx(0.6)]
    assert series["sst2"]["lora"]["rate"] == 5e-4 and series["sst2"]["lora"]["tail"] == 0.3
    blocks = document(r)
    assert any(isinstance(b, Figure) and b.stem == "heldout_curves" for b in blocks)
    _, _, figures = B.render_all(r)
    assert figures["heldout_curves"].startswith(b"\x89PNG")


def test_heldout_curves_absent_without_selection_records(f, tmp_path, gridfix):
    from validation.report.figures import heldout_curve_series

    r = _report(f, tmp_path, gridfix, {"sst2": GOOD})
    assert heldout_curve_series(r) == {}
    notices = [b.text for b in document(r) if isinstance(b, Notice)]
    assert any(t.startswith("figure heldout_curves: not drawn") for t in notices)
    _, _, figures = B.render_all(r)
    assert "heldout_curves" not in figures


def test_ceiling_and_floor_print_four_decimals(f, tmp_path, gridfix):
    from validation.report.render_md import score

    assert score(0.30996) == "0.3100" and score(0.037085) == "0.0371" and score(None) == "—"
    md = visible(render_markdown(document(_report(f, tmp_path, gridfix, {"sst2": GOOD}))))
    assert "| SST-2 | accuracy | 0.9100 | 0.5100 |" in md


def test_two_models_are_never_merged_and_both_count_in_c4(f, tmp_path, gridfix):
    """Paper grids of two models on the same task: each keeps its own pairs (the second never replaces the
    first), C4 counts both, labelled, and section 5 tabulates the second model."""
    tie = dict(GOOD, lora=[0.79, 0.83, 0.80])
    small = gridfix.write_grid(tmp_path / "small", {"sst2": tie}, model="small-model")
    big = gridfix.write_grid(
        tmp_path / "big", {"sst2": dict(GOOD, lora=[0.85, 0.86, 0.87])}, model="big-model"
    )
    data = _grid_data(tmp_path, [small, big])
    assert data["paper_protocol"]["model"] == "small-model"
    assert [s["model"] for s in data["paper_protocol_more"]] == ["big-model"]
    assert {run["model"] for run in data["runs"]} == {"small-model", "big-model"}
    # both models' LoRA rows survive the merge of the appendix table
    assert sorted(r["model"] for r in data["rows"] if r["method"] == "lora") == ["big-model", "small-model"]
    r = f.make_report(grid=f.sec(B._clean(data)))
    c4 = _claim(r, "C4")
    assert c4["numbers"]["sst2/gelora-lora"] == pytest.approx(0.81 - (0.79 + 0.83 + 0.80) / 3)
    assert c4["numbers"]["big-model/sst2/gelora-lora"] == pytest.approx(0.81 - 0.86)
    rows = {(row[0], row[1]): row[5] for row in c4["table"]["rows"]}
    assert rows[("SST-2", "LoRA")] == "tie" and rows[("SST-2 (big-model)", "LoRA")] == "worse"
    # the second model's worse pair decides the verdict, and the key names where it is
    assert c4["verdict"] == NOT_REPRODUCED
    assert c4["key"]["text"].startswith("GeLoRA - LoRA on SST-2 (big-model): -0.050")
    assert c4["setup"] == "small-model (SST-2) + big-model (SST-2), paper protocol, seeds 0-2"
    assert any(e.startswith("big-model: better on") for e in c4["evidence"])
    assert "small-model and big-model" in c4["caveats"][0]
    md = visible(render_markdown(document(r)))
    assert "Under the paper protocol on big-model (SST-2; seeds 0, 1, 2)" in md
    assert "| SST-2 | LoRA | 0.8600 ± 0.0100 (n=3) | -0.0500 [" in md
    # a method whose seeds all left its pairs says why and what they scored, never as a compared mean
    r2 = copy.deepcopy(r)
    for rec in r2["sections"]["grid"]["data"]["paper_protocol_more"][0]["table"]["sst2"]["lora"]["per_seed"]:
        rec["converged"] = False
    md2 = visible(render_markdown(document(r2)))
    assert "| SST-2 | LoRA | — (3 unconverged: 0.8600 ± 0.0100, not compared) | — |" in md2
    # the first model's tables (C5/C6's grid table) never mix in the second model's rows
    from validation.report.claims import _grid_table

    table = _grid_table(r, paper=True)
    assert table is not None and table["sst2"]["lora"]["model"] == "small-model"


def test_the_forest_plot_draws_every_models_pairs(f, tmp_path, gridfix):
    """The paired-differences figure draws C4's pairs of both models, the second model's labelled."""
    from validation.report.figures import fig_paired_differences, paired_difference_items

    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    big = gridfix.write_grid(
        tmp_path / "big", {"sst2": dict(GOOD, lora=[0.85, 0.86, 0.87])}, model="big-model"
    )
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big]))))
    items = paired_difference_items(r)
    labels = [(t, b) for t, b, _ in items]
    assert ("sst2 (small-model)", "lora") in labels and ("sst2 (big-model)", "lora") in labels
    big_lora = next(pd for t, b, pd in items if (t, b) == ("sst2 (big-model)", "lora"))
    assert big_lora["diff"] == pytest.approx(0.81 - 0.86) and big_lora["verdict"] == "worse"
    assert fig_paired_differences(r) is not None


def test_c6_gives_each_models_average(f, tmp_path, gridfix):
    """C6 with paper grids of two models: each model's GeLoRA average in the key (the second one is the
    size class of the paper's model), the first model's numbers unprefixed, the second's under its name;
    what each leaves out named per model."""
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD, "squad_v1": GOOD}, model="small-model")
    big = gridfix.write_grid(
        tmp_path / "big", {"sst2": dict(GOOD, gelora=[0.9, 0.9, 0.9])}, model="big-model"
    )
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big]))))
    c6 = _claim(r, "C6")
    assert c6["verdict"] == NOT_TESTED
    assert c6["key"]["text"] == (
        "ours: GeLoRA 0.810 over 1 task(s) (small-model), 0.900 over 1 (big-model); paper 87.92"
    )
    assert c6["numbers"]["average/gelora"] == pytest.approx(0.81)
    assert c6["numbers"]["big-model/average/gelora"] == pytest.approx(0.9)
    assert c6["setup"] == "small-model and big-model, paper protocol, mean of each task's primary metric"
    assert c6["exclusions"] == "left out: SQuAD v1.1 (small-model) (reasons below)"
    assert "Left out of the average: SQuAD v1.1 (not a GLUE task)." in c6["evidence"]
    assert "small-model and big-model (DeBERTaV3 is not available offline)" in c6["evidence"][-1]
    # the campaign's GLUE tasks that no method ran are named per model, not averaged
    unrun = [e for e in c6["evidence"] if e.startswith("Not in the average, not run")]
    assert unrun == [
        f"Not in the average, not run under the paper protocol (no cell of any method) ({m}): CoLA, MRPC, "
        "STS-B, RTE, QNLI."
        for m in ("small-model", "big-model")
    ]


def test_the_first_paper_directory_given_names_the_first_model(f, tmp_path, gridfix):
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    big = gridfix.write_grid(tmp_path / "big", {"sst2": GOOD}, model="big-model")
    data = _grid_data(tmp_path, [big, small])
    assert data["paper_protocol"]["model"] == "big-model"
    assert [s["model"] for s in data["paper_protocol_more"]] == ["small-model"]
    one = _grid_data(tmp_path, [small])
    assert "paper_protocol_more" not in one


def test_ratios_never_pair_two_models_and_name_the_model(f, tmp_path, gridfix):
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    big = gridfix.write_grid(tmp_path / "big", {"sst2": dict(GOOD, lora=[0.4, 0.4, 0.4])}, model="big-model")
    data = _grid_data(tmp_path, [small, big])
    lora = {q["model"]: q["score_ratio"] for q in data["ratios"] if q["peer"] == "lora"}
    assert lora == {
        "small-model": pytest.approx(0.81 / ((0.70 + 0.705 + 0.715) / 3)),
        "big-model": pytest.approx(0.81 / 0.4),
    }
    md = visible(render_markdown(document(f.make_report(grid=f.sec(B._clean(data))))))
    assert "| task | peer | profile | model | score ratio |" in md


def test_default_rates_are_every_method_only_when_every_model_ran_at_one_rate(f, tmp_path, gridfix):
    one = {"grid": [5e-4], "chosen": 5e-4, "metric": "accuracy", "scores": {"0.0005": 0.8}}
    three = dict(one, grid=[2.5e-4, 5e-4, 1e-3])
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model", lr_selection=one)
    big = gridfix.write_grid(tmp_path / "big", {"sst2": GOOD}, model="big-model", lr_selection=three)
    c4 = _claim(f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big])))), "C4")
    assert "default rates" not in c4["setup"]
    rates = next(c for c in c4["caveats"] if c.startswith("Learning rates:"))
    assert rates.startswith(
        "Learning rates: AdaLoRA (small-model), full FT (small-model), GeLoRA (small-model),"
    )
    assert "big-model" not in rates
    both = gridfix.write_grid(tmp_path / "big1", {"sst2": GOOD}, model="big-model", lr_selection=one)
    c4 = _claim(f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, both])))), "C4")
    assert c4["setup"].endswith("default rates (none selected)")


def test_curve_figures_show_every_model(f, tmp_path, gridfix):
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model", curves=True)
    big = gridfix.write_grid(tmp_path / "big", {"sst2": GOOD}, model="big-model", curves=True)
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big]))))
    from validation.report.figures import loss_curve_series

    series = loss_curve_series(r)
    # with two models every panel names its model, as the forest plot's labels do
    assert list(series) == ["sst2 (small-model)", "sst2 (big-model)"]
    assert set(series["sst2 (big-model)"]) == set(GOOD)
    assert B.render_all(r)[2]["loss_curves"].startswith(b"\x89PNG")


def test_a_missing_cell_of_a_further_model_is_named_in_c4(f, tmp_path, gridfix):
    """A planned cell without a result (a killed worker) is named in C4's exclusions and evidence with its
    model; its pairs stay undetermined until it has run (a pair is decided on every seed or not at all)."""
    small = gridfix.write_grid(tmp_path / "small", {"sst2": GOOD}, model="small-model")
    big = gridfix.write_grid(
        tmp_path / "big", {"sst2": dict(GOOD, adalora=[0.72, None, 0.735])}, model="big-model"
    )
    data = _grid_data(tmp_path, [small, big])
    more = data["paper_protocol_more"][0]
    assert [(x["task"], x["method"], x["seed"]) for x in more["missing"]] == [("sst2", "adalora", 1)]
    assert data["paper_protocol"]["missing"] == []
    c4 = _claim(f.make_report(grid=f.sec(B._clean(data))), "C4")
    assert c4["exclusions"].endswith("big-model: not run: SST-2/AdaLoRA seed 1")
    assert any(
        e.startswith("SST-2 (big-model)/AdaLoRA/seed 1: not run")
        and e.endswith("its pairs stay undetermined until it has run.")
        for e in c4["evidence"]
    )
    assert "SST-2 (big-model): GeLoRA - AdaLoRA undetermined (AdaLoRA: 2 of 3 seeds run)" in " ".join(
        c4["evidence"]
    )
    # no difference over the part that has run; the complete pairs keep theirs
    assert "big-model/sst2/gelora-adalora/n_seeds" not in c4["numbers"]
    assert c4["numbers"]["big-model/sst2/gelora-lora/n_seeds"] == 3
    assert any("sst2 (big-model) / adalora / seed 1: not run" in n for n in data["notes"])


def test_c4_says_a_pair_short_of_seeds_is_undetermined_everywhere(f, tmp_path, gridfix):
    """AdaLoRA ran two of the task's three seeds (one below the floor) and full fine-tuning's seed 2 is
    planned without a result: the table row gives no interval but the seeds run, the below-floor note does
    not say "kept in its pairs", and the missing ceiling cell's note speaks of the ceiling/floor comparison."""
    scores = {"sst2": dict(GOOD, adalora=[0.72, 0.30], full=[0.90, 0.91, None], head_only=[0.5, 0.52, None])}
    c4 = _claim(_report(f, tmp_path, gridfix, scores), "C4")
    row = next(r for r in c4["table"]["rows"] if r[1] == "AdaLoRA")
    assert row[2] == "—" and row[3] == "no CI (AdaLoRA: 2 of 3 seeds run)" and row[5] == "undetermined"
    text = " ".join(c4["evidence"])
    assert (
        "SST-2/AdaLoRA/seed 1: 0.300, below the head-only floor (0.510); its pairs are undetermined" in text
    )
    assert "kept in its pairs" not in text
    assert any(
        e.startswith("SST-2/full FT/seed 2: not run")
        and e.endswith("; the ceiling/floor comparison uses the seeds it has.")
        for e in c4["evidence"]
    )
    assert any(
        e.startswith("SST-2/head_only/seed 2: not run")
        and e.endswith("; the ceiling/floor comparison uses the seeds it has.")
        for e in c4["evidence"]
    )
    assert "(1 undetermined: not every seed run)" in text
    # a GeLoRA seed below the floor counts where one of its pairs is complete (LoRA's), though another waits
    mixed = {"sst2": dict(GOOD, gelora=[0.80, 0.30, 0.82], adalora=[0.72, 0.73])}
    c4 = _claim(_report(f, tmp_path / "mixed", gridfix, mixed), "C4")
    assert (
        "SST-2/GeLoRA/seed 1: 0.300, below the head-only floor (0.510): a failed training run; kept in its pairs "
        "(it counts against its method)."
    ) in c4["evidence"]
    # every adapter short of seeds: C4 is not tested, and says why
    short = {"sst2": {m: (xs if m in ("full", "head_only") else xs[:2]) for m, xs in GOOD.items()}}
    c4 = _claim(_report(f, tmp_path / "all", gridfix, short), "C4")
    assert "Not tested: no pair with every seed run and two converged common seeds." in c4["evidence"]


def _adaptive_cell(gridfix, run, method, info, *, task="mrpc", lora_r=8, **kw):
    """A seed-0 cell of ``run`` whose ``method_info`` is ``info`` (a rank trajectory or a final allocation)
    and whose profile has budget rank ``lora_r``; ``kw`` go to ``gridfix.write_cell`` (model, profile)."""
    path = gridfix.write_cell(run, task, method, 0, 0.8, **kw)
    cell = json.loads(path.read_text())
    cell["config"]["profile"]["lora_r"] = lora_r
    cell["method_info"] = info
    path.write_text(json.dumps(cell))


def _trajectory(r0, r1):
    return {"rank_trajectory": [[0, {"a": r0, "b": r0}], [5, {"a": r1, "b": r1}]]}


def _sections(tmp_path, dirs, name="rep"):
    ctx = B.Context(profile="full", seed=0, out_dir=tmp_path / name, runs_dirs=tuple(dirs))
    return B.section_trajectories(ctx)


def test_trajectories_of_two_models_keep_apart(f, tmp_path, gridfix):
    """The same task/method/seed trained on two models gives two trajectories, the second labelled with
    its model (before, the second replaced the first)."""
    dirs = []
    for model, r0 in (("all-MiniLM-L6-v2", 4), ("big-model", 8)):
        _adaptive_cell(gridfix, tmp_path / model, "geolora", _trajectory(r0, 2), task="stsb", model=model)
        dirs.append(tmp_path / model)
    series = _sections(tmp_path, dirs)["series"]
    assert sorted(series) == ["stsb (big-model)/geolora/seed 0", "stsb/geolora/seed 0"]
    assert series["stsb/geolora/seed 0"]["total_rank"] == [8, 4]
    assert series["stsb (big-model)/geolora/seed 0"]["total_rank"] == [16, 4]


def test_trajectories_of_two_budgets_keep_apart(f, tmp_path, gridfix):
    """The same model/task/method/seed at the paper rank and at a second budget gives two trajectories, the
    second labelled with its rank (before, the r = 2 cell replaced the r = 8 one, C4's), and so do the
    notes of runs that record only their final allocation."""
    dirs = []
    for model in ("all-MiniLM-L6-v2", "big-model"):
        for r in (8, 2):
            run = tmp_path / f"{model}-r{r}"
            _adaptive_cell(gridfix, run, "geolora", _trajectory(r, 1), lora_r=r, model=model)
            _adaptive_cell(gridfix, run, "adalora", {"total_rank": 3 * r}, lora_r=r, model=model)
            dirs.append(run)
    sec = _sections(tmp_path, dirs)
    assert sorted(sec["series"]) == [
        "mrpc (big-model)/geolora/seed 0",
        "mrpc (big-model, r = 2)/geolora/seed 0",
        "mrpc (r = 2)/geolora/seed 0",
        "mrpc/geolora/seed 0",
    ]
    assert sec["series"]["mrpc/geolora/seed 0"]["total_rank"] == [16, 2]
    assert sec["series"]["mrpc (r = 2)/geolora/seed 0"]["total_rank"] == [4, 2]
    assert sec["notes"] == [
        "mrpc/adalora/seed 0: only the final allocation is recorded (total rank 24)",
        "mrpc (r = 2)/adalora/seed 0: only the final allocation is recorded (total rank 6)",
        "mrpc (big-model)/adalora/seed 0: only the final allocation is recorded (total rank 24)",
        "mrpc (big-model, r = 2)/adalora/seed 0: only the final allocation is recorded (total rank 6)",
    ]


def test_trajectories_of_two_profiles_keep_apart_and_one_profile_stays_unlabelled(f, tmp_path, gridfix):
    """A 3-epoch (gpu profile) grid's cell and the paper grid's cell of the same model/task/method/seed/rank
    give two trajectories, the non-paper one labelled with its profile (before, the later directory's
    replaced the other); a report of one profile only names its cells without it."""
    dirs = []
    for profile, r0 in (("gpu", 3), ("paper", 5)):
        info = _trajectory(r0, 1)
        _adaptive_cell(
            gridfix, tmp_path / profile, "geolora", info, profile=profile, model="all-MiniLM-L6-v2"
        )
        dirs.append(tmp_path / profile)
    series = _sections(tmp_path, dirs)["series"]
    assert sorted(series) == ["mrpc (gpu profile)/geolora/seed 0", "mrpc/geolora/seed 0"]
    assert series["mrpc (gpu profile)/geolora/seed 0"]["total_rank"] == [6, 2]
    assert series["mrpc/geolora/seed 0"]["total_rank"] == [10, 2]
    assert sorted(_sections(tmp_path, dirs[:1], "rep1")["series"]) == ["mrpc/geolora/seed 0"]


def test_final_allocation_notes_keep_the_later_directory_only(f, tmp_path, gridfix):
    """Two directories with the same AdaLoRA cell (same profile, model, rank) give one note, the later
    directory's, as a later directory's trajectory replaces an earlier one's."""
    dirs = []
    for i, total in enumerate((96, 72)):
        _adaptive_cell(gridfix, tmp_path / f"d{i}", "geolora", _trajectory(2, 1))
        _adaptive_cell(gridfix, tmp_path / f"d{i}", "adalora", {"total_rank": total})
        dirs.append(tmp_path / f"d{i}")
    assert _sections(tmp_path, dirs)["notes"] == [
        "mrpc (test-model)/adalora/seed 0: only the final allocation is recorded (total rank 72)"
    ]


def test_missing_cell_notes_name_a_second_budget(gridfix, tmp_path):
    """A planned cell without a result in an r = 2 grid is named with its rank (it would read as C4's r = 8
    cell otherwise)."""
    run = gridfix.write_grid(tmp_path / "r2", {"stsb": {"lora": [0.8, None]}}, model="all-MiniLM-L6-v2")
    grid = json.loads((run / "grid.json").read_text())
    grid["profile"]["lora_r"] = 2
    (run / "grid.json").write_text(json.dumps(grid))
    for cell_file in (run / "cells").glob("*.json"):
        cell = json.loads(cell_file.read_text())
        cell["config"]["profile"]["lora_r"] = 2
        cell_file.write_text(json.dumps(cell))
    from validation.finetune.grid import summarise

    notes = B.normalise_grid(summarise(run), str(run))["notes"]
    assert any(n.startswith("stsb (r = 2) / lora / seed 1: ") for n in notes), notes


def test_second_model_table_leaves_ablations_out_and_setup_keeps_tasks_when_shortened(f, tmp_path, gridfix):
    """Section 5's table of a further model lists the methods C4 pairs, not GeLoRA's ablations (section 6a
    compares those); C4's setup keeps each model's tasks by dropping "(none selected)" before dropping the
    tasks, and stays within page 1's 120 characters."""
    one = {"grid": [5e-4], "chosen": 5e-4, "metric": "accuracy", "scores": {"0.0005": 0.8}}
    small = gridfix.write_grid(
        tmp_path / "small",
        {t: GOOD for t in ("cola", "mrpc", "rte", "stsb")},
        model="all-MiniLM-L6-v2",
        lr_selection=one,
    )
    perm = dict(GOOD, gelora_permuted=[0.80, 0.80, 0.81])
    big = gridfix.write_grid(
        tmp_path / "big", {"mrpc": GOOD, "stsb": perm}, model="mpnet-base", lr_selection=one
    )
    r = f.make_report(grid=f.sec(B._clean(_grid_data(tmp_path, [small, big]))))
    md = visible(render_markdown(document(r)))
    assert "| STS-B | GeLoRA | 0.8100" in md
    assert "| STS-B | gelora_permuted |" not in md
    setup = _claim(r, "C4")["setup"]
    assert setup == (
        "all-MiniLM-L6-v2 (CoLA, MRPC, RTE, STS-B) + mpnet-base (MRPC, STS-B), paper protocol, seeds 0-2, "
        "default rates"
    )
    assert len(setup) <= 120
