"""SIGTERM to grid workers and their parent (issue 19): prompt, bounded stops that lose no finished work. CPU only.

Most tests replace the cell trainer inside the worker subprocesses with a fake (a ``sitecustomize`` module on
their PYTHONPATH, as in test_parallel.py) that "trains" in small steps and keeps a step counter as its
checkpoint (replaced atomically, so a hard exit never leaves it half written); one slow test stops a real
training run and resumes it. The only time bounds are generous liveness bounds (a process must exit within a
minute), never speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from validation.finetune import stop
from validation.finetune.claims import is_live, is_stale
from validation.finetune.grid import GridOutcome, attempt_cells, claim_path, run_grid
from validation.finetune.runner import cell_path, failure_path, get_profile, read_cell

PROFILE = get_profile("test")
CELL = ("rte", "lora", 0)
LIVENESS_S = 60.0  # a stopped process must be gone by then (the watchdogs in these tests fire after 1-2 s)

FAKE = textwrap.dedent(
    """
    import os, time
    if os.environ.get("FAKE_STOP_CELLS"):
        import validation.finetune.grid as _g
        import validation.finetune.parallel as _p
        _p._KILL_MARGIN_S = float(os.environ.get("FAKE_KILL_MARGIN_S", _p._KILL_MARGIN_S))
        from gelora._io import atomic_write_json, atomic_write_text
        from validation.finetune.runner import CELL_SCHEMA, cell_path
        from validation.finetune.stop import check

        def _fake(task, method, seed, *, run_dir, **kw):
            name = f"{task}__{method}__seed{seed}"
            ckpt = os.path.join(str(run_dir), name + ".step")
            step = int(open(ckpt).read()) if os.path.exists(ckpt) else 0
            resumed = step
            with open(os.path.join(str(run_dir), "calls.log"), "a") as fh:
                fh.write(f"{name} {os.getpid()} {step}\\n")
            mode = os.environ.get("FAKE_MODE", "steps")
            if mode == "ignore_term":  # a process deaf to SIGTERM: only the parent's SIGKILL ends it
                import signal
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while step < int(os.environ.get("FAKE_STEPS", "1000000")):
                time.sleep(0.05)
                step += 1
                # replaced whole: a hard exit mid-save (the watchdog's) must leave the previous step, as a
                # Trainer save cut short is passed over (validation.finetune.checkpoints.last_checkpoint);
                # open(ckpt, "w") truncated first and, hit there, left an empty file the rerun failed on
                atomic_write_text(ckpt, str(step))
                if mode == "steps":
                    check(f"after step {step}")  # what the Trainer callback does at each step end
                if mode == "gil":  # after the stop request: a C call that never returns and holds the GIL
                    from validation.finetune.stop import requested
                    if requested():
                        import re
                        re.match(r"(a+)+$", "a" * 64 + "b")
            atomic_write_json(cell_path(run_dir, task, method, seed), {
                "schema": CELL_SCHEMA, "task": task, "method": method, "seed": seed,
                "metrics": {"accuracy": 0.5}, "budget": {}, "wall_time_s": 0.1,
                "train": {"resumed_from_step": resumed, "steps": step}})

        _g.run_cell = _fake
    """
)


@pytest.fixture
def fake_run(tmp_path: Path, fake_run_cell) -> Path:
    fake_run_cell(FAKE, "FAKE_STOP_CELLS")  # the in-process rerun uses the fake as well
    return tmp_path / "run"


def _wait_for(cond: Callable[[], bool], what: str, limit: float = LIVENESS_S) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < limit, f"gave up waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie has exited
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


class _Launch:
    """``run_grid`` with one worker subprocess, in a thread, so the test can signal the worker."""

    def __init__(self, run: Path, **kw: Any) -> None:
        self.run = run
        self.result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._go, kwargs=kw, daemon=True)
        self.thread.start()

    def _go(self, **kw: Any) -> None:
        try:
            self.result["outcome"] = run_grid(
                [CELL[0]], [CELL[1]], [CELL[2]], profile=PROFILE, run_dir=self.run, device="cpu", **kw
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.result["error"] = exc

    def worker_pid(self) -> int:
        """The pid of the worker holding the cell, once it has made a step."""
        claim = claim_path(self.run, *CELL)
        step = self.run / f"{'__'.join(map(str, CELL[:2]))}__seed{CELL[2]}.step"
        _wait_for(lambda: claim.exists() and step.exists(), "the worker to start its cell")
        return int(json.loads(claim.read_text())["pid"])

    def outcome(self) -> GridOutcome:
        self.thread.join(LIVENESS_S)
        assert not self.thread.is_alive(), "the parent still waits for its workers"
        assert "error" not in self.result, self.result.get("error")
        return self.result["outcome"]  # type: ignore[no-any-return]


def _worker_log(run: Path) -> str:
    return "".join(p.read_text() for p in sorted((run / "logs").glob("worker-*.log")))


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    # workers=1 runs in-process unless a slot is forced: plan one CPU worker subprocess
    import validation.finetune.parallel as parallel_mod

    monkeypatch.setattr(parallel_mod, "plan_slots", lambda *a, **k: [parallel_mod.Slot(0, None, 1)])


def _rerun_finishes(run: Path) -> dict[str, Any]:
    os.environ["FAKE_STEPS"] = "0"  # the fake finishes at once (it is at a step > 0 already)
    try:
        again = run_grid([CELL[0]], [CELL[1]], [CELL[2]], profile=PROFILE, run_dir=run, device="cpu")
    finally:
        del os.environ["FAKE_STEPS"]
    assert again.ran == ["rte__lora__seed0"] and not again.failed, again  # the whole outcome when it fails
    return read_cell(cell_path(run, *CELL))


def test_stop_flag_and_callback_are_noops_until_requested() -> None:
    cb = stop.stop_callback()
    state = SimpleNamespace(global_step=3, max_steps=10)
    assert stop.requested() is None
    cb.on_step_end(None, state, None)
    cb.on_prediction_step(None, state, None)
    stop.check()
    stop.request(signal.SIGTERM)
    try:
        assert stop.requested() == signal.SIGTERM
        with pytest.raises(stop.StopRequested, match="after step 3/10") as info:
            cb.on_step_end(None, state, None)
        assert info.value.exit_code == 128 + signal.SIGTERM
        assert not isinstance(info.value, Exception)  # no `except Exception` mistakes it for a failure
        with pytest.raises(stop.StopRequested, match="during evaluation"):
            cb.on_prediction_step(None, state, None)
    finally:
        stop.clear()
    assert stop.requested() is None


def test_grace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from gelora.errors import ConfigError

    monkeypatch.delenv("GELORA_STOP_GRACE_S", raising=False)
    assert stop.grace_from_env() == stop.DEFAULT_GRACE_S
    monkeypatch.setenv("GELORA_STOP_GRACE_S", "2.5")
    assert stop.grace_from_env() == 2.5
    monkeypatch.setenv("GELORA_STOP_GRACE_S", "")
    assert stop.grace_from_env() == stop.DEFAULT_GRACE_S
    # the shared parse (validation._cli.positive_number): its messages, naming the variable and the value;
    # "inf" passed before and would have overflowed the kernel alarm inside the signal handler
    cases = {"soon": "a number", "0": "a finite number > 0", "-3": "a finite number > 0"}
    cases |= {"inf": "a finite number > 0", "nan": "a finite number > 0"}
    for bad, expected in cases.items():
        monkeypatch.setenv("GELORA_STOP_GRACE_S", bad)
        with pytest.raises(ConfigError) as err:
            stop.grace_from_env()
        assert str(err.value) == f"GELORA_STOP_GRACE_S must be {expected}, got {bad!r}"


def test_interrupted_cell_records_no_failure_and_releases_its_claim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import validation.finetune.grid as grid_mod

    def interrupted(*a: Any, **k: Any) -> None:
        assert is_live(claim_path(tmp_path, *CELL))  # held while the cell runs
        raise stop.StopRequested(signal.SIGTERM, "after step 5/10")

    monkeypatch.setattr(grid_mod, "run_cell", interrupted)
    outcome = GridOutcome()
    lines: list[tuple[str, str]] = []
    with pytest.raises(stop.StopRequested):
        attempt_cells(
            [CELL, ("rte", "lora", 1)],
            outcome,
            profile=PROFILE,
            run_dir=tmp_path,
            data_dir=None,
            device="cpu",
            keep_going=True,
            keep_checkpoints=False,
            progress=lambda n, s: lines.append((n, s)),
            stale_after=600.0,
        )
    assert outcome.interrupted == ["rte__lora__seed0"] and not outcome.failed and not outcome.errors
    assert ("rte__lora__seed0", "interrupted") in lines
    assert not any(n == "rte__lora__seed1" for n, _ in lines)  # no further cell started
    assert not claim_path(tmp_path, *CELL).exists()
    assert not failure_path(tmp_path, *CELL).exists()


@pytest.mark.usefixtures("one_worker")
def test_sigterm_stops_the_worker_at_a_step_and_a_rerun_resumes(fake_run: Path) -> None:
    launch = _Launch(fake_run)
    pid = launch.worker_pid()
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the worker to exit")
    out = launch.outcome()
    assert out.errors["worker-0"].startswith(f"exit code {128 + signal.SIGTERM} (stopped by a signal")
    assert not out.ran and not out.busy and not out.failed
    assert not cell_path(fake_run, *CELL).exists() and not failure_path(fake_run, *CELL).exists()
    assert not claim_path(fake_run, *CELL).exists()  # released on the graceful path
    log = _worker_log(fake_run)
    assert "SIGTERM received: stopping at the next step boundary" in log
    assert "interrupted rte__lora__seed0" in log and "exit code 143" in log
    assert "hard exit" not in log.replace("(hard exit in", "")  # the watchdog did not fire
    cell = _rerun_finishes(fake_run)
    assert cell["train"]["resumed_from_step"] > 0  # the kept checkpoint


@pytest.mark.usefixtures("one_worker")
def test_watchdog_hard_exits_a_worker_stuck_past_the_grace(
    fake_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "hang")  # never looks at the flag, like a stop swallowed by a library
    monkeypatch.setenv("GELORA_STOP_GRACE_S", "1")
    launch = _Launch(fake_run)
    pid = launch.worker_pid()
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the watchdog's hard exit")
    out = launch.outcome()
    assert out.errors["worker-0"].startswith(f"exit code {128 + signal.SIGTERM}")
    assert "graceful stop did not finish within 1 s: hard exit 143" in _worker_log(fake_run)
    # the parent did not wait for the dead worker: its claim is still on disk but stale, the cell is left
    claim = claim_path(fake_run, *CELL)
    assert claim.exists() and is_stale(claim) and not is_live(claim)
    assert not out.busy and not out.ran and not cell_path(fake_run, *CELL).exists()
    monkeypatch.setenv("FAKE_MODE", "steps")
    cell = _rerun_finishes(fake_run)
    assert cell["train"]["resumed_from_step"] > 0


@pytest.mark.usefixtures("one_worker")
def test_second_sigterm_exits_at_once(fake_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_MODE", "hang")
    monkeypatch.setenv("GELORA_STOP_GRACE_S", "3600")  # only the second signal can end it in time
    launch = _Launch(fake_run)
    pid = launch.worker_pid()
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: "SIGTERM received" in _worker_log(fake_run), "the first signal to be noted")
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the exit on the second signal")
    out = launch.outcome()
    assert out.errors["worker-0"].startswith(f"exit code {-signal.SIGTERM} (stopped by a signal")


@pytest.mark.usefixtures("one_worker")
def test_kernel_alarm_ends_a_worker_whose_main_thread_holds_the_gil(
    fake_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "gil")  # the watchdog thread never gets the GIL
    monkeypatch.setenv("GELORA_STOP_GRACE_S", "1")
    launch = _Launch(fake_run)
    pid = launch.worker_pid()
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the alarm to end the worker")
    out = launch.outcome()
    assert out.errors["worker-0"].startswith(f"exit code {-signal.SIGALRM} (stopped by a signal")
    assert "graceful stop did not finish" not in _worker_log(fake_run)  # the watchdog could not run
    assert not is_live(claim_path(fake_run, *CELL)) and not out.busy


def test_sigterm_to_the_parent_stops_every_worker_within_a_bound(fake_run: Path) -> None:
    """Two workers: one stops gracefully, one ignores SIGTERM and is killed after the grace + margin."""
    code = textwrap.dedent(
        f"""
        import sys
        from validation.finetune.grid import run_grid
        from validation.finetune.runner import get_profile
        run_grid(["rte"], ["lora"], [0, 1], profile=get_profile("test"), run_dir={str(fake_run)!r},
                 device="cpu", workers=2)
        """
    )
    env = {**os.environ, "FAKE_MODE": "ignore_term", "GELORA_STOP_GRACE_S": "1", "FAKE_KILL_MARGIN_S": "1"}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    calls = fake_run / "calls.log"
    try:
        _wait_for(lambda: calls.exists() and len(calls.read_text().splitlines()) == 2, "both workers' cells")
        pids = [int(ln.split()[1]) for ln in calls.read_text().splitlines()]
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(LIVENESS_S) == 128 + signal.SIGTERM
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not any(_alive(p) for p in pids)  # killed and reaped, not orphaned
    for s in (0, 1):
        assert not is_live(claim_path(fake_run, "rte", "lora", s))


@pytest.mark.slow
def test_sigterm_during_real_training_keeps_the_checkpoint_and_the_rerun_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GELORA_TOKEN_CACHE", raising=False)
    profile = get_profile("test", epochs=5.0, save_steps=2)  # 20 steps, a checkpoint every 2
    box: dict[str, Any] = {}

    def go() -> None:  # two workers for one cell: the second finds it claimed and leaves
        box["out"] = run_grid(
            ["rte"], ["lora"], [0], profile=profile, run_dir=tmp_path, device="cpu", workers=2
        )

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    work = tmp_path / "work" / "rte__lora__seed0"
    claim = claim_path(tmp_path, *CELL)
    _wait_for(lambda: claim.exists() and any(work.glob("checkpoint-*")), "a first checkpoint", 600)
    pid = int(json.loads(claim.read_text())["pid"])
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the worker to stop")
    thread.join(LIVENESS_S)
    assert not thread.is_alive()
    out = box["out"]
    assert not out.ran and not out.failed
    assert any(e.startswith("exit code 143") for e in out.errors.values())
    assert not cell_path(tmp_path, *CELL).exists() and not is_live(claim)
    assert any(work.glob("checkpoint-*"))  # kept for the resume
    assert "interrupted rte__lora__seed0" in _worker_log(tmp_path)
    again = run_grid(["rte"], ["lora"], [0], profile=profile, run_dir=tmp_path, device="cpu")
    assert again.ran == ["rte__lora__seed0"]
    cell = read_cell(cell_path(tmp_path, *CELL))
    assert cell["train"]["resumed_from"] is not None and cell["train"]["steps"] == 20


def test_sigterm_to_a_single_process_validate_stops_gracefully_and_resumes(fake_run: Path) -> None:
    """``gelora validate`` without workers trains in its own process: a SIGTERM there stops the cell at a step
    as in a worker (exit code 143, checkpoint kept, claim released, no failure record), where before it
    ended the process at once and left the claim behind."""
    cmd = [sys.executable, "-m", "gelora.cli", "validate", "glue", "--tasks", CELL[0], "--methods", CELL[1]]
    cmd += ["--seeds", "1", "--profile", "test", "--device", "cpu", "--out", str(fake_run)]
    env = dict(os.environ, GELORA_STOP_GRACE_S="20")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    step = fake_run / f"{CELL[0]}__{CELL[1]}__seed{CELL[2]}.step"
    try:
        _wait_for(lambda: step.exists() or proc.poll() is not None, "the cell to make a step")
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=LIVENESS_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM received: stopping at the next step boundary" in out
    assert "rerun the command to resume" in out
    assert not cell_path(fake_run, *CELL).exists() and not failure_path(fake_run, *CELL).exists()
    assert not claim_path(fake_run, *CELL).exists()
    cell = _rerun_finishes(fake_run)
    assert cell["train"]["resumed_from_step"] > 0


def test_handling_restores_the_handler_and_a_request_alone_never_fires_the_watchdog() -> None:
    """In a process that goes on after its grid (an in-process ``gelora validate``, this test suite), the
    block restores the previous SIGTERM handler, and :func:`stop.request` (no signal) never arms the
    watchdog's hard exit: before, a request after an install ended the whole process ``grace_s`` later."""
    script = textwrap.dedent(
        """
        import signal, time
        from validation.finetune import stop
        def mine(signum, frame):
            pass
        signal.signal(signal.SIGTERM, mine)
        with stop.handling(0.2, label="t"):
            assert signal.getsignal(signal.SIGTERM) is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
        stop.request()
        time.sleep(1.0)
        assert stop.requested() == signal.SIGTERM
        stop.clear()
        print("alive")
        """
    )
    repo = Path(__file__).resolve().parents[4]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=LIVENESS_S
    )
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stdout + done.stderr


