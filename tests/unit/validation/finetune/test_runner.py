"""One cell end to end (test profile: 32 examples, 32 tokens, 4 steps), resume, the grid and its summary."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from gelora._io import atomic_write_json
from gelora.errors import ConfigError, ResultFileError
from validation.finetune import grid as grid_mod
from validation.finetune.grid import run_grid, summarise, write_plan
from validation.finetune.runner import (
    CELL_SCHEMA,
    cell_path,
    failure_path,
    get_profile,
    read_cell,
    record_failure,
    run_cell,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROFILE = get_profile("test")
ROOT_DIR = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    from transformers.utils import logging

    logging.set_verbosity_error()


def test_one_cell_writes_a_complete_result(tmp_path: Path) -> None:
    result = run_cell("rte", "lora", 0, profile=PROFILE, run_dir=tmp_path, device="cpu")
    on_disk = read_cell(cell_path(tmp_path, "rte", "lora", 0))
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["schema"] == CELL_SCHEMA
    assert 0.0 <= on_disk["metrics"]["accuracy"] <= 1.0 and on_disk["primary_metric"] == "accuracy"
    assert on_disk["budget"]["within_budget"] is True
    assert on_disk["budget"]["trainable_adapter_params"] == on_disk["budget"]["budget_params"] == 73728
    # 32 examples / batch 8 = 4 optimizer steps, exactly as planned
    assert on_disk["train"]["steps"] == on_disk["train"]["planned_steps"] == 4
    assert on_disk["data"]["train"]["subset"] == {"n": 32, "seed": 0, "of": 2490}
    assert on_disk["data"]["eval"]["validation"]["n"] == 32
    assert on_disk["peak_memory"]["bytes"] > 0 and on_disk["wall_time_s"] > 0
    assert on_disk["method_info"]["ranks"]
    # the code path: eager (the default), not compiled (test_compile.py)
    assert on_disk["config"]["torch_compile"] is False and "torch_compile_settings" not in on_disk["config"]
    assert not (tmp_path / "work" / "rte__lora__seed0").exists()  # checkpoints removed once the cell is done


def test_regression_task_and_adalora_schedule(tmp_path: Path) -> None:
    result = run_cell("stsb", "adalora", 1, profile=PROFILE, run_dir=tmp_path, device="cpu")
    assert set(result["metrics"]) == {"pearson", "spearman", "combined"}
    info = result["method_info"]
    assert info["schedule_calls"] == result["train"]["steps"] == 4
    # after the final allocation the total rank equals uniform LoRA's: 12 matrices x 8
    assert info["total_rank"] == 96
    assert all(not k.endswith(("lora_E", "default")) for k in info["allocated_ranks"])
    # all 12 matrices are 384 x 384, so any allocation of 96 ranks has the uniform budget
    assert info["final_effective_adapter_params"] == result["budget"]["trainable_adapter_params"] == 96 * 769
    # AdaLoRA trains at its own learning rate (profile.lr_multipliers), recorded in the cell
    assert result["train"]["learning_rate_factor"] == PROFILE.lr_multipliers["adalora"] == 10.0
    assert result["train"]["learning_rate"] == pytest.approx(10.0 * PROFILE.learning_rate)


def test_interrupted_cell_resumes_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    original = Trainer._save_checkpoint

    def save_then_die(self, model, trial):  # noqa: ANN001, ANN202
        original(self, model, trial)
        raise RuntimeError("killed after the first checkpoint")

    monkeypatch.setattr(Trainer, "_save_checkpoint", save_then_die)
    with pytest.raises(RuntimeError, match="killed"):
        run_cell("rte", "lora", 0, profile=PROFILE, run_dir=tmp_path, device="cpu")
    checkpoint = os.path.join("work", "rte__lora__seed0", "checkpoint-2")
    assert (tmp_path / checkpoint).is_dir()
    assert not cell_path(tmp_path, "rte", "lora", 0).exists()
    monkeypatch.setattr(Trainer, "_save_checkpoint", original)
    result = run_cell("rte", "lora", 0, profile=PROFILE, run_dir=tmp_path, device="cpu")
    assert result["train"]["resumed_from"] == checkpoint
    assert result["train"]["steps"] == 4
    assert result["train"]["train_loss_steps"] == [2, 4]  # the Trainer's mean covers the resumed steps only


def test_adalora_checkpoint_without_its_state_restarts_and_says_so(tmp_path: Path) -> None:
    """A checkpoint without AdaLoRA's allocation state (e.g. left by an older runner) cannot be resumed: the
    cell starts over and records why (resumes with the state: test_adalora_resume.py)."""
    stale = tmp_path / "work" / "rte__adalora__seed0" / "checkpoint-2"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")  # a complete save (a folder without it is passed over)
    result = run_cell("rte", "adalora", 0, profile=PROFILE, run_dir=tmp_path, device="cpu")
    assert result["train"]["resumed_from"] is None
    assert result["train"]["restarted_discarding"] == os.path.join(
        "work", "rte__adalora__seed0", "checkpoint-2"
    )
    assert "gelora_adalora_state.pt" in result["train"]["restart_reason"]
    assert result["train"]["steps"] == 4 and result["method_info"]["schedule_calls"] == 4


def test_grid_failure_keeps_finished_cells_and_rerun_skips_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = grid_mod.run_cell
    calls: list[str] = []

    def flaky(task, method, seed, **kw):  # noqa: ANN001, ANN202
        calls.append(f"{task}/{method}/{seed}")
        if seed == 1:
            raise RuntimeError("injected failure")
        return real(task, method, seed, **kw)

    monkeypatch.setattr(grid_mod, "run_cell", flaky)
    out = run_grid(["rte"], ["lora"], [0, 1], profile=PROFILE, run_dir=tmp_path, device="cpu")
    assert out.ran == ["rte__lora__seed0"] and out.failed == ["rte__lora__seed1"]
    first = cell_path(tmp_path, "rte", "lora", 0)
    stamp = first.stat().st_mtime_ns
    assert failure_path(tmp_path, "rte", "lora", 1).exists()
    summary = summarise(tmp_path)
    assert summary["missing"] == [
        {"task": "rte", "method": "lora", "seed": 1, "reason": "failed: RuntimeError: injected failure"}
    ]
    assert summary["table"]["rte"]["lora"]["metrics"]["accuracy"]["n"] == 1
    # rerun: the finished cell is skipped (file untouched), the failed one retried
    monkeypatch.setattr(grid_mod, "run_cell", lambda *a, **k: calls.append("retry"))
    out2 = run_grid(["rte"], ["lora"], [0, 1], profile=PROFILE, run_dir=tmp_path, device="cpu")
    assert out2.skipped == ["rte__lora__seed0"] and out2.ran == ["rte__lora__seed1"]
    assert first.stat().st_mtime_ns == stamp and calls[-1] == "retry"


def _fake_cell(task: str, method: str, seed: int, acc: float) -> dict:
    return {
        "method_info": {"block_ranks": [4, 8]} if seed == 0 else {},
        "schema": CELL_SCHEMA,
        "task": task,
        "method": method,
        "seed": seed,
        "metrics": {"accuracy": acc},
        "budget": {"budget_params": 100, "trainable_adapter_params": 99, "within_budget": True},
        "wall_time_s": 2.0 + seed,
        "peak_memory": {"bytes": 1000 * (seed + 1)},
    }


def test_summary_statistics_missing_and_corrupt(tmp_path: Path) -> None:
    write_plan(tmp_path, ["rte"], ["lora", "gelora"], [0, 1], PROFILE)
    atomic_write_json(cell_path(tmp_path, "rte", "lora", 0), _fake_cell("rte", "lora", 0, 0.5))
    atomic_write_json(cell_path(tmp_path, "rte", "lora", 1), _fake_cell("rte", "lora", 1, 0.7))
    atomic_write_json(cell_path(tmp_path, "rte", "gelora", 0), _fake_cell("rte", "gelora", 0, 0.6))
    s = summarise(tmp_path)
    acc = s["table"]["rte"]["lora"]["metrics"]["accuracy"]
    # mean 0.6, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414
    assert acc["mean"] == pytest.approx(0.6) and acc["std"] == pytest.approx(math.sqrt(0.02))
    assert s["table"]["rte"]["gelora"]["metrics"]["accuracy"]["std"] is None  # one seed: no spread
    assert s["table"]["rte"]["lora"]["wall_time_s"]["mean"] == pytest.approx(2.5)
    assert s["table"]["rte"]["lora"]["peak_memory_bytes"] == 2000
    assert s["table"]["rte"]["lora"]["ranks_used"] == [[4, 8], None]
    assert s["n_cells"] == 3 and s["n_planned"] == 4
    assert [m["seed"] for m in s["missing"]] == [1] and s["missing"][0]["reason"].startswith("not run")
    cell_path(tmp_path, "rte", "gelora", 1).write_text(
        '{"schema": "gelora.validation.cell/1", "task"', "utf-8"
    )
    with pytest.raises(ResultFileError, match="corrupt"):
        summarise(tmp_path)
    with pytest.raises(ResultFileError, match="corrupt"):
        run_grid(["rte"], ["gelora"], [1], profile=PROFILE, run_dir=tmp_path)


def test_a_resumed_cells_partial_wall_time_stays_out_of_the_mean(tmp_path: Path) -> None:
    # a resumed cell's wall_time_s is its last process's (2026-12-01: QNLI GeoLoRA, 1,099 s whole against
    # 342 s resumed, reported as a 645-s "time per cell")
    from validation.finetune.grid import format_summary
    from validation.report.build import normalise_grid

    write_plan(tmp_path, ["rte"], ["lora", "gelora"], [0, 1, 2], PROFILE)
    for seed, acc in [(0, 0.5), (1, 0.6), (2, 0.7)]:
        cell = _fake_cell("rte", "lora", seed, acc)
        if seed == 2:
            cell["wall_time_s"] = 0.5
            cell["train"] = {"resumed_from": "work/rte__lora__seed2/checkpoint-4"}
        atomic_write_json(cell_path(tmp_path, "rte", "lora", seed), cell)
    gel = _fake_cell("rte", "gelora", 0, 0.6)
    gel["train"] = {"resumed_from": "work/rte__gelora__seed0/checkpoint-4"}
    atomic_write_json(cell_path(tmp_path, "rte", "gelora", 0), gel)
    s = summarise(tmp_path)
    lora, gelora = s["table"]["rte"]["lora"], s["table"]["rte"]["gelora"]
    assert lora["wall_time_s"]["mean"] == pytest.approx(2.5) and lora["wall_time_s"]["n"] == 2
    assert lora["wall_time_resumed_cells"] == 1
    assert gelora["wall_time_s"] is None and gelora["wall_time_resumed_cells"] == 1
    text = format_summary(s)
    assert "2.5 s/cell; 1 resumed, timed in part" in text and "no whole cell's time; 1 resumed" in text
    rows = {r["method"]: r for r in normalise_grid(s, str(tmp_path))["rows"]}
    assert rows["lora"]["wall_s"] == pytest.approx(2.5) and rows["lora"]["wall_resumed_cells"] == 1
    assert rows["gelora"]["wall_s"] is None


def test_wall_times_say_how_many_cells_ran_under_cuda_mps(tmp_path: Path) -> None:
    # MPS made twelve processes about 1.25x faster (2026-12-01): a mean over both kinds must say so
    from validation.finetune.grid import format_summary
    from validation.report.build import normalise_grid
    from validation.report.render_md import _grid_blocks

    write_plan(tmp_path, ["rte"], ["lora", "gelora"], [0, 1, 2], PROFILE)
    for seed in (0, 1, 2):
        cell = _fake_cell("rte", "lora", seed, 0.5)
        cell["environment"] = {"cuda_mps": seed >= 1}
        if seed == 2:  # resumed: out of the mean, so out of the MPS count too
            cell["train"] = {"resumed_from": "work/rte__lora__seed2/checkpoint-4"}
        atomic_write_json(cell_path(tmp_path, "rte", "lora", seed), cell)
        atomic_write_json(cell_path(tmp_path, "rte", "gelora", seed), _fake_cell("rte", "gelora", seed, 0.5))
    s = summarise(tmp_path)
    assert s["table"]["rte"]["lora"]["wall_time_cuda_mps_cells"] == 1
    assert "wall_time_cuda_mps_cells" not in s["table"]["rte"]["gelora"]
    lines = {ln.split()[1]: ln for ln in format_summary(s).splitlines() if ln.startswith("  rte")}
    assert lines["lora"].endswith("s/cell; 1 resumed, timed in part; 1 under CUDA MPS)")
    assert "MPS" not in lines["gelora"]
    grid = normalise_grid(s, str(tmp_path))
    rows = {r["method"]: r for r in grid["rows"]}
    assert rows["lora"]["wall_mps_cells"] == 1 and "wall_mps_cells" not in rows["gelora"]
    _, appendix = _grid_blocks({"sections": {"grid": {"status": "ok", "data": grid}}})
    cells = [c for b in appendix for row in getattr(b, "rows", []) for c in row]
    assert sum("(1 under CUDA MPS)" in str(c) for c in cells) == 1


def test_run_dir_refuses_a_changed_profile(tmp_path: Path) -> None:
    write_plan(tmp_path, ["rte"], ["lora"], [0], PROFILE)
    write_plan(tmp_path, ["stsb"], ["lora"], [0], get_profile("test", eval_batch_size=7))  # harmless change
    with pytest.raises(ConfigError, match="learning_rate"):
        write_plan(tmp_path, ["rte"], ["lora"], [0], get_profile("test", learning_rate=0.1))
    with pytest.raises(ResultFileError, match="no grid.json"):
        summarise(tmp_path / "elsewhere")


def test_only_rank_zero_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun every process runs the grid; ranks other than 0 must not write plan or failure files."""
    from validation.finetune.runner import record_failure

    monkeypatch.setenv("RANK", "1")
    write_plan(tmp_path, ["rte"], ["lora"], [0], PROFILE)
    assert not (tmp_path / "grid.json").exists()
    assert record_failure(tmp_path, "rte", "lora", 0, RuntimeError("x")) is None
    monkeypatch.setenv("RANK", "0")
    write_plan(tmp_path, ["rte"], ["lora"], [0], PROFILE)
    assert (tmp_path / "grid.json").exists()
    assert record_failure(tmp_path, "rte", "lora", 0, RuntimeError("x")) == failure_path(
        tmp_path, "rte", "lora", 0
    )


