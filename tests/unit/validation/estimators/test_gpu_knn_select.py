"""validation.estimators.gpu_knn_select: old and new selection side by side, on the CPU at tiny sizes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gelora.estimators import _knn_torch as kt
from validation.estimators.gpu_knn_select import compare_cell, main, parse_variant


def test_compare_cell_times_every_variant_and_finds_them_identical():
    variants = ("tilewise", "deferred", "deferred:sort", "deferred@48")
    before = dict(kt.SELECT)
    r = compare_cell("gaussian", 300, 40, device="cpu", k=5, repeats=2, check_rows=40, variants=variants)
    assert r["variants"] == list(variants)
    assert set(r["seconds"]) == set(variants) and all(len(r["all_seconds"][v]) == 2 for v in variants)
    assert r["seconds"]["deferred"] == min(r["all_seconds"]["deferred"])
    assert r["identical"] == dict.fromkeys(variants, True)
    assert r["same_stats"]["deferred"] and r["same_stats"]["deferred:sort"]
    assert r["rows_identical"] == r["check_rows"] == 40
    assert r["ratio_to_tf32_gram"]["tilewise"] == pytest.approx(r["seconds"]["tilewise"] / r["gram_tf32_s"])
    assert all(set(ph) >= {"product", "select", "rerank"} for ph in r["phases"].values())
    assert r["peak_gib"] == dict.fromkeys(variants)  # recorded on CUDA only
    assert kt.SELECT == before  # restored (the defaults themselves: test_knn_torch_select.py)
    assert kt.PHASE_TIMING["on"] is False


def test_profile_times_each_step_of_one_tile():
    r = compare_cell("tanh", 200, 40, device="cpu", k=5, repeats=1, check_rows=10, profile=True)
    prof = r["select_ops"]
    assert prof["tile_shape"] == [208, 208] and prof["tiles"] == 1
    assert {"product", "row_group_min_halving", "col_group_min_contiguous", "merge_tilewise"} <= set(
        prof["seconds"]
    )
    assert all(v >= 0 for v in prof["seconds"].values())
    assert kt.SELECT["smallest"] == "topk"


def test_parse_variant():
    assert parse_variant("tilewise") == ("tilewise", "topk", None, "amin", "torch")
    assert parse_variant("deferred:sort@32768") == ("deferred", "sort", 32768, "amin", "torch")
    assert parse_variant("deferred+halving@40000") == ("deferred", "topk", 40000, "halving", "torch")
    assert parse_variant("deferred+halving/triton") == ("deferred", "topk", None, "halving", "triton")
    with pytest.raises(ValueError, match="bad variant"):
        parse_variant("deferred/cutlass")
    with pytest.raises(ValueError, match="bad variant"):
        parse_variant("deferred+tree")
    with pytest.raises(ValueError, match="bad variant"):
        parse_variant("fused")
    with pytest.raises(ValueError, match="bad variant"):
        parse_variant("deferred:heap")


def test_transfer_suffix():
    from validation.estimators.gpu_knn_select import transfer_of

    assert parse_variant("deferred+halving~pinned") == ("deferred", "topk", None, "halving", "torch")
    assert transfer_of("deferred+halving~pinned32") == "pinned32"
    assert transfer_of("deferred+halving") == "pageable"
    with pytest.raises(ValueError, match="TRANSFER"):
        transfer_of("deferred~dma")


def test_main_resumes_and_reports(tmp_path, capsys):
    out = tmp_path / "s.json"
    argv = ["--device", "cpu", "--shapes", "150x8", "--data", "gaussian", "--repeats", "1", "--out", str(out)]
    assert main([*argv, "--check-rows", "10"]) == 0
    first = json.loads(out.read_text())["cells"]
    assert main([*argv, "--check-rows", "10"]) == 0  # the finished cell is skipped
    assert json.loads(out.read_text())["cells"] == first
    assert "| gaussian | 150 | 8 |" in capsys.readouterr().out


def test_main_refuses_a_repeated_variant(tmp_path):
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--variants", "deferred,deferred", "--out", str(tmp_path / "s.json")])


def test_a_triton_variant_without_triton_is_a_clear_error(monkeypatch):
    from gelora.errors import ConfigError

    monkeypatch.setitem(sys.modules, "triton", None)  # as if triton were not installed
    with pytest.raises(ConfigError, match="needs the triton package"):
        compare_cell(
            "gaussian", 100, 40, device="cpu", k=5, repeats=1, check_rows=5, variants=("deferred/triton",)
        )


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_the_triton_variant_runs_under_the_interpreter_and_is_identical(tmp_path):
    # a subprocess: triton reads TRITON_INTERPRET when it is first imported
    out = tmp_path / "t.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    argv = [
        "--device",
        "cpu",
        "--shapes",
        "150x40",
        "--data",
        "gaussian",
        "--repeats",
        "1",
        "--out",
        str(out),
    ]
    argv += ["--variants", "deferred+halving,deferred+halving/triton", "--check-rows", "20"]
    root = Path(__file__).resolve().parents[4]
    run = subprocess.run(
        [sys.executable, "-m", "validation.estimators.gpu_knn_select", *argv],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["products"] == {"deferred+halving": "torch", "deferred+halving/triton": "triton"}
    assert all(cell["identical"].values()) and cell["rows_identical"] == cell["check_rows"] == 20
    assert cell["triton_version"]
    assert cell["triton_configs"] == {}  # recorded for compiled (GPU) kernels only