def _validate_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any, extra: list[str], slots: list[Any] | None
) -> tuple[int, list[Any]]:
    """``gelora validate glue`` called in this process with a fake cell trainer (and, when ``slots`` is given, a
    fake slot plan and a fake worker launcher); returns the exit code and the SIGTERM handler that each cell
    (or the worker launcher) saw."""
    import validation.finetune.grid as grid_mod
    import validation.finetune.parallel as parallel_mod
    from gelora.cli import main

    seen: list[Any] = []

    def fake_cell(task: str, method: str, seed: int, *, run_dir: Path, **kw: Any) -> None:
        seen.append(signal.getsignal(signal.SIGTERM))
        gridfix.write_cell(Path(run_dir), task, method, seed, 0.5, profile="test")

    def fake_workers(cells: Any, slots: Any, **kw: Any) -> GridOutcome:
        seen.append(signal.getsignal(signal.SIGTERM))
        return GridOutcome()

    monkeypatch.setattr(grid_mod, "run_cell", fake_cell)
    monkeypatch.setattr(parallel_mod, "run_workers", fake_workers)
    if slots is not None:
        monkeypatch.setattr(parallel_mod, "plan_slots", lambda *a, **k: list(slots))
    argv = ["validate", "glue", "--tasks", CELL[0], "--methods", CELL[1], "--seeds", "1", "--profile", "test"]
    argv += ["--device", "cpu", "--out", str(tmp_path / "run"), *extra]
    before = signal.getsignal(signal.SIGTERM)
    code = main(argv)
    assert signal.getsignal(signal.SIGTERM) is before  # no signal came: the previous handler is back
    return code, seen


