"""scripts/gpu/pace_bench.sh on the CPU (a stand-in bench and MPS control program) and
scripts/gpu/pace_summary.py: N copies a batch in the order asked, the daemon alive while they run and gone
after, the deadline, a failed copy left out of the medians, and the summary's arithmetic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from .mps_standin import kill_mps_standins, mps_alive, mps_standin

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu" / "pace_bench.sh"

# prints one line per method of --methods; the step time says whether the stand-in daemon was alive
BENCH = """import json, os, subprocess, sys, time
methods = sys.argv[sys.argv.index("--methods") + 1].split(",")
alive = subprocess.run(["pgrep", "-f", os.environ["MPS_PATTERN"]], capture_output=True).returncode == 0
for m in methods:
    print(json.dumps({"method": m, "step_ms_median": 20.0 if alive else 40.0, "args": sys.argv[1:]}))
time.sleep(float(os.environ.get("STUB_SLEEP", "0")))
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    (tmp_path / "bench.py").write_text(BENCH)
    (tmp_path / "repo").mkdir()
    stand_in = mps_standin(tmp_path)
    e = {
        **os.environ,
        **stand_in,
        "PATH": f"{stand_in['MPS_BIN']}:/usr/bin:/bin",
        "OUT": str(tmp_path / "out"),
        "BENCH": f"{sys.executable} {tmp_path / 'bench.py'}",
        "METHODS": "lora,adalora@fast",
        "PROCS": "3 1 2",
        "BATCH_S": "30",
    }
    yield e
    kill_mps_standins(e)