def _squad_dir(tmp_path: Path) -> Path:
    """Train on the Rhine article and score the Normans article of the real partial v2.0 dev file."""
    import gzip

    from validation.data import default_data_dir

    with gzip.open(
        default_data_dir() / "squad" / "v2.0" / "dev-partial.json.gz", "rt", encoding="utf-8"
    ) as fh:
        doc = json.load(fh)
    root = tmp_path / "data" / "squad" / "v2.0"
    root.mkdir(parents=True)
    for name, title in (("train-v2.0.json", "Rhine"), ("dev-v2.0.json", "Normans")):
        part = {"version": "v2.0", "data": [a for a in doc["data"] if a["title"] == title]}
        (root / name).write_text(json.dumps(part), encoding="utf-8")
    return tmp_path / "data"


def test_squad_v2_cell_trains_and_scores(tmp_path: Path) -> None:
    data = _squad_dir(tmp_path)
    profile = get_profile("test", max_length=48, train_size=12, eval_size=16)
    result = run_cell(
        "squad_v2", "lora", 0, profile=profile, run_dir=tmp_path / "run", data_dir=data, device="cpu"
    )
    m = result["metrics"]
    assert set(m) >= {"exact", "f1", "has_ans_f1", "no_ans_exact"} and 0.0 <= m["f1"] <= 100.0
    assert result["primary_metric"] == "f1" and result["budget"]["within_budget"] is True
    assert result["data"]["train"]["n_examples"] == 12 and result["data"]["eval"]["n_examples"] == 16
    # long contexts are split into several 48-token windows, one training row each
    assert result["data"]["train"]["n_windows"] > 12
    assert result["train"]["steps"] == math.ceil(result["data"]["train"]["n_windows"] / PROFILE.batch_size)
    # an official train file is used as such (a user's full copy); v1.1 has neither train nor dev here
    assert result["data"]["train"]["protocol"]["name"] == "official"
    assert result["data"]["train"]["sources"][0]["file"] == "squad/v2.0/train-v2.0.json"
    with pytest.raises(ConfigError, match="no SQuAD v1.1 dev file"):
        run_cell(
            "squad_v1", "lora", 0, profile=profile, run_dir=tmp_path / "run", data_dir=data, device="cpu"
        )


