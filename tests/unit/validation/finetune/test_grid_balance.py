"""Workers pinned to GPUs spread a grid's methods over the GPUs (validation.finetune.grid.next_cell_index)."""

from __future__ import annotations

from pathlib import Path

import pytest

from validation.finetune.claims import read_claim, try_claim
from validation.finetune.grid import claim_path, live_groups_on_gpu, next_cell_index

CELLS = [("mrpc", m, s) for m in ("adalora", "geolora") for s in range(5)]


@pytest.fixture
def held():
    claims = []
    yield claims
    for c in claims:
        c.release()


def _claim(monkeypatch: pytest.MonkeyPatch, path: Path, gpu: str | None, held: list) -> None:
    if gpu is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", gpu)
    claim = try_claim(path)
    assert claim is not None
    held.append(claim)


def test_a_claim_records_the_owners_gpu(tmp_path, monkeypatch, held):
    _claim(monkeypatch, tmp_path / "a.claim", "1", held)
    _claim(monkeypatch, tmp_path / "b.claim", None, held)
    assert read_claim(tmp_path / "a.claim")["gpu"] == "1"
    assert read_claim(tmp_path / "b.claim")["gpu"] is None
    assert read_claim(tmp_path / "missing.claim") is None


def test_without_a_gpu_the_grid_order_is_kept(tmp_path, monkeypatch, held):
    _claim(monkeypatch, claim_path(tmp_path, "mrpc", "adalora", 0), "0", held)
    assert next_cell_index(CELLS[1:], tmp_path, None, 600.0) == 0


def test_the_method_least_held_on_this_gpu_comes_first(tmp_path, monkeypatch, held):
    _claim(monkeypatch, claim_path(tmp_path, "mrpc", "adalora", 0), "0", held)
    pending = CELLS[1:]
    assert pending[next_cell_index(pending, tmp_path, "0", 600.0)] == ("mrpc", "geolora", 0)
    assert next_cell_index(pending, tmp_path, "1", 600.0) == 0  # nothing held on GPU 1: the grid's order
    assert live_groups_on_gpu(tmp_path, "0") == {"mrpc__adalora": 1}
    assert live_groups_on_gpu(tmp_path, "1") == {}


def test_selection_runs_count_for_their_method(tmp_path, monkeypatch, held):
    _claim(monkeypatch, tmp_path / "lr_select" / "mrpc__geolora.claim", "0", held)
    _claim(monkeypatch, claim_path(tmp_path, "mrpc", "geolora", 0), "0", held)
    _claim(monkeypatch, claim_path(tmp_path, "mrpc", "adalora", 0), "0", held)
    assert live_groups_on_gpu(tmp_path, "0") == {"mrpc__geolora": 2, "mrpc__adalora": 1}
    pending = [c for c in CELLS if c[2] > 0]
    assert pending[next_cell_index(pending, tmp_path, "0", 600.0)] == ("mrpc", "adalora", 1)


def test_released_claims_do_not_count(tmp_path, monkeypatch, held):
    _claim(monkeypatch, claim_path(tmp_path, "mrpc", "adalora", 0), "0", held)
    held.pop().release()
    assert live_groups_on_gpu(tmp_path, "0") == {}


def test_each_gpu_gets_both_methods_whatever_order_the_workers_start_in(tmp_path, monkeypatch, held):
    # the race seen on two H200s: GPU 0's five workers claimed before GPU 1's; in the grid's order GPU 0
    # would train all five AdaLoRA cells and GPU 1 all five GeoLoRA cells
    pending = list(CELLS)
    placed: dict[str, list[str]] = {"0": [], "1": []}
    for gpu in ["0"] * 5 + ["1"] * 5:
        t, m, s = pending.pop(next_cell_index(pending, tmp_path, gpu, 600.0))
        _claim(monkeypatch, claim_path(tmp_path, t, m, s), gpu, held)
        placed[gpu].append(m)
    for gpu, methods in placed.items():
        assert sorted(set(methods)) == ["adalora", "geolora"], (gpu, methods)
        assert abs(methods.count("adalora") - methods.count("geolora")) <= 1, (gpu, methods)


def test_trained_span_runs_from_the_first_start_to_the_last_end() -> None:
    from validation.finetune.grid import _trained_span

    cells = [
        {"finished_at": "2026-11-30T10:54:41+00:00", "wall_time_s": 835.0},
        {"finished_at": "2026-11-30T10:55:11+00:00", "wall_time_s": 812.0},
    ]
    start, end = _trained_span(cells)
    assert end - start == pytest.approx(30.0 + 835.0, abs=0.1)
    assert _trained_span([*cells, {"wall_time_s": 1.0}]) is None  # an older cell without finished_at