def _run(tmp_path: Path, env: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=tmp_path / "repo",
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_batches_run_under_the_daemon_and_are_summarised(tmp_path: Path, env: dict[str, str]) -> None:
    done = _run(tmp_path, env)
    assert done.returncode == 0, done.stderr
    starts = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("N=")]
    assert starts == ["N=3", "N=1", "N=2"]
    with tarfile.open(tmp_path / "out" / "pace.tgz") as tar:
        assert sorted(n for n in tar.getnames() if n.endswith(".rc")) == [
            f"pace/N{n}_{i}.rc" for n, i in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
        ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["pace.json", "pace.tgz"]
    pace = tmp_path / "repo" / "runs" / "pace"
    assert sorted(p.name for p in pace.glob("*.jsonl")) == [
        "N1_0.jsonl",
        "N2_0.jsonl",
        "N2_1.jsonl",
        "N3_0.jsonl",
        "N3_1.jsonl",
        "N3_2.jsonl",
    ]
    line = json.loads((pace / "N3_0.jsonl").read_text().splitlines()[0])
    assert line["args"] == ["--methods", "lora,adalora@fast"]
    rows = json.loads((tmp_path / "out" / "pace.json").read_text())["rows"]
    assert {(r["method"], r["n"]) for r in rows} == {
        (m, n) for m in ("lora", "adalora@fast") for n in (1, 2, 3)
    }
    assert all(r["step_ms"] == 20.0 for r in rows)  # every copy saw the daemon alive
    assert not mps_alive(env)  # quit at the end
    assert "| lora | 3 | 20.0 | 50.00 | 150.0 | 1.00 | 0.33 | 3 |" in done.stdout


def test_without_mps_and_the_deadline(tmp_path: Path, env: dict[str, str]) -> None:
    # DEADLINE - BATCH_S = 1 s: the first batch (2.1 s) starts, no later one
    done = _run(tmp_path, env, MPS="0", DEADLINE="31", STUB_SLEEP="2.1")
    assert done.returncode == 0, done.stderr
    assert "N=3 at 0 s (MPS=0)" in done.stdout
    assert "N=1 not started" in done.stdout and "N=2" not in done.stdout
    rows = json.loads((tmp_path / "out" / "pace.json").read_text())["rows"]
    assert rows and all(r["step_ms"] == 40.0 for r in rows)
    assert not (tmp_path / "mps.state.calls").exists()  # the control program never called


def test_no_batch_is_an_error(tmp_path: Path, env: dict[str, str]) -> None:
    done = _run(tmp_path, env, DEADLINE="10")
    assert done.returncode == 6
    assert "no batch ran" in done.stderr
    assert not mps_alive(env)


@pytest.fixture
def summary(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("gpu/pace_summary.py")


def _copy(folder: Path, n: int, i: int, lines: list[dict[str, object]], rc: int = 0) -> None:
    (folder / f"N{n}_{i}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / f"N{n}_{i}.rc").write_text(f"{rc}\n")


def test_summary_arithmetic_and_failed_copies(tmp_path: Path, summary: ModuleType) -> None:
    _copy(tmp_path, 1, 0, [{"method": "a", "step_ms_median": 100.0}, {"method": "b", "step_ms_median": 50.0}])
    _copy(
        tmp_path, 4, 0, [{"method": "a", "step_ms_median": 200.0}, {"method": "b", "step_ms_median": 200.0}]
    )
    _copy(
        tmp_path, 4, 1, [{"method": "a", "step_ms_median": 250.0}, {"method": "b", "step_ms_median": 200.0}]
    )
    # stopped by the batch's timeout after its line for "a": that line counts, "b" is missing
    _copy(tmp_path, 4, 2, [{"method": "a", "step_ms_median": 900.0}], rc=124)
    _copy(tmp_path, 4, 3, [{"method": "a", "step_ms_median": 300.0}, "not json", {"method": "b"}])  # type: ignore[list-item]
    _copy(tmp_path, 4, 4, [{"method": "a", "step_ms_median": float("nan")}, [1, 2]])  # type: ignore[list-item]
    rows = {(r["method"], r["n"]): r for r in summary.summarise(summary.read_folder(tmp_path))}
    a4 = rows[("a", 4)]
    assert a4["step_ms"] == 275.0 and a4["copies"] == 4 and a4["missing"] == 1 and a4["stopped"] == 1
    assert a4["pace"] == pytest.approx(1000 / 275) and a4["total"] == pytest.approx(4000 / 275)
    assert a4["vs_alone"] == pytest.approx(100 / 275) and a4["sharing"] == 0.25
    b4 = rows[("b", 4)]
    assert b4["copies"] == 2 and b4["missing"] == 3 and b4["vs_alone"] == pytest.approx(0.25)
    assert rows[("a", 1)]["stopped"] == 0
    text = summary.table(list(rows.values()))
    assert "| a | 4 | 275.0 | 3.64 | 14.5 | 0.36 | 0.25 | 4 (1 missing) |" in text


def test_summary_without_alone_row_and_errors(tmp_path: Path, summary: ModuleType) -> None:
    _copy(tmp_path, 2, 0, [{"method": "a", "step_ms_median": 10.0}])
    _copy(tmp_path, 2, 1, [], rc=1)
    (row,) = summary.summarise(summary.read_folder(tmp_path))
    assert row["vs_alone"] is None and row["step_ms"] == 10.0 and row["missing"] == 1 and row["stopped"] == 1
    assert "| — |" not in summary.table([row]).splitlines()[2].split("| 2 |")[0]
    with pytest.raises(FileNotFoundError, match="no N<n>_<i>.jsonl"):
        summary.read_folder(tmp_path / "missing")
    assert summary.main([str(tmp_path / "missing")]) == 2


def test_summary_refuses_a_folder_where_every_copy_failed(
    tmp_path: Path, summary: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    _copy(tmp_path, 1, 0, [], rc=1)
    _copy(tmp_path, 2, 0, [{"method": "a", "step_ms_median": -1.0}], rc=124)
    assert summary.main([str(tmp_path), "--out", str(tmp_path / "p.json")]) == 3
    assert "no copy" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()


def _bench_alive(tmp_path: Path) -> bool:
    return subprocess.run(["pgrep", "-f", str(tmp_path / "bench.py")], capture_output=True).returncode == 0


def test_a_copy_stopped_by_the_timeout_keeps_its_lines(tmp_path: Path, env: dict[str, str]) -> None:
    done = _run(tmp_path, env, PROCS="2", BATCH_S="2", STUB_SLEEP="30")  # prints, then outlives the batch
    assert done.returncode == 0, done.stderr
    pace = tmp_path / "repo" / "runs" / "pace"
    assert [(pace / f"N2_{i}.rc").read_text() for i in range(2)] == ["124\n", "124\n"]
    rows = json.loads((tmp_path / "out" / "pace.json").read_text())["rows"]
    assert {(r["method"], r["copies"], r["stopped"]) for r in rows} == {
        ("lora", 2, 2),
        ("adalora@fast", 2, 2),
    }
    assert not _bench_alive(tmp_path)


def test_sigterm_stops_the_copies_and_the_daemon(tmp_path: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)],
        cwd=tmp_path / "repo",
        env={**env, "PROCS": "3", "STUB_SLEEP": "60"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pace = tmp_path / "repo" / "runs" / "pace"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if len([p for p in pace.glob("N3_*.jsonl") if p.stat().st_size > 0]) == 3 and mps_alive(env):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the copies did not start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    time.sleep(0.5)
    assert not _bench_alive(tmp_path)  # no copy outlives the script
    assert not mps_alive(env)


def test_refused_beside_a_running_wave(tmp_path: Path, env: dict[str, str]) -> None:
    runs = tmp_path / "repo" / "runs"
    runs.mkdir()
    (runs / "A.pid").write_text(f"{os.getpid()}\n")  # a live wave: its process lives, no A.rc yet
    done = _run(tmp_path, env)
    assert done.returncode == 2
    assert "a wave runs on this host" in done.stderr
    assert not (tmp_path / "mps.state.calls").exists()