def test_lr_multiplier_option_updates_the_profile_defaults() -> None:
    from gelora.errors import ConfigError
    from validation.commands.validate import _lr_multipliers

    assert _lr_multipliers(None) is None
    assert _lr_multipliers(["gelora=2", "adalora=4"]) == {"adalora": 4.0, "gelora": 2.0}
    # the chosen profile's multipliers are the base the overrides replace
    assert _lr_multipliers(["lora=2"], {"adalora": 3.0}) == {"adalora": 3.0, "lora": 2.0}
    assert get_profile("test", lr_multipliers={"adalora": 4.0}).lr_multipliers == {"adalora": 4.0}
    for bad in ("adalora", "nope=2"):
        with pytest.raises(ConfigError, match="--lr-multiplier expects METHOD=FACTOR"):
            _lr_multipliers([bad])
    # the factor goes through the shared parse (validation._cli.positive_number), quoting the whole item
    cases = {
        "adalora=fast": "a number",
        "adalora=0": "a finite number > 0",
        "adalora=-1": "a finite number > 0",
    }
    cases["adalora=inf"] = "a finite number > 0"
    for bad, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            _lr_multipliers([bad])
        assert str(err.value) == f"--lr-multiplier factor must be {expected}, got {bad!r}"


def test_lr_grid_option_shares_the_number_parse() -> None:
    from validation.commands.validate import _lr_grid

    assert _lr_grid(None) is None
    assert _lr_grid("0.5, 1,2,") == (0.5, 1.0, 2.0)
    cases = {"0.5,x": "a number", "0.5,0": "a finite number > 0", "1,inf": "a finite number > 0"}
    for bad, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            _lr_grid(bad)
        assert str(err.value) == f"--lr-grid must be {expected}, got {bad!r}"
    with pytest.raises(ConfigError, match="--lr-grid must be a comma-separated list of numbers > 0, got ','"):
        _lr_grid(",")


