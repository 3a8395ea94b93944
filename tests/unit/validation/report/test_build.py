"""The builder: resumable sections, atomic raw files, clear errors on corrupt files, --from byte for byte."""

from __future__ import annotations

import json

import pytest

from gelora.errors import ConfigError, ResultFileError
from validation.report import build as B


@pytest.fixture
def fake_runners(monkeypatch, f):
    """Replace the section runners by fast fakes; returns the call counter."""
    calls: dict[str, int] = {}

    def counted(name, fn):
        def run(ctx):
            calls[name] = calls.get(name, 0) + 1
            return fn(ctx)

        return run

    def not_run(ctx):
        raise B.SectionNotRun("validation.theory is not available (test)")

    def broken(ctx):
        raise RuntimeError("section exploded (test)")

    runners = {
        "estimators": counted("estimators", lambda ctx: f.estimator_section()),
        "theory": counted("theory", not_run),
        "model_profile": counted("model_profile", lambda ctx: f.profile_section([3.0, 5.0, 9.0])),
        "grid": counted("grid", lambda ctx: f.grid_section(0.8, 0.7, 0.01, 3)),
        "trajectories": counted("trajectories", broken),
    }
    monkeypatch.setattr(B, "RUNNERS", runners)
    monkeypatch.setattr(
        "validation.report.environment.collect_environment",
        lambda **kw: {**f.env, "commands": list(kw["commands"])},
    )
    return calls


def test_build_writes_all_outputs(tmp_path, fake_runners):
    path = B.build_report("quick", tmp_path / "r", command="gelora report --out r", progress=False)
    out = path.parent
    for name in ("report.json", "report.md", "report.html", "figures/estimator_accuracy.png"):
        assert (out / name).is_file(), name
    for s in B.SECTIONS:
        assert (out / "raw" / f"{s}.json").is_file()
    report = json.loads(path.read_text())
    assert report["schema"] == B.SCHEMA
    assert report["sections"]["theory"]["status"] == "not run"
    assert report["sections"]["trajectories"]["status"] == "error"
    assert "section exploded (test)" in report["sections"]["trajectories"]["reason"]
    assert report["environment"]["commands"] == ["gelora report --out r"]


def test_rerun_reuses_finished_sections_only(tmp_path, fake_runners):
    B.build_report("quick", tmp_path / "r", progress=False)
    B.build_report("quick", tmp_path / "r", progress=False)
    assert fake_runners["estimators"] == 1  # finished: reused
    assert fake_runners["theory"] == 2  # not run: tried again
    assert fake_runners["trajectories"] == 2  # error: tried again
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["sections"]["estimators"]["origin"] == "reused"
    # a different seed is a different input: recomputed
    B.build_report("quick", tmp_path / "r", seed=1, progress=False)
    assert fake_runners["estimators"] == 2
    B.build_report("quick", tmp_path / "r", seed=1, force=True, progress=False)
    assert fake_runners["estimators"] == 3
    # collecting run directories changes the grid's inputs only: the estimators are reused
    (tmp_path / "g").mkdir()
    B.build_report("quick", tmp_path / "r", runs_dir=tmp_path / "g", seed=1, progress=False)
    assert fake_runners["estimators"] == 3 and fake_runners["grid"] == 4


def test_corrupt_section_file_raises_result_file_error(tmp_path, fake_runners):
    B.build_report("quick", tmp_path / "r", progress=False)
    raw = tmp_path / "r" / "raw" / "estimators.json"
    raw.write_text('{"schema": "gelora.report.section/1", "status": "ok", "data": {')  # truncated
    with pytest.raises(ResultFileError, match="estimators.json"):
        B.build_report("quick", tmp_path / "r", progress=False)
    raw.write_text('{"something": "else"}')
    with pytest.raises(ResultFileError, match="not a report section"):
        B.build_report("quick", tmp_path / "r", progress=False)