@pytest.mark.parametrize(
    ("extra", "slots", "graceful"),
    [
        pytest.param([], None, True, id="default-in-process"),
        pytest.param(["--workers", "2"], [], True, id="empty-plan-runs-here"),
        pytest.param([], [("slot",)], False, id="planned-worker"),
    ],
)
def test_validate_handles_sigterm_exactly_when_the_slot_plan_runs_cells_here(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gridfix: Any,
    extra: list[str],
    slots: Any,
    graceful: bool,
) -> None:
    """``plan_slots`` alone decides whether ``gelora validate`` runs its cells in this process (SIGTERM then
    stops at a step, :mod:`validation.finetune.stop`) or on workers (``run_workers`` stops them, no handler
    here): before, the command restated the decision from its options, and a plan that differed from that
    restatement ran workers under the in-process handler, or cells here without it."""
    if slots:
        from validation.finetune.parallel import Slot

        slots = [Slot(0, None, 1)]
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code, seen = _validate_in_process(tmp_path, monkeypatch, gridfix, extra, slots)
    assert code == 0 and len(seen) == 1
    assert (seen[0] is stop._on_signal) is graceful
    if not graceful:  # the cell went to the (fake) workers
        assert not cell_path(tmp_path / "run", *CELL).exists()


def test_validate_under_torchrun_leaves_sigterm_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gridfix: Any
) -> None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1) the cells run in this process without the graceful handler, as
    before: ranks stopping at different steps would leave the others waiting in a collective."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, seen = _validate_in_process(tmp_path, monkeypatch, gridfix, [], None)
    assert code == 0 and len(seen) == 1 and seen[0] is not stop._on_signal
    assert cell_path(tmp_path / "run", *CELL).exists()