def test_a_single_process_cuda_run_refuses_several_visible_gpus(monkeypatch):
    import torch

    from gelora.errors import ConfigError
    from validation.finetune.runner import check_one_gpu

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match=r"2 GPUs are visible.*CUDA_VISIBLE_DEVICES"):
        check_one_gpu(torch.device("cuda"))
    check_one_gpu(torch.device("cpu"))  # the CPU never reaches DataParallel
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_one_gpu(torch.device("cuda"))  # torchrun: one GPU per rank
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_one_gpu(torch.device("cuda"))


def test_the_environment_records_cuda_mps_only_when_a_wave_ran_under_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """scripts/gpu/waves.sh sets GELORA_CUDA_MPS=1 for waves under CUDA MPS (their times are not time slicing's)."""
    from validation.finetune import runner
    from validation.finetune.runner import _environment

    monkeypatch.setattr(runner, "mps_daemon_running", lambda: False)
    monkeypatch.delenv("GELORA_CUDA_MPS", raising=False)
    assert "cuda_mps" not in _environment("cpu")
    monkeypatch.setenv("GELORA_CUDA_MPS", "1")
    assert _environment("cpu")["cuda_mps"] is True
    monkeypatch.setenv("GELORA_CUDA_MPS", "0")
    assert "cuda_mps" not in _environment("cpu")
    monkeypatch.setattr(runner, "mps_daemon_running", lambda: True)  # a daemon runs, whoever started it
    assert _environment("cpu")["cuda_mps"] is True


