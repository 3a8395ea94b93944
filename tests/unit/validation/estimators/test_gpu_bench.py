"""validation.estimators.gpu_bench runs end to end on the CPU at a tiny size."""

from __future__ import annotations

import json

import pytest

from validation.estimators.gpu_bench import bench_knn, main


def test_bench_knn_on_cpu_reports_times_and_ratio():
    r = bench_knn("cpu", n=300, D=16, k=3, repeats=1)
    assert r["device"] == "cpu" and (r["n"], r["D"], r["k"]) == (300, 16, 3)
    assert r["knn_s"] > 0 and r["matmul_s"] > 0
    assert r["ratio"] == pytest.approx(r["knn_s"] / r["matmul_s"])
    assert r["matmul_tflops"] == pytest.approx(2 * 300**2 * 16 / r["matmul_s"] / 1e12)
    assert r["min_nn_distance"] > 0  # Gaussian points are distinct


def test_main_prints_json_and_writes_file(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert main(["--device", "cpu", "--n", "128", "--D", "8", "--k", "2", "--json", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n"] == 128 and json.loads(out.read_text())["D"] == 8
