"""ID drift during fine-tuning (issue 10, open question 3), on CPU at the runner's tiny test profile."""

import pytest

from gelora.errors import ConfigError
from gelora.ranks import ranks_from_dimensions
from validation.estimators.id_drift import IDTrajectoryCallback, drift_summary, run_id_drift


def test_drift_summary_by_hand():
    recs = [
        {"step": 0, "dims": [4.0, 6.0, 7.0], "ranks": [3, 2]},
        {"step": 5, "dims": [4.5, 6.0, 9.0], "ranks": [3, 4]},
        {"step": 10, "dims": [3.0, 6.5, 7.5], "ranks": [5, 2]},
    ]
    s = drift_summary(recs)
    assert s["max_abs_id_change"] == pytest.approx([1.0, 0.5, 2.0])
    assert s["max_rel_id_change"] == pytest.approx([0.25, 0.5 / 6, 2.0 / 7])
    assert [c["blocks_changed"] for c in s["rank_changes"]] == [0, 1, 1]
    assert s["max_rank_change"] == 2 and s["final_rank_changes"] == 1
    assert drift_summary([])["max_rank_change"] == 0


def test_schedule_and_validation():
    cb = IDTrajectoryCallback(["a text"], tokenizer=None, n_checkpoints=3)
    assert cb._schedule(8) == {2, 4, 6, 8}
    cb = IDTrajectoryCallback(["a text"], tokenizer=None, every_n_steps=3)
    assert cb._schedule(8) == {3, 6, 8}
    with pytest.raises(ConfigError):
        IDTrajectoryCallback(["a"], tokenizer=None, every_n_steps=0)
    with pytest.raises(ConfigError):
        IDTrajectoryCallback(["a"], tokenizer=None, n_checkpoints=-1)


def test_run_id_drift_records_trajectory_and_resumes(tmp_path):
    from validation.finetune.runner import get_profile

    prof = get_profile("test", train_size=48, max_length=48)
    kw = dict(seeds=(0,), profile=prof, run_dir=tmp_path, device="cpu", n_checkpoints=1, max_tokens=400)
    res = run_id_drift(["rte"], **kw)
    (cell,) = res["cells"]
    d = cell["drift"]
    steps = [r["step"] for r in d["records"]]
    # before training, one checkpoint in the middle, and the final step (48 examples / batch 8 = 6 steps)
    assert steps == [0, 3, 6]
    for r in d["records"]:
        assert len(r["dims"]) == 7 and len(r["ranks"]) == 6 and r["n_samples"] == 400
    # every checkpoint's ranks are the rule applied to that checkpoint's IDs
    for r in d["records"]:
        assert r["ranks"] == ranks_from_dimensions(r["dims"], offset=1)
    assert len(d["max_abs_id_change"]) == 7
    # rerun reads the finished cell instead of training again
    again = run_id_drift(["rte"], **kw)
    assert again["cells"][0]["drift"]["records"] == d["records"]


def test_plot_trajectories_writes_png(tmp_path):
    from validation.estimators.id_drift import plot_trajectories

    recs = [
        {"step": s, "dims": [3.0 + s / 10, 5.0], "cis": [[2.9, 3.1 + s / 10], [4.9, 5.1]], "ranks": [3]}
        for s in (0, 5, 10)
    ]
    res = {
        "cells": [
            {
                "task": "rte",
                "seed": 0,
                "primary_metric": "accuracy",
                "primary": 0.5,
                "drift": {"estimator": "twonn", "records": recs},
            }
        ]
    }
    out = plot_trajectories(res, tmp_path / "d.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError):
        plot_trajectories({"cells": []}, tmp_path / "e.png")