def test_mps_daemon_running_reads_the_process_table(tmp_path: Path) -> None:
    from validation.finetune.runner import mps_daemon_running

    def proc(pid: str, *argv: str) -> None:
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")

    proc("1", "/sbin/init")
    proc("20", "python3", "-m", "gelora.cli", "nvidia-cuda-mps-control -d")  # a mention is not the daemon
    proc("21", "nvidia-cuda-mps-control")  # a client asking the daemon something
    (tmp_path / "self").mkdir()
    assert not mps_daemon_running(tmp_path) and not mps_daemon_running(tmp_path / "missing")
    proc("30", "/usr/bin/nvidia-cuda-mps-control", "-d")
    assert mps_daemon_running(tmp_path)
    (tmp_path / "30" / "cmdline").write_bytes(b"nvidia-cuda-mps-server\0")
    assert mps_daemon_running(tmp_path)


def test_a_failure_record_holds_no_absolute_path(tmp_path: Path) -> None:
    """A failure record can be committed with its run (test_portable): the traceback's files of the checkout
    are written relative to it (2026-12-01: the GPU host's checkout path had to be rewritten by hand)."""
    from validation.report.portable import find_absolute_paths

    try:
        raise ModuleNotFoundError(f"No module named 'x' (looked in {ROOT_DIR / 'validation'})")
    except ModuleNotFoundError as exc:
        path = record_failure(tmp_path, "cola", "lora", 4, exc)
    assert path is not None
    text = path.read_text()
    assert find_absolute_paths(text) == [], text
    assert "tests/unit/validation/finetune/test_runner.py" in text and "looked in validation" in text