def test_from_json_rebuilds_byte_for_byte(tmp_path, fake_runners):
    path = B.build_report("quick", tmp_path / "a", progress=False)
    B.rebuild_from(path, tmp_path / "b")
    a, b = tmp_path / "a", tmp_path / "b"
    for name in ("report.json", "report.md", "report.html"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    figs = sorted(p.name for p in (a / "figures").glob("*.png"))
    assert figs and figs == sorted(p.name for p in (b / "figures").glob("*.png"))
    for name in figs:
        assert (a / "figures" / name).read_bytes() == (b / "figures" / name).read_bytes(), name
    # in place, too
    before = (a / "report.html").read_bytes()
    B.rebuild_from(path)
    assert (a / "report.html").read_bytes() == before


def test_from_rejects_corrupt_or_foreign_json(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text("{not json")
    with pytest.raises(ResultFileError, match="corrupt"):
        B.rebuild_from(bad)
    bad.write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(ResultFileError, match="not a gelora report"):
        B.rebuild_from(bad)
    with pytest.raises(ResultFileError, match="not found"):
        B.rebuild_from(tmp_path / "missing.json")


def test_bad_arguments_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="profile"):
        B.build_report("medium", tmp_path)
    with pytest.raises(ConfigError, match="section"):
        B.build_report("quick", tmp_path, sections=["nope"])


def test_unrequested_sections_are_marked_not_run(tmp_path, fake_runners):
    path = B.build_report("quick", tmp_path / "r", sections=["estimators"], progress=False)
    report = json.loads(path.read_text())
    assert report["sections"]["grid"] == {
        "status": "not run",
        "reason": "not requested (--sections)",
        "wall_s": None,
        "origin": None,
        "computed_on": None,
        "data": None,
    }
    assert fake_runners == {"estimators": 1}
    host = report["sections"]["estimators"]["computed_on"]
    assert set(host) == {"platform", "cpu", "cpu_count", "gpu", "computed_at", "source_digest", "packages"}
    assert (
        "estimators" in (path.parent / "report.md").read_text()
        and "computed at (UTC)" in (path.parent / "report.md").read_text()
    )


def test_non_finite_numbers_are_stored_as_null():
    assert B._clean({"a": float("nan"), "b": [1.0, float("inf")], "c": (1, 2)}) == {
        "a": None,
        "b": [1.0, None],
        "c": [1, 2],
    }


def test_normalise_grid_keeps_missing_cells_as_not_run():
    summary = {
        "profile": {"model": None},
        "primary_metric": {"stsb": "pearson"},
        "table": {
            "stsb": {
                "lora": {
                    "metrics": {"pearson": {"mean": 0.5, "std": None, "n": 1, "values": [0.5]}},
                    "budget_params": [100],
                    "trainable_adapter_params": [100],
                    "wall_time_s": {"mean": 2.0},
                },
                "gelora": {
                    "metrics": {"pearson": {"mean": 0.6, "std": None, "n": 1, "values": [0.6]}},
                    "budget_params": [100],
                    "trainable_adapter_params": [98],
                    "wall_time_s": {"mean": 3.0},
                },
            }
        },
        "missing": [{"task": "stsb", "method": "adalora", "seed": 0, "reason": "failed: ValueError: x"}],
    }
    data = B.normalise_grid(summary, "test")
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["adalora"]["mean"] is None and rows["adalora"]["reason"] == "failed: ValueError: x"
    (ratio,) = data["ratios"]
    assert ratio["peer"] == "lora"
    assert ratio["score_ratio"] == pytest.approx(0.6 / 0.5)
    assert ratio["time_ratio"] == pytest.approx(1.5)
    assert ratio["budget_ratio"] == pytest.approx(0.98)


def test_ratios_pair_gelora_with_peers_of_its_own_budget():
    def row(method, budget, mean):
        return {
            "task": "mrpc",
            "method": method,
            "profile": "paper",
            "model": "m",
            "budget": budget,
            "mean": mean,
            "wall_s": None,
            "trainable_adapter_params": budget,
        }

    rows = [
        row("gelora", 8, 0.8),
        row("lora", 8, 0.5),
        row("gelora", 2, 0.6),
        row("lora", 2, 0.4),
        row("full", 8, 1.0),
    ]
    got = {(q["peer"], q["budget"]): q["score_ratio"] for q in B._gelora_ratios(rows)}
    assert got == pytest.approx({("lora", 8): 0.8 / 0.5, ("full", 8): 0.8, ("lora", 2): 0.6 / 0.4})


def test_wall_time_ratios_only_between_methods_of_one_run_of_workers():
    def row(method, span):
        return {
            "task": "mrpc",
            "method": method,
            "profile": "paper",
            "model": "m",
            "budget": 8,
            "mean": 0.8,
            "wall_s": 100.0 if method == "gelora" else 200.0,
            "trainable_adapter_params": 8,
            "source": "d",
            **({"trained_span_s": span} if span else {}),
        }

    # one queue: lora, then full, then head_only (gaps of 30 s); adalora an hour later; geolora unrecorded
    rows = [
        row("gelora", [0.0, 500.0]),
        row("lora", [10.0, 480.0]),
        row("full", [530.0, 900.0]),
        row("head_only", [930.0, 1100.0]),
        row("adalora", [4700.0, 5600.0]),
        row("geolora", None),
    ]
    B._run_spans(rows)
    assert [r.get("run_span_s") for r in rows] == [[0.0, 1100.0]] * 4 + [[4700.0, 5600.0], None]
    got = {q["peer"]: q["time_ratio"] for q in B._gelora_ratios(rows)}
    assert got["lora"] == pytest.approx(0.5) and got["head_only"] == pytest.approx(0.5)
    assert got["adalora"] is None
    assert got["geolora"] == pytest.approx(0.5)  # older grids: one directory is one run


def _summary(task, method, mean, missing=()):
    table = {}
    if mean is not None:
        table = {
            task: {
                method: {
                    "metrics": {"acc": {"mean": mean, "std": 0.1, "n": 3, "values": [mean] * 3}},
                    "budget_params": [100],
                    "trainable_adapter_params": [100],
                    "wall_time_s": {"mean": 2.0},
                }
            }
        }
    return {
        "profile": {"model": None},
        "primary_metric": {task: "acc"},
        "table": table,
        "missing": [{"task": task, "method": method, "seed": s, "reason": "failed: X"} for s in missing],
    }


def test_merge_grids_later_directory_wins_but_never_with_a_missing_row():
    a = B.normalise_grid(_summary("rte", "lora", 0.6), "collected from A")
    a["rows"] += B.normalise_grid(_summary("rte", "adalora", 0.5), "A")["rows"]
    a["rows"] += B.normalise_grid(_summary("sst2", "gelora", 0.8), "A")["rows"]
    b = B.normalise_grid(_summary("rte", "adalora", 0.55), "collected from B")
    c = B.normalise_grid(_summary("sst2", "gelora", None, missing=[0]), "collected from C")
    c["rows"] += B.normalise_grid(_summary("sst2", "lora", 0.7), "C")["rows"]
    merged = B.merge_grids([a, b, c])
    rows = {(r["task"], r["method"]): r for r in merged["rows"]}
    assert (
        rows[("rte", "adalora")]["mean"] == 0.55 and rows[("rte", "adalora")]["source"] == "collected from B"
    )
    assert rows[("rte", "lora")]["mean"] == 0.6
    assert rows[("sst2", "gelora")]["mean"] == 0.8  # C has no result for it: A's is kept
    assert any("superseded by collected from B" in n for n in merged["notes"])
    assert any("no result in collected from C" in n for n in merged["notes"])
    (ratio,) = merged["ratios"]  # recomputed on the merged rows: sst2 gelora vs lora
    assert ratio["task"] == "sst2" and ratio["score_ratio"] == pytest.approx(0.8 / 0.7)
    assert ratio["time_ratio"] is None  # wall times of different run directories are not compared
    assert [p["source"] for p in merged["profile"]["per_source"]] == [
        "collected from A",
        "collected from B",
        "collected from C",
    ]


def test_merge_grids_says_squad_not_run_only_when_no_directory_ran_it():
    glue = B.normalise_grid(_summary("rte", "lora", 0.6), "collected from A")
    squad = B.normalise_grid(_summary("squad_v1", "lora", 88.0), "collected from B")
    assert any(n.startswith("SQuAD: not run yet") for n in glue["notes"])
    for parts in ([squad, glue], [glue, squad]):
        assert not any(n.startswith("SQuAD:") for n in B.merge_grids(parts)["notes"])
    other = B.normalise_grid(_summary("sst2", "lora", 0.8), "collected from C")
    notes = B.merge_grids([glue, other])["notes"]
    assert sum(n.startswith("SQuAD: not run yet") for n in notes) == 1


def test_report_command_collects_several_run_directories(monkeypatch, tmp_path):
    seen = {}

    def fake_build(profile, out, **kw):
        seen.update(kw)
        (tmp_path / "report.json").write_text("{}")
        return tmp_path / "report.json"

    import argparse

    from validation.commands import report

    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    monkeypatch.setattr("validation.report.build.build_report", fake_build)
    args = parser.parse_args(["report", "--runs", "a", "--runs", "b"])
    assert args.func(args) == 0
    assert [str(d) for d in seen["runs_dir"]] == ["a", "b"]
    assert seen["command"].endswith("--runs a --runs b")


def test_paper_numbers_have_citation_and_no_unverified_task_values():
    paper = B.load_paper_numbers()
    assert "2412.09250" in paper["citation"]
    assert paper["glue"]["tasks"] == {}  # table text not available offline: nothing guessed
    assert paper["glue_average"]["value"] == 87.92


def test_normalise_theory_reads_properties():
    raw = {
        "schema": "x",
        "properties": [
            {
                "property": "exact_layer",
                "description": "rank bound",
                "examples": 4,
                "checks": 10,
                "failed": 0,
                "pass": True,
                "worst_margin": 2.5,
            },
            {
                "property": "estimated_layer",
                "description": "estimate bound",
                "examples": 3,
                "checks": 9,
                "failed": 1,
                "pass": False,
                "worst_margin": -0.1,
                "overshoots": 2,
                "false_failure_rate": "<= 1e-4",
            },
        ],
        "tightness": {"twonn": 1.0},
    }
    data = B._normalise_theory(raw)
    a, b = data["checks"]
    assert (a["name"], a["passed"], a["worst_margin"], a["n_cases"]) == ("exact_layer", True, 2.5, 10)
    assert b["passed"] is False and "1 of 9 checks failed" in b["details"] and "<= 1e-4" in b["details"]
    assert data["tightness"] == {"twonn": 1.0}


def test_corrupt_input_file_of_a_section_stops_the_build(tmp_path, fake_runners, monkeypatch):
    def corrupt(ctx):
        raise ResultFileError("result file runs/cells/x.json is corrupt (test)")

    monkeypatch.setitem(B.RUNNERS, "grid", corrupt)
    with pytest.raises(ResultFileError, match="x.json is corrupt"):
        B.build_report("quick", tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "raw" / "grid.json").exists()


def test_ratios_pair_gelora_only_with_peers_of_its_own_profile():
    def summary(profile, method, mean):
        s = _summary("rte", method, mean)
        s["profile"] = {"model": None, "name": profile}
        return s

    parts = [
        B.normalise_grid(summary("gpu", "lora", 0.54), "short"),
        B.normalise_grid(summary("gpu", "gelora", 0.53), "short"),
        B.normalise_grid(summary("paper", "lora", 0.58), "paper"),
        B.normalise_grid(summary("paper", "gelora", 0.55), "paper"),
    ]
    merged = B.merge_grids(parts)
    pairs = sorted((q["profile"], q["score_ratio"]) for q in merged["ratios"])
    assert [p for p, _ in pairs] == ["gpu", "paper"]  # no gpu-GeLoRA / paper-LoRA cross pairs
    assert pairs[0][1] == pytest.approx(0.53 / 0.54) and pairs[1][1] == pytest.approx(0.55 / 0.58)


def test_change_points_keep_a_step_function_exactly():
    steps = list(range(10))
    per_module = {"a": [8, 8, 16, 7, 7, 7, 7, 7, 7, 7], "b": [8, 8, 8, 8, 4, 4, 4, 4, 4, 4]}
    out = B.change_points(steps, per_module)
    assert out["steps"] == [0, 2, 3, 4, 9] and out["n_recorded"] == 10
    assert out["total_rank"] == [16, 24, 15, 11, 11]
    # the kept points reproduce every recorded value: each holds until the next kept step
    for m, vals in per_module.items():
        for t, v in zip(steps, vals, strict=True):
            i = max(j for j, s in enumerate(out["steps"]) if s <= t)
            assert out["per_module"][m][i] == v
