"""validation.estimators.gpu_knn_bench runs end to end on the CPU at tiny sizes and resumes its JSON."""

from __future__ import annotations

import json

import pytest

from validation.estimators.gpu_knn_bench import bench_cell, main, make_data


def test_bench_cell_on_cpu_reports_ratios_and_exactness():
    r = bench_cell("gaussian", 300, 40, device="cpu", k=5, repeats=1, check_rows=50)
    # D > 32: the screen, not the small-dimension path
    assert (r["n"], r["D"], r["k"], r["precision"]) == (300, 40, 5, "fp32")
    assert r["ratio_knn_tf32"] == pytest.approx(r["knn_s"] / r["gram_tf32_s"])
    assert r["rows_identical"] == r["check_rows"] == 50
    assert r["max_rel_distance_diff"] < 1e-12


def test_tanh_data_has_full_linear_rank():
    import numpy as np
    import torch

    X = make_data("tanh", 400, 40, torch.device("cpu"), seed=0).double().numpy()
    s = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    assert s[-1] / s[0] > 1e-6  # every direction carries variance (noise 1e-3 at least)


def test_main_resumes(tmp_path, capsys):
    out = tmp_path / "g.json"
    argv = [
        "--device",
        "cpu",
        "--shapes",
        "200x16",
        "--data",
        "gaussian",
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    first = json.loads(out.read_text())["cells"]
    assert main(argv) == 0  # the finished cell is skipped
    assert json.loads(out.read_text())["cells"] == first
    assert "| gaussian | 200 | 16 |" in capsys.readouterr().out


def test_phases_are_timed_only_when_asked_and_cover_the_call(tmp_path, capsys):
    from gelora.estimators import _knn_torch

    r = bench_cell("tanh", 300, 40, device="cpu", k=5, repeats=1, check_rows=20, phases=True)
    ph = r["phases"]
    assert set(ph) == {"prepare", "product", "select", "certify", "rerank", "fallback", "transfer"}
    assert all(v >= 0 for v in ph.values()) and r["phases_total_s"] == pytest.approx(sum(ph.values()))
    assert _knn_torch.PHASE_TIMING["on"] is False  # switched off again
    assert "phases" not in bench_cell("tanh", 300, 40, device="cpu", k=5, repeats=1, check_rows=20)
    out = tmp_path / "g.json"
    argv = ["--device", "cpu", "--shapes", "200x16", "--data", "gaussian", "--repeats", "1", "--phases"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "| prepare | product | select |" in capsys.readouterr().out
