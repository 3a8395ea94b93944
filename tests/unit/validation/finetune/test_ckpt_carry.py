"""Checkpoints carried from one device session to the next (validation/finetune/ckpt_carry.py).

A fake run directory holds small checkpoint folders of random bytes: an unfinished cell with three
checkpoints (the last one, checkpoint-10, sorts after checkpoint-4 only numerically), a finished cell, a cell
without a checkpoint, an oversize one, and selection runs (one unfinished, one whose rate is scored, one whose
selection is done). The round trip pack -> emit (several calls, small limits) -> collect -> bundle (several
carry folders) -> unpack must restore exactly the two unfinished last checkpoints, byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from gelora.errors import CheckpointCarryError, ConfigError
from validation.carry_size import MIB, tar_bytes
from validation.finetune import ckpt_carry as cc
from validation.finetune import stop

RESTORED = ["lr_select/work/rte__gelora__lr1e-04/checkpoint-5", "work/rte__lora__seed0/checkpoint-10"]
PART_MIB = 0.05  # 52,428 bytes: the ~330 KB archive in 7 parts


def _fill(folder: Path, rng: random.Random, sizes: dict[str, int]) -> None:
    for rel, n in sizes.items():
        f = folder / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(rng.randbytes(n))


def _checkpoint(work: Path, step: int, rng: random.Random, scale: int = 1) -> Path:
    ck = work / f"checkpoint-{step}"
    _fill(
        ck,
        rng,
        {
            "adapter_model.safetensors": 40_000 * scale,
            "optimizer.pt": 80_000 * scale,
            "trainer_state.json": 700,
            "rng_state.pth": 14_000,
            "sub/extra.bin": 1_000,
        },
    )
    head = f'{{"global_step": {step}, "pad": "'
    (ck / "trainer_state.json").write_text(
        head + "x" * (700 - len(head) - 2) + '"}'
    )  # JSON, as the Trainer's
    return ck


def make_run(root: Path, name: str = "demo") -> Path:
    """A fake run directory (see the module docstring)."""
    rng = random.Random(7)
    run = root / name
    (run / "cells").mkdir(parents=True)
    (run / "lr_select").mkdir()
    (run / "grid.json").write_text('{"schema": 1, "cells": []}\n')
    for step in (2, 4, 10):
        _checkpoint(run / "work" / "rte__lora__seed0", step, rng)
    _checkpoint(run / "work" / "rte__lora__seed1", 6, rng)  # finished: cells/rte__lora__seed1.json
    (run / "cells" / "rte__lora__seed1.json").write_text("{}\n")
    (run / "work" / "mrpc__lora__seed0").mkdir()  # started, no checkpoint yet
    _checkpoint(run / "work" / "rte__full__seed0", 3, rng, scale=8)  # ~1 MB: over --max-checkpoint-mib 0.5
    sel = run / "lr_select" / "work"
    for step in (2, 5):
        _checkpoint(sel / "rte__gelora__lr1e-04", step, rng)
    _checkpoint(sel / "rte__gelora__lr3e-04", 1, rng)  # its rate is scored
    (run / "lr_select" / "rte__gelora.json").write_text(json.dumps({"done": False, "scores": {"3e-04": 0.7}}))
    _checkpoint(sel / "stsb__lora__lr1e-04", 1, rng)  # the selection is done
    (run / "lr_select" / "stsb__lora.json").write_text(json.dumps({"done": True, "scores": {"1e-04": 0.8}}))
    return run


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _checkpoints_in(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("checkpoint-*") if p.is_dir())


def _out_usage(out: Path) -> tuple[int, int]:
    files = [p for p in out.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs")


@pytest.fixture
def packed(run: Path, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    stage = tmp_path / "stage"
    # without pack's own run copy: these tests follow the parts (test_packs_run_copy_... follows the copy)
    return stage, cc.pack(run, stage, part_mib=PART_MIB, max_checkpoint_mib=0.5, run_copy=False)


def _emit_all(stage: Path, root: Path, *, max_files: int = 3, max_mib: float = 0.15) -> list[Path]:
    """One OUT folder per call until no part is left; the second call's OUT already holds two files."""
    outs: list[Path] = []
    for k in range(50):
        out = root / f"out{k}"
        out.mkdir(parents=True)
        if k == 1:
            (out / "runs.tgz").write_bytes(b"x" * 20_000)
            (out / "sub").mkdir()
            (out / "sub" / "gpu.txt").write_text("H200\n")
        report = cc.emit(stage, out, max_files=max_files, max_mib=max_mib)
        files, used = _out_usage(out)
        assert files <= max_files and used <= max_mib * MIB
        assert (out / "demo.ckpt.json").is_file()
        outs.append(out)
        if report.left == 0:
            return outs
        assert report.emitted or k == 1, "no progress"
    raise AssertionError("emit never finished")


def _carry(stage: Path, tmp_path: Path, budget_mib: float = 0.12) -> list[cc.CarryFolder]:
    outs = _emit_all(stage, tmp_path / "fetched")
    dest = tmp_path / "collected"
    report = cc.collect(dest, outs)
    assert report.missing == [] and len(report.present) == len(cc.find_manifest(stage)[1]["parts"])
    return cc.bundle(dest, tmp_path / "devcarry", prefix="ck", budget_mib=budget_mib)


# ------------------------------------------------------------------------------------------------ pack
def test_pack_takes_the_last_checkpoint_of_unfinished_runs_only(
    packed: tuple[Path, dict[str, Any]], run: Path
) -> None:
    stage, manifest = packed
    assert sorted(c["path"] for c in manifest["checkpoints"]) == RESTORED
    assert {c["path"]: c["step"] for c in manifest["checkpoints"]} == {RESTORED[0]: 5, RESTORED[1]: 10}
    reasons = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert reasons["work/rte__lora__seed1"].startswith("cell finished")
    assert reasons["work/mrpc__lora__seed0"] == "no checkpoint"
    assert "max-checkpoint-mib" in reasons["work/rte__full__seed0/checkpoint-3"]
    assert reasons["lr_select/work/rte__gelora__lr3e-04"].startswith("rate 3e-04 scored")
    assert reasons["lr_select/work/stsb__lora__lr1e-04"].startswith("selection done")
    parts = sorted(stage.glob("demo.ckpt.0*"))
    assert [p.name for p in parts] == [p["name"] for p in manifest["parts"]] and len(parts) >= 5
    assert all(p.stat().st_size <= PART_MIB * MIB for p in parts)
    whole = b"".join(p.read_bytes() for p in parts)
    assert len(whole) == manifest["tar"]["bytes"]
    assert hashlib.sha256(whole).hexdigest() == manifest["tar"]["sha256"]
    for c in manifest["checkpoints"]:
        assert {f["path"]: f["sha256"] for f in c["files"]} == _digest(run / c["path"])
    with tarfile.open(fileobj=io.BytesIO(whole)) as tar:
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in tar.getmembers())
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {n.split("/checkpoint-")[0] for n in names} == {
        "lr_select/work/rte__gelora__lr1e-04",
        "work/rte__lora__seed0",
    }


def test_pack_skips_a_run_still_training(run: Path, tmp_path: Path) -> None:
    """A live claim (this process, this host) means its owner may be writing the checkpoint right now."""
    from validation.finetune.claims import try_claim

    claim = try_claim(run / "claims" / "rte__lora__seed0.claim")
    assert claim is not None
    try:
        manifest = cc.pack(run, tmp_path / "a", max_checkpoint_mib=0.5)
        assert [c["path"] for c in manifest["checkpoints"]] == [RESTORED[0]]
        assert "still running" in {s["path"]: s["reason"] for s in manifest["skipped"]}[RESTORED[1]]
        assert "still running" in "\n".join(cc.status_lines(run))
        forced = cc.pack(run, tmp_path / "b", max_checkpoint_mib=0.5, include_running=True)
        assert sorted(c["path"] for c in forced["checkpoints"]) == RESTORED
    finally:
        claim.release()
    assert (
        sorted(c["path"] for c in cc.pack(run, tmp_path / "c", max_checkpoint_mib=0.5)["checkpoints"])
        == RESTORED
    )


def test_pack_passes_over_a_checkpoint_whose_save_was_cut_short(run: Path, tmp_path: Path) -> None:
    """A hard exit during a save leaves checkpoint-N without trainer_state.json (written last): the last
    complete checkpoint travels instead, and the partial one is listed under ``skipped``."""
    partial = run / "work" / "rte__lora__seed0" / "checkpoint-12"
    _fill(partial, random.Random(1), {"adapter_model.safetensors": 4_000, "optimizer.pt": 100})
    assert cc.last_checkpoint(partial.parent) == partial.parent / "checkpoint-10"
    manifest = cc.pack(run, tmp_path / "stage", part_mib=PART_MIB, max_checkpoint_mib=0.5)
    assert sorted(c["path"] for c in manifest["checkpoints"]) == RESTORED
    assert {
        "path": "work/rte__lora__seed0/checkpoint-12",
        "reason": "partial checkpoint (no readable trainer_state.json: its save was cut short)",
    } in manifest["skipped"]
    line = next(x for x in cc.status_lines(run) if x.startswith("work/rte__lora__seed0 "))
    assert "step 10" in line and "partial (not carried): checkpoint-12" in line
    # a trainer_state.json cut short (the Trainer does not write it atomically): partial too
    (partial.parent / "checkpoint-10" / "trainer_state.json").write_text('{"global_step": 1')
    assert cc.last_checkpoint(partial.parent) == partial.parent / "checkpoint-4"


def test_pack_is_deterministic(run: Path, tmp_path: Path) -> None:
    one = cc.pack(run, tmp_path / "a", part_mib=PART_MIB, max_checkpoint_mib=0.5)
    for p in run.rglob("*"):  # other mtimes, the same contents
        os.utime(p, (1_000_000, 1_000_000))
    two = cc.pack(run, tmp_path / "b", part_mib=PART_MIB, max_checkpoint_mib=0.5)
    assert one["tar"] == two["tar"] and one["parts"] == two["parts"]
    for p in one["parts"]:
        assert (tmp_path / "a" / p["name"]).read_bytes() == (tmp_path / "b" / p["name"]).read_bytes()


def test_pack_refuses_a_stage_inside_the_run_directory(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="inside the run directory"):
        cc.pack(run, run / "stage")
    assert cc.main(["pack", str(run), str(run / "logs" / "x")]) == 2
    assert "inside the run directory" in capsys.readouterr().err
    assert not (run / "stage").exists() and not (run / "logs").exists()


def test_pack_cli_prints_each_checkpoint_and_the_parts(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["pack", str(run), str(tmp_path / "st"), "--part-mib", "0.05", "--max-checkpoint-mib", "0.5"]
    assert cc.main(args) == 0
    out = capsys.readouterr().out
    assert "packed work/rte__lora__seed0/checkpoint-10 (step 10" in out
    assert "skipped work/rte__full__seed0/checkpoint-3" in out
    n = len(list((tmp_path / "st").glob("demo.ckpt.0*")))
    assert f"\n{n} parts (" in out


def test_status_lists_each_work_folder(run: Path) -> None:
    lines = "\n".join(cc.status_lines(run, max_checkpoint_mib=0.5))
    assert "work/rte__lora__seed0  step 10" in lines and "unfinished: packed" in lines
    assert "work/rte__full__seed0  step 3" in lines and "too large" in lines
    assert "work/rte__lora__seed1  step 6" in lines and "final: cell finished" in lines


# ------------------------------------------------------------------------------------------------ emit
def test_emit_stays_within_the_limits_and_continues(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    stage, manifest = packed
    outs = _emit_all(stage, tmp_path / "f")
    emitted = sorted(p.name for o in outs for p in o.glob("demo.ckpt.0*"))
    assert emitted == [p["name"] for p in manifest["parts"]]  # each part once
    assert len(outs) >= 3
    # the second call's OUT held 2 other files: manifest + 0 parts fit beside them within 3 files
    assert sorted(p.name for p in outs[1].iterdir()) == ["demo.ckpt.json", "runs.tgz", "sub"]
    again = cc.emit(stage, tmp_path / "f" / "again", max_files=3, max_mib=0.15)
    assert again.emitted == [] and again.left == 0
    assert "emitted no part of" in again.line()


def test_emit_refuses_a_full_out_and_dry_run_writes_nothing(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage, manifest = packed
    full = tmp_path / "full"
    full.mkdir()
    for k in range(8):
        (full / f"f{k}").write_text("x")
    with pytest.raises(ConfigError, match="cannot take the manifest"):
        cc.emit(stage, full)
    assert cc.main(["emit", str(stage), str(full)]) == 2
    out = tmp_path / "dry"
    assert cc.main(["emit", str(stage), str(out), "--dry-run"]) == 0
    n = len(manifest["parts"])
    assert f"would have emitted parts 1-{n} of {n}; 0 left" in capsys.readouterr().out
    assert list(out.iterdir()) == [] and not (stage / "demo.ckpt.emitted.json").exists()
    big = cc.emit(stage, tmp_path / "big", max_files=8, max_mib=60)
    assert big.emitted == list(range(min(n, 7)))  # 8 files: the manifest and 7 parts


# ------------------------------------------------------------------------------- the round trip
@pytest.mark.parametrize("order", ["in-order", "shuffled"])
def test_round_trip_restores_exactly_the_last_checkpoints(
    order: str, packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path
) -> None:
    stage, manifest = packed
    folders = _carry(stage, tmp_path)
    assert len(folders) >= 3
    for f in folders:
        assert tar_bytes([f.path]) == f.bytes <= 0.12 * MIB
        assert (f.path / "demo.ckpt.json").is_file()
    assert sorted(n for f in folders for n in f.parts) == [p["name"] for p in manifest["parts"]]
    fresh = tmp_path / "next" / "demo"
    fresh.mkdir(parents=True)
    shutil.copy(run / "grid.json", fresh / "grid.json")
    order_ = list(folders)
    if order == "shuffled":
        random.Random(3).shuffle(order_)
        if order_ == folders:
            order_ = order_[1:] + order_[:1]
    stage_in = tmp_path / "in"
    reports = [cc.unpack(f.path, fresh, stage=stage_in) for f in order_]
    assert [r.present for r in reports] == [
        sum(len(f.parts) for f in order_[: k + 1]) for k in range(len(order_))
    ]
    assert all(not r.restored for r in reports[:-1])
    assert sorted(reports[-1].restored) == RESTORED
    assert "restored: " in "\n".join(reports[-1].lines())
    assert _checkpoints_in(fresh) == RESTORED
    for rel in RESTORED:
        assert _digest(fresh / rel) == _digest(run / rel)
    assert not [p for p in fresh.iterdir() if p.name.startswith(".")]  # the temporary folder is gone
    again = cc.unpack(order_[0].path, fresh, stage=stage_in)  # a repeated call: nothing changes
    assert again.restored == [] and sorted(again.identical) == RESTORED
    assert _checkpoints_in(fresh) == RESTORED


def test_collect_is_idempotent_and_reports_missing_parts(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage, manifest = packed
    outs = _emit_all(stage, tmp_path / "f")
    dest = tmp_path / "dest"
    first = cc.collect(dest, outs[:1])
    assert first.missing and len(first.present) + len(first.missing) == len(manifest["parts"])
    assert cc.main(["collect", str(dest), str(outs[0])]) == 1  # parts missing
    assert "missing: " in capsys.readouterr().out
    whole = cc.collect(dest, outs)
    assert whole.missing == [] and set(whole.copied) == set(first.missing)
    again = cc.collect(dest, outs)
    assert again.copied == [] and again.missing == []
    with pytest.raises(CheckpointCarryError, match="parts missing"):
        cc.bundle(_partial(dest, tmp_path), tmp_path / "c")


def test_parts_of_a_lost_fetch_are_sent_again_by_name(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """emit counts a part as sent once it is in OUT; a call whose files never came back loses it. collect
    names the missing parts, and ``emit --parts`` sends exactly those again, within the same limits."""
    stage, manifest = packed
    outs = _emit_all(stage, tmp_path / "f")
    lost = outs.pop(2)  # this call's files were never fetched
    lost_parts = sorted(p.name for p in lost.glob("demo.ckpt.0*"))
    assert lost_parts
    dest = tmp_path / "dest"
    assert cc.main(["collect", str(dest), *map(str, outs)]) == 1
    printed = capsys.readouterr().out
    assert f"missing: {' '.join(lost_parts)}" in printed and "--parts" in printed
    assert cc.emit(stage, tmp_path / "plain").emitted == []  # a plain emit has nothing left to send
    resent: list[Path] = []
    todo = list(lost_parts)
    while todo:
        out = tmp_path / f"again{len(resent)}"
        args = ["emit", str(stage), str(out), "--max-files", "2", "--max-mib", "0.15", "--parts", *todo]
        assert cc.main(args) == 0
        assert "emitted parts" in capsys.readouterr().out
        files, used = _out_usage(out)
        assert files <= 2 and used <= 0.15 * MIB
        sent = sorted(p.name for p in out.glob("demo.ckpt.0*"))
        assert sent and set(sent) <= set(todo)
        todo = [n for n in todo if n not in sent]
        resent.append(out)
    report = cc.collect(dest, [*outs, *resent])
    assert report.missing == [] and len(report.present) == len(manifest["parts"])
    assert cc.main(["emit", str(stage), str(tmp_path / "bad"), "--parts", "demo.ckpt.999"]) == 2
    assert "not parts of" in capsys.readouterr().err


def _partial(dest: Path, tmp_path: Path) -> Path:
    part = tmp_path / "partial"
    shutil.copytree(dest, part)
    next(part.glob("demo.ckpt.0*")).unlink()
    return part


def test_collect_names_a_damaged_part(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage, manifest = packed
    outs = _emit_all(stage, tmp_path / "f")
    victim = next(outs[0].glob("demo.ckpt.0*"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(CheckpointCarryError, match=victim.name):
        cc.collect(tmp_path / "dest", outs)
    assert not (tmp_path / "dest" / victim.name).exists()  # the good ones were collected, not this one
    assert len(list((tmp_path / "dest").glob("demo.ckpt.0*"))) == len(manifest["parts"]) - 1
    assert cc.main(["collect", str(tmp_path / "dest2"), *map(str, outs)]) == 2
    assert victim.name in capsys.readouterr().err


def test_unpack_rejects_a_damaged_part(
    packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path
) -> None:
    stage, _ = packed
    folders = _carry(stage, tmp_path)
    victim = folders[0].path / folders[0].parts[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.unlink()  # a hard link: do not damage the collected copy too
    victim.write_bytes(bytes(data))
    fresh = tmp_path / "fresh"
    with pytest.raises(CheckpointCarryError, match=victim.name):
        cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert not fresh.exists() or _checkpoints_in(fresh) == []


def test_unpack_rejects_a_damaged_archive_whose_parts_were_staged(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    stage, _ = packed
    folders = _carry(stage, tmp_path)
    for f in folders[:-1]:
        cc.unpack(f.path, tmp_path / "fresh", stage=tmp_path / "in")
    staged = tmp_path / "in" / "demo" / folders[0].parts[0]
    data = bytearray(staged.read_bytes())
    data[10] ^= 1
    staged.write_bytes(bytes(data))  # same size: only the tar's SHA-256 notices
    with pytest.raises(CheckpointCarryError, match="does not verify"):
        cc.unpack(folders[-1].path, tmp_path / "fresh", stage=tmp_path / "in")
    assert _checkpoints_in(tmp_path / "fresh") == []
    assert not staged.exists()  # removed: the next call with that folder stages it again
    done = cc.unpack(folders[0].path, tmp_path / "fresh", stage=tmp_path / "in")
    assert sorted(done.restored) == RESTORED


def test_unpack_refuses_a_different_checkpoint_in_place_and_accepts_an_identical_one(
    packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path
) -> None:
    stage, _ = packed
    folders = _carry(stage, tmp_path, budget_mib=1.0)
    assert len(folders) == 1
    fresh = tmp_path / "fresh"
    shutil.copytree(run / RESTORED[1], fresh / RESTORED[1])  # identical
    other = fresh / RESTORED[0]
    shutil.copytree(run / RESTORED[0], other)
    (other / "optimizer.pt").write_bytes(b"another run's state")
    with pytest.raises(CheckpointCarryError, match="exists with other contents"):
        cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert (other / "optimizer.pt").read_bytes() == b"another run's state"
    shutil.rmtree(other)
    report = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert report.restored == [RESTORED[0]] and report.identical == [RESTORED[1]]
    assert _digest(fresh / RESTORED[0]) == _digest(run / RESTORED[0])


def test_a_selection_runs_heldout_curve_travels_with_its_checkpoint(run: Path, tmp_path: Path) -> None:
    """The held-out curve lives beside checkpoint-N (``<work_dir>/heldout_curve.json``): without it the
    resumed selection run's curve lacks the points scored before the carry."""
    work = run / "lr_select" / "work" / "rte__gelora__lr1e-04"
    curve = work / "heldout_curve.json"
    curve.write_bytes(b'{"metric": "accuracy", "curve": [[1, 0.5], [3, 0.625], [5, 0.75]]}')
    (run / "lr_select" / "work" / "rte__gelora__lr3e-04" / "heldout_curve.json").write_text("{}")  # scored
    stage = tmp_path / "stage"
    manifest = cc.pack(run, stage, part_mib=PART_MIB, max_checkpoint_mib=0.5, run_copy=False)
    sel = next(c for c in manifest["checkpoints"] if c["kind"] == "selection")
    assert sel["work_files"] == [
        {
            "path": "heldout_curve.json",
            "bytes": curve.stat().st_size,
            "sha256": hashlib.sha256(curve.read_bytes()).hexdigest(),
        }
    ]
    folders = _carry(stage, tmp_path, budget_mib=1.0)
    fresh = tmp_path / "fresh"
    target = fresh / "lr_select" / "work" / "rte__gelora__lr1e-04" / "heldout_curve.json"
    target.parent.mkdir(parents=True)
    target.write_text('{"metric": "accuracy", "curve": []}')  # another curve in place: refused
    with pytest.raises(CheckpointCarryError, match="exists with other contents"):
        cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert _checkpoints_in(fresh) == []  # nothing moved
    target.unlink()
    report = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert sorted(report.restored) == sorted([*RESTORED, target.relative_to(fresh).as_posix()])
    assert target.read_bytes() == curve.read_bytes()
    again = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")  # identical: accepted
    assert again.restored == [] and target.relative_to(fresh).as_posix() in again.identical
    assert not (fresh / "lr_select" / "work" / "rte__gelora__lr3e-04").exists()


def _evil_carry(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    """A carry folder whose manifest is right for an archive holding ``member`` beside a good file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        good = tarfile.TarInfo("work/c__lora__seed0/checkpoint-1/a.bin")
        good.size = 3
        tar.addfile(good, io.BytesIO(b"abc"))
        tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    raw = buf.getvalue()
    carry = tmp_path / "carried"
    carry.mkdir()
    (carry / "demo.ckpt.000").write_bytes(raw)
    sha = hashlib.sha256(raw).hexdigest()
    manifest = {
        "schema": cc.SCHEMA,
        "run": "demo",
        "created": "2026-12-02T00:00:00+00:00",
        "part_bytes": len(raw),
        "tar": {"bytes": len(raw), "sha256": sha},
        "parts": [{"name": "demo.ckpt.000", "bytes": len(raw), "sha256": sha}],
        "checkpoints": [
            {
                "path": "work/c__lora__seed0/checkpoint-1",
                "kind": "cell",
                "step": 1,
                "bytes": 3,
                "files": [{"path": "a.bin", "bytes": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}],
            }
        ],
        "skipped": [],
    }
    (carry / "demo.ckpt.json").write_text(json.dumps(manifest))
    return carry


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = target
    m.size = 4 if kind == tarfile.REGTYPE else 0
    return m


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("work/c__lora__seed0/checkpoint-1/../../../../evil"), "'..'"),
        (_member("/tmp/evil-ckpt-carry"), "absolute"),
        (_member("work/c__lora__seed0/checkpoint-1/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_member("work/c__lora__seed0/checkpoint-1/hard", tarfile.LNKTYPE, "a.bin"), "link"),
        (_member("work/c__lora__seed0/checkpoint-1/dev", tarfile.CHRTYPE), "device"),
        (_member("work/other/evil"), "outside the manifest"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "device", "outside"],
)
def test_unpack_rejects_unsafe_members(member: tarfile.TarInfo, why: str, tmp_path: Path) -> None:
    carry = _evil_carry(tmp_path, member, b"evil")
    run = tmp_path / "a" / "b" / "c" / "run"
    with pytest.raises(CheckpointCarryError, match=why):
        cc.unpack(carry, run, stage=tmp_path / "in")
    assert not list(tmp_path.rglob("evil")) and not Path("/tmp/evil-ckpt-carry").exists()
    assert _checkpoints_in(run) == [] and [p.name for p in run.iterdir()] == []


def test_a_safe_handmade_archive_restores(tmp_path: Path) -> None:
    """The control of the unsafe-member test: the same construction with a plain file restores."""
    carry = _evil_carry(tmp_path, _member("work/c__lora__seed0/checkpoint-1/b.bin"), b"fine")
    manifest = json.loads((carry / "demo.ckpt.json").read_text())
    manifest["checkpoints"][0]["files"].append(
        {"path": "b.bin", "bytes": 4, "sha256": hashlib.sha256(b"fine").hexdigest()}
    )
    (carry / "demo.ckpt.json").write_text(json.dumps(manifest))
    report = cc.unpack(carry, tmp_path / "run", stage=tmp_path / "in")
    assert report.restored == ["work/c__lora__seed0/checkpoint-1"]
    assert (tmp_path / "run" / "work/c__lora__seed0/checkpoint-1/b.bin").read_bytes() == b"fine"


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("checkpoint", "work/../../cells"),
        ("checkpoint", "work/c__lora__seed0/../../../x/checkpoint-1"),
        ("checkpoint", "work/../checkpoint-1"),
        ("checkpoint", "/tmp/work/c/checkpoint-1"),
        ("checkpoint", "cells/c__lora__seed0/checkpoint-1"),
        ("checkpoint", "work/c__lora__seed0/checkpoint-1/../.."),
        ("file", "../../../evil"),
        ("file", "/etc/passwd"),
        ("file", "sub//a.bin"),
        ("file", "sub/./a.bin"),
        ("run", ".."),
        ("run", "."),
        ("run", ".hidden"),
    ],
)
def test_a_tampered_manifest_is_refused(where: str, value: str, tmp_path: Path) -> None:
    """A manifest's paths decide where unpack moves folders: only work/<name>/checkpoint-N (or
    lr_select/work/...) and relative file paths without '..' pass, whatever the archive holds."""
    carry = _evil_carry(tmp_path, _member("work/c__lora__seed0/checkpoint-1/b.bin"), b"fine")
    manifest = json.loads((carry / "demo.ckpt.json").read_text())
    if where == "checkpoint":
        manifest["checkpoints"][0]["path"] = value
    elif where == "file":
        manifest["checkpoints"][0]["files"][0]["path"] = value
    else:
        manifest["run"] = value
    (carry / "demo.ckpt.json").write_text(json.dumps(manifest))
    run = tmp_path / "a" / "b" / "run"
    with pytest.raises(CheckpointCarryError, match="unsafe"):
        cc.unpack(carry, run, stage=tmp_path / "in")
    with pytest.raises(CheckpointCarryError, match="unsafe"):
        cc.read_manifest(carry / "demo.ckpt.json")
    assert not run.exists() and not (tmp_path / "a" / "cells").exists()


# ------------------------------------------------------------------------------------------------ bundle
def test_bundle_budget_defaults_to_what_the_tree_leaves(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage, manifest = packed
    outs = _emit_all(stage, tmp_path / "f")
    dest = tmp_path / "dest"
    cc.collect(dest, outs)
    # a tree of 62.8 MiB leaves 64 - 62.8 - 1 = 0.2 MiB a folder
    monkeypatch.setattr(cc, "tree_bytes", lambda root: int(62.8 * MIB))
    assert cc.default_budget_mib(tmp_path) == pytest.approx(0.2, abs=1e-5)
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck")
    assert all(f.bytes <= 0.2 * MIB for f in folders)
    assert all(tar_bytes([f.path]) + int(62.8 * MIB) <= 63 * MIB for f in folders)
    # the next part would not have fitted in the folder before
    sizes = {p["name"]: tar_bytes([dest / p["name"]]) for p in manifest["parts"]}
    for f, nxt in zip(folders, folders[1:], strict=False):
        assert f.bytes + sizes[nxt.parts[0]] > 0.2 * MIB
    assert [f.path.name for f in folders] == [f"ck{k}" for k in range(len(folders))]
    # a larger budget later: fewer folders, the stale ones removed
    fewer = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=1.0)
    assert len(fewer) == 1 and sorted(p.name for p in (tmp_path / "carry").iterdir()) == ["ck0"]
    monkeypatch.setattr(cc, "tree_bytes", lambda root: int(63.5 * MIB))
    with pytest.raises(ConfigError, match="budget"):
        cc.bundle(dest, tmp_path / "carry", prefix="ck")


def test_bundle_hard_links_and_prints_the_device_commands(
    packed: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stage, _ = packed
    dest = tmp_path / "dest"
    cc.collect(dest, _emit_all(stage, tmp_path / "f"))
    assert (
        cc.main(["bundle", str(dest), str(tmp_path / "carry"), "--prefix", "ck", "--budget-mib", "0.12"]) == 0
    )
    out = capsys.readouterr().out
    folders = sorted((tmp_path / "carry").iterdir())
    assert len(folders) >= 3
    for f in folders:
        assert f"python3 -m validation.finetune.ckpt_carry unpack {f} runs/demo" in out
        for p in f.glob("demo.ckpt.0*"):
            assert p.stat().st_ino == (dest / p.name).stat().st_ino  # a hard link, no copy


def test_run_copy_travels_in_the_first_folder(
    packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path
) -> None:
    stage, _ = packed
    dest = tmp_path / "dest"
    cc.collect(dest, _emit_all(stage, tmp_path / "f"))
    fetched = tmp_path / "fetched-run" / "demo"  # what runs.tgz holds: no work/ ... but a claim and a hold
    shutil.copytree(run, fetched, ignore=shutil.ignore_patterns("work"))
    (fetched / "logs").mkdir()
    (fetched / "logs" / "rte__lora__seed0.log").write_text("epoch 1\n")
    (fetched / "claims").mkdir()
    (fetched / "claims" / "rte__lora__seed0.claim").write_text("{}")
    (fetched / "lr_select" / "rte__gelora.claim").write_text("{}")
    (fetched / "lr_select" / "rte__gelora.hold").write_text("{}")
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=0.12, run_copy=fetched)
    assert folders[0].run_copy and (folders[0].path / "demo.run.tar").is_file()
    assert not any(f.run_copy for f in folders[1:])
    fresh = tmp_path / "next" / "runs" / "demo"
    first = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in", run_copy=True)
    assert "extracted" in (first.run_copy or "")
    probe = tmp_path / "probe"
    probe.mkdir()
    assert fresh.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777  # not mkdtemp's 0700
    kept = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()}
    assert kept == {
        "grid.json",
        "cells/rte__lora__seed1.json",
        "lr_select/rte__gelora.json",
        "lr_select/stsb__lora.json",
        "logs/rte__lora__seed0.log",
    }
    for f in folders[1:]:
        last = cc.unpack(f.path, fresh, stage=tmp_path / "in", run_copy=True)
    assert "no run copy" in (last.run_copy or "") and sorted(last.restored) == RESTORED
    assert _checkpoints_in(fresh) == RESTORED


def _bundle_with_run_copy(packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path) -> Path:
    stage, _ = packed
    dest = tmp_path / "dest"
    cc.collect(dest, _emit_all(stage, tmp_path / "f"))
    fetched = tmp_path / "fetched-run" / "demo"
    shutil.copytree(run, fetched, ignore=shutil.ignore_patterns("work"))
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=1.0, run_copy=fetched)
    assert len(folders) == 1 and folders[0].run_copy
    return folders[0].path


def test_run_copy_fills_a_run_directory_created_empty_before(
    packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every waves.sh command runs ``mkdir -p "$R"``: an empty RUN_DIR must still receive the run copy,
    else the relaunch retrains finished cells."""
    carry = _bundle_with_run_copy(packed, run, tmp_path)
    fresh = tmp_path / "next" / "runs" / "demo"
    (fresh / "logs").mkdir(parents=True)  # what an earlier waves.sh command leaves
    (fresh / "logs" / "waves.log").write_text("started\n")
    assert cc.main(["unpack", str(carry), str(fresh), "--stage", str(tmp_path / "in"), "--run-copy"]) == 0
    assert "merged" in capsys.readouterr().out
    assert (fresh / "grid.json").read_bytes() == (run / "grid.json").read_bytes()
    assert (fresh / "cells" / "rte__lora__seed1.json").is_file()
    assert (fresh / "logs" / "waves.log").read_text() == "started\n"
    assert _checkpoints_in(fresh) == RESTORED
    # again: RUN_DIR has grid.json now and the copy's files, identical: fine
    assert cc.main(["unpack", str(carry), str(fresh), "--stage", str(tmp_path / "in"), "--run-copy"]) == 0
    assert "not needed" in capsys.readouterr().out


def test_run_copy_is_not_used_over_another_run_and_says_so(
    packed: tuple[Path, dict[str, Any]], run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    carry = _bundle_with_run_copy(packed, run, tmp_path)
    # a RUN_DIR without grid.json holding another version of a copied file: refused, nothing written
    clash = tmp_path / "clash" / "demo"
    (clash / "cells").mkdir(parents=True)
    (clash / "cells" / "rte__lora__seed1.json").write_text('{"other": 1}')
    assert cc.main(["unpack", str(carry), str(clash), "--stage", str(tmp_path / "in1"), "--run-copy"]) == 2
    assert "differ from the run copy" in capsys.readouterr().err
    assert sorted(p.relative_to(clash).as_posix() for p in clash.rglob("*")) == [
        "cells",
        "cells/rte__lora__seed1.json",
    ]
    # a RUN_DIR with its own grid.json: left alone, said, exit 1 (the checkpoints are still restored)
    other = tmp_path / "other" / "demo"
    other.mkdir(parents=True)
    (other / "grid.json").write_text('{"schema": 1, "cells": ["x"]}\n')
    assert cc.main(["unpack", str(carry), str(other), "--stage", str(tmp_path / "in2"), "--run-copy"]) == 1
    assert "NOT used" in capsys.readouterr().out
    assert (other / "grid.json").read_text() == '{"schema": 1, "cells": ["x"]}\n'
    assert not (other / "cells").exists() and _checkpoints_in(other) == RESTORED


def test_pack_s_run_copy_travels_first_and_is_used_without_run_copy_options(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """pack snapshots the run directory (no work/, claims, holds) at the moment of the checkpoints; emit
    sends it first, collect verifies it, bundle puts it into ck0 and unpack extracts it, no --run-copy."""
    (run / "claims").mkdir()
    (run / "claims" / "rte__lora__seed1.claim").write_text("{}")  # a finished cell's (left behind)
    (run / "lr_select" / "rte__gelora.hold").write_text("{}")
    stage = tmp_path / "stage"
    assert (
        cc.main(["pack", str(run), str(stage), "--part-mib", str(PART_MIB), "--max-checkpoint-mib", "0.5"])
        == 0
    )
    assert "and the run copy" in capsys.readouterr().out
    manifest = cc.read_manifest(stage / "demo.ckpt.json")
    copy = stage / "demo.run.tar"
    assert manifest["run_copy"] == {
        "name": "demo.run.tar",
        "bytes": copy.stat().st_size,
        "sha256": hashlib.sha256(copy.read_bytes()).hexdigest(),
    }
    with tarfile.open(copy) as tar:
        assert sorted(tar.getnames()) == [
            "cells/rte__lora__seed1.json",
            "grid.json",
            "lr_select/rte__gelora.json",
            "lr_select/stsb__lora.json",
        ]
    first = cc.emit(stage, tmp_path / "f" / "out0", max_files=3, max_mib=0.15)
    assert first.run_copy and (tmp_path / "f" / "out0" / "demo.run.tar").is_file()
    assert "the run copy and parts 1-1" in first.line()
    outs = [tmp_path / "f" / "out0"]
    while True:
        out = tmp_path / "f" / f"out{len(outs)}"
        r = cc.emit(stage, out, max_files=3, max_mib=0.15)
        assert not r.run_copy
        outs.append(out)
        if r.left == 0:
            break
    dest = tmp_path / "dest"
    assert cc.collect(dest, outs[1:]).missing == ["demo.run.tar", "demo.ckpt.000"]  # the first fetch lost
    assert cc.collect(dest, outs).missing == []
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=1.0)
    assert folders[0].run_copy
    assert (folders[0].path / "demo.run.tar").read_bytes() == copy.read_bytes()
    fresh = tmp_path / "next" / "runs" / "demo"
    report = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert "extracted" in (report.run_copy or "") and report.run_copy_ok
    for f in folders[1:]:
        assert cc.unpack(f.path, fresh, stage=tmp_path / "in").run_copy is None
    assert (fresh / "grid.json").read_bytes() == (run / "grid.json").read_bytes()
    assert not (fresh / "claims").exists() and not (fresh / "lr_select" / "rte__gelora.hold").exists()
    assert _checkpoints_in(fresh) == RESTORED
    # an explicit --run-copy still wins, and leaves the collected copy as it is
    fetched = tmp_path / "fetched" / "demo"
    shutil.copytree(run, fetched, ignore=shutil.ignore_patterns("work"))
    (fetched / "cells" / "mrpc__lora__seed0.json").write_text("{}")
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=1.0, run_copy=fetched)
    with tarfile.open(folders[0].path / "demo.run.tar") as tar:
        assert "cells/mrpc__lora__seed0.json" in tar.getnames()
    assert (dest / "demo.run.tar").read_bytes() == copy.read_bytes()
    assert cc.collect(dest, outs).missing == []


def test_a_run_copy_the_manifest_does_not_vouch_for_is_refused(run: Path, tmp_path: Path) -> None:
    """A swapped ``<run>.run.tar`` (its files decide which cells count as finished) is refused before anything
    is restored; an explicit ``bundle --run-copy`` is named in the carry folders' manifest and verifies."""
    stage = tmp_path / "stage"
    cc.pack(run, stage, part_mib=PART_MIB, max_checkpoint_mib=0.5)
    dest = tmp_path / "dest"
    assert cc.collect(dest, _emit_all(stage, tmp_path / "f", max_files=8, max_mib=5.0)).missing == []
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=5.0)
    fake = tmp_path / "fake"
    shutil.copytree(run, fake, ignore=shutil.ignore_patterns("work"))
    (fake / "cells" / "mrpc__lora__seed0.json").write_text("{}")  # a cell that never finished
    cc.write_run_copy(fake, folders[0].path / "demo.run.tar")  # swapped after bundle
    fresh = tmp_path / "next" / "demo"
    with pytest.raises(CheckpointCarryError, match="SHA-256 differs from the manifest"):
        cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert not fresh.exists()
    # given to bundle instead, the same fake copy is what the manifest names: it verifies and is used
    folders = cc.bundle(dest, tmp_path / "carry", prefix="ck", budget_mib=5.0, run_copy=fake)
    listed = cc.find_manifest(folders[0].path)[1]["run_copy"]
    assert (
        listed["explicit"]
        and listed["sha256"] == hashlib.sha256((folders[0].path / "demo.run.tar").read_bytes()).hexdigest()
    )
    report = cc.unpack(folders[0].path, fresh, stage=tmp_path / "in")
    assert report.run_copy_ok and (fresh / "cells" / "mrpc__lora__seed0.json").is_file()
    assert _checkpoints_in(fresh) == RESTORED


def test_a_later_archive_of_the_same_run_replaces_a_restored_stage(run: Path, tmp_path: Path) -> None:
    """Once restored, a stage keeps only its manifest and a marker: a repeated call reports the checkpoints
    as identical, and the next session's archive (another pack) of the same run is staged, not refused."""
    first = tmp_path / "first"
    cc.pack(run, first, part_mib=PART_MIB, max_checkpoint_mib=0.5, run_copy=False)
    folders = _carry(first, tmp_path / "a")
    fresh, stage_in = tmp_path / "next" / "demo", tmp_path / "in"
    fresh.mkdir(parents=True)
    for f in folders:
        report = cc.unpack(f.path, fresh, stage=stage_in)
    assert sorted(report.restored) == RESTORED
    assert sorted(p.name for p in (stage_in / "demo").iterdir()) == ["demo.ckpt.json", cc.RESTORED_MARKER]
    again = cc.unpack(folders[-1].path, fresh, stage=stage_in)
    assert again.restored == [] and sorted(again.identical) == RESTORED
    # the run trained on: a later checkpoint in a folder of its own, packed again next session
    _checkpoint(run / "work" / "rte__lora__seed0", 20, random.Random(9))
    second = tmp_path / "second"
    cc.pack(run, second, part_mib=PART_MIB, max_checkpoint_mib=0.5, run_copy=False)
    for f in _carry(second, tmp_path / "b"):
        report = cc.unpack(f.path, fresh, stage=stage_in)
    assert "work/rte__lora__seed0/checkpoint-20" in report.restored


# ------------------------------------------------------------------------------------------ integration
def _tiny_cell(
    run_dir: Path, method: str, profile: Any, stop_after: int | None = None
) -> dict[str, Any] | None:
    """Run a real ``rte`` cell of ``method`` on the CPU; with ``stop_after``, stop it at the end of that step as
    by SIGTERM (the runner's stop callback, after this one, raises StopRequested) and return None."""
    from transformers import TrainerCallback

    from validation.finetune import stop
    from validation.finetune.runner import run_cell

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if state.global_step == stop_after:
                stop.request()

    try:
        if stop_after is None:
            return run_cell("rte", method, 0, profile=profile, run_dir=run_dir, device="cpu")
        with pytest.raises(stop.StopRequested):
            run_cell(
                "rte",
                method,
                0,
                profile=profile,
                run_dir=run_dir,
                device="cpu",
                callback_factories=[lambda context: StopAfter()],
            )
        return None
    finally:
        stop.clear()


def test_a_carried_checkpoint_resumes_the_cell_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """A real LoRA cell (tiny random BERT, test profile, 12 steps, a checkpoint every 3) stopped after step
    7 as by SIGTERM, carried through pack/emit/collect/bundle/unpack into a fresh run directory (seeded from
    a run copy without work/), resumes from checkpoint-6 and ends as the uninterrupted cell: the same metrics,
    eval loss and loss curve (as test_adalora_resume.py compares; not train_loss, which covers the steps of
    the resumed train() call only)."""
    from transformers.utils import logging

    from synthetic.tiny_models import save_tiny_model
    from validation.finetune.runner import get_profile

    logging.set_verbosity_error()
    model = save_tiny_model("bert", tmp_path / "bert")
    profile = get_profile("test", model=str(model), batch_size=4, epochs=1.5, save_steps=3)

    reference = _tiny_cell(tmp_path / "reference" / "demo", "lora", profile)
    assert reference is not None
    first = tmp_path / "session1" / "demo"
    _tiny_cell(first, "lora", profile, stop_after=7)
    assert _checkpoints_in(first) == ["work/rte__lora__seed0/checkpoint-6"]

    manifest = cc.pack(first, tmp_path / "stage")
    assert [c["path"] for c in manifest["checkpoints"]] == ["work/rte__lora__seed0/checkpoint-6"]
    out = tmp_path / "OUT"
    assert cc.emit(tmp_path / "stage", out).left == 0
    fetched_run = tmp_path / "fetched" / "demo"  # what runs.tgz brings back: the run without work/
    shutil.copytree(first, fetched_run, ignore=shutil.ignore_patterns("work"))
    cc.collect(tmp_path / "collected", [out])
    folders = cc.bundle(tmp_path / "collected", tmp_path / "devcarry", budget_mib=30, run_copy=fetched_run)
    fresh = tmp_path / "session2" / "runs" / "demo"
    for k, f in enumerate(folders):
        report = cc.unpack(f.path, fresh, stage=tmp_path / "in", run_copy=k == 0)
    assert report.restored == ["work/rte__lora__seed0/checkpoint-6"]

    result = _tiny_cell(fresh, "lora", profile)
    assert result is not None
    train, ref_train = result["train"], reference["train"]
    assert train["resumed_from"] == os.path.join("work", "rte__lora__seed0", "checkpoint-6")
    assert train["steps"] == ref_train["steps"] == 12
    assert train["loss_curve"] == ref_train["loss_curve"]
    assert result["metrics"] == reference["metrics"] and result["eval_loss"] == reference["eval_loss"]
    (row,) = cc.verify(tmp_path / "collected", fresh)
    assert (row.status, row.detail) == ("resumed", "work/rte__lora__seed0/checkpoint-6")
    assert cc.main(["verify", str(tmp_path / "collected"), str(fresh)]) == 0


def _verify_fixture(root: Path) -> tuple[Path, Path]:
    """A manifest of seven carried checkpoints and a run directory in which each went on differently."""
    carried = [
        ("work/t__lora__seed0/checkpoint-500", "cell"),
        ("work/t__lora__seed1/checkpoint-500", "cell"),
        ("work/t__lora__seed2/checkpoint-500", "cell"),
        ("work/t__lora__seed3/checkpoint-500", "cell"),
        ("work/t__lora__seed4/checkpoint-500", "cell"),
        ("work/t__lora__seed5/checkpoint-500", "cell"),
        ("work/t__lora__seed6/checkpoint-500", "cell"),
        ("lr_select/work/t__lora__lr0.0005/checkpoint-700", "selection"),
        ("lr_select/work/t__gelora__lr0.0005/checkpoint-700", "selection"),
    ]
    manifest = root / "x.ckpt.json"
    manifest.write_text(
        json.dumps(
            {
                "schema": cc.SCHEMA,
                "run": "x",
                "parts": [],
                "tar": {},
                "checkpoints": [{"path": p, "kind": k, "files": []} for p, k in carried],
            }
        )
    )
    run = root / "run"
    (run / "cells").mkdir(parents=True)
    (run / "lr_select").mkdir()
    trains = {
        "t__lora__seed0": {
            "resumed_from": "work/t__lora__seed0/checkpoint-500",
            "restarted_discarding": None,
        },
        "t__lora__seed1": {
            "resumed_from": "work/t__lora__seed1/checkpoint-1000",
            "restarted_discarding": None,
        },
        "t__lora__seed2": {"resumed_from": None, "restarted_discarding": None},
        "t__lora__seed3": {
            "resumed_from": None,
            "restarted_discarding": "work/t__lora__seed3/checkpoint-500",
        },
        # a resume from a LOWER step than the carried one: the carried checkpoint was not used
        "t__lora__seed6": {
            "resumed_from": "work/t__lora__seed6/checkpoint-300",
            "restarted_discarding": None,
        },
    }  # seed 4: no result yet
    for name, train in trains.items():
        (run / "cells" / f"{name}.json").write_text(json.dumps({"train": {"steps": 9, **train}}))
    failed = {"error": "CheckpointMismatchError", "message": "written by a run of another configuration"}
    (run / "cells" / "t__lora__seed5.failed.json").write_text(json.dumps(failed))
    rate = {"steps": 9, "resumed_from": "lr_select/work/t__lora__lr0.0005/checkpoint-700"}
    (run / "lr_select" / "t__lora.json").write_text(json.dumps({"runs": {"0.0005": rate}}))
    (run / "lr_select" / "t__gelora.json").write_text(json.dumps({"runs": {"0.0005": {"steps": 9}}}))
    return manifest, run


def test_verify_says_how_each_carried_run_went_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``verify``: resumed from the carried checkpoint, from a later one of the same run (resumed, then
    interrupted again), from scratch or restarted (a failed carry: exit 1), not finished, or a result of
    older code that records no resume (a selection record before 2026-12-01)."""
    manifest, run = _verify_fixture(tmp_path)
    rows = cc.verify(manifest, run)
    assert [r.status for r in rows] == [
        "resumed",
        "resumed later",
        "from scratch",
        "restarted",
        "unfinished",
        "failed",
        "from scratch",
        "resumed",
        "not recorded",
    ]
    assert "CheckpointMismatchError" in rows[5].detail and "checkpoint-300" in rows[6].detail
    assert [r.kind for r in rows][-2:] == ["selection", "selection"]
    assert cc.main(["verify", str(manifest), str(run)]) == 1
    out = capsys.readouterr().out
    assert (
        "9 carried: 2 resumed, 1 resumed later, 2 from scratch, 1 restarted, 1 unfinished, 1 failed, "
        "1 not recorded" in out
    )
    for seed in (2, 3, 6):  # one failure type at a time: each alone gives exit 1
        (run / "cells" / f"t__lora__seed{seed}.json").unlink()
    assert cc.main(["verify", str(manifest), str(run)]) == 1  # the failed cell
    (run / "cells" / "t__lora__seed5.failed.json").unlink()
    assert cc.main(["verify", str(tmp_path), str(run)]) == 0  # the folder holding the manifest
    # a run directory that is not one (a typo, or <fetched> instead of <fetched>/runs/<run>): an error
    assert cc.main(["verify", str(manifest), str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_geolora_and_head_only_checkpoints_are_small_enough_to_travel(tmp_path: Path) -> None:
    """GeoLoRA and head-only models are not peft models; their Trainer checkpoints held the whole model (on
    MPNet-base about 420 MiB, far above ``--max-checkpoint-mib 60``) and never travelled. They now hold the
    trained tensors only (validation/finetune/trained_checkpoint.py): here, with a limit of half the tiny
    model's weight file, ``status`` lists both cells as packed and ``pack`` takes them."""
    from transformers.utils import logging

    from synthetic.tiny_models import save_tiny_model
    from validation.finetune.runner import get_profile

    logging.set_verbosity_error()
    model = save_tiny_model("bert", tmp_path / "bert")
    limit = (model / "model.safetensors").stat().st_size / 2 / MIB  # about 1.9 MiB; a checkpoint of old: 4.6
    profile = get_profile("test", model=str(model), batch_size=4, epochs=1.5, save_steps=3)
    run = tmp_path / "demo"
    for method in ("geolora", "head_only"):
        _tiny_cell(run, method, profile, stop_after=4)
    expected = ["work/rte__geolora__seed0/checkpoint-3", "work/rte__head_only__seed0/checkpoint-3"]
    assert _checkpoints_in(run) == expected
    lines = cc.status_lines(run, max_checkpoint_mib=limit)
    for path in expected:
        line = next(x for x in lines if x.startswith(path.rpartition("/")[0] + " "))
        assert line.endswith("unfinished: packed"), lines
    manifest = cc.pack(run, tmp_path / "stage", max_checkpoint_mib=limit, run_copy=False)
    assert [c["path"] for c in manifest["checkpoints"]] == expected


def _select(run_dir: Path, profile: Any, monkeypatch: pytest.MonkeyPatch, stop_after: int | None) -> Any:
    """The one-rate learning-rate selection run of ``rte``/``lora``, stopped after ``stop_after`` steps as by
    SIGTERM (None: to its end; returns the selection record)."""
    from transformers import TrainerCallback

    import validation.finetune.runner as runner_mod
    from validation.finetune.lr_select import select_learning_rate

    real = runner_mod.train_and_score

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if state.global_step == stop_after:
                stop.request()

    def wrapped(*a: Any, **kw: Any) -> Any:
        if stop_after is not None:
            kw["callback_factories"] = [lambda ctx: StopAfter()]
        return real(*a, **kw)

    monkeypatch.setattr(runner_mod, "train_and_score", wrapped)
    try:
        if stop_after is None:
            return select_learning_rate("rte", "lora", profile=profile, run_dir=run_dir, device="cpu")
        with pytest.raises(stop.StopRequested):
            select_learning_rate("rte", "lora", profile=profile, run_dir=run_dir, device="cpu")
        return None
    finally:
        stop.clear()
        monkeypatch.setattr(runner_mod, "train_and_score", real)


def test_a_carried_selection_run_resumes_and_verify_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real selection run (tiny BERT, one rate) stopped after step 7, carried through
    pack/emit/collect/bundle/unpack into a fresh run directory, resumes from checkpoint-6 to the
    uninterrupted record (score, held-out convergence curve), and ``verify`` reads "resumed" from the rate's
    ``resumed_from`` (written by the runner with the path the manifest carries)."""
    from transformers.utils import logging

    from synthetic.tiny_models import save_tiny_model
    from validation.finetune.runner import get_profile

    logging.set_verbosity_error()
    model = save_tiny_model("bert", tmp_path / "bert")
    profile = get_profile(
        "test", model=str(model), batch_size=4, epochs=1.5, save_steps=3, lr_select=True, lr_grid=(1.0,)
    )
    reference = _select(tmp_path / "reference" / "demo", profile, monkeypatch, None)
    first = tmp_path / "session1" / "demo"
    _select(first, profile, monkeypatch, 7)
    manifest = cc.pack(first, tmp_path / "stage")
    (carried,) = [c["path"] for c in manifest["checkpoints"]]
    assert carried.startswith("lr_select/work/rte__lora__lr") and carried.endswith("/checkpoint-6")
    assert cc.emit(tmp_path / "stage", tmp_path / "OUT").left == 0
    fetched = tmp_path / "fetched" / "demo"
    shutil.copytree(first, fetched, ignore=shutil.ignore_patterns("work"))
    cc.collect(tmp_path / "collected", [tmp_path / "OUT"])
    fresh = tmp_path / "session2" / "runs" / "demo"
    folders = cc.bundle(tmp_path / "collected", tmp_path / "devcarry", budget_mib=30, run_copy=fetched)
    for k, f in enumerate(folders):
        cc.unpack(f.path, fresh, stage=tmp_path / "in", run_copy=k == 0)
    record = _select(fresh, profile, monkeypatch, None)
    assert record["scores"] == reference["scores"]
    (key,) = record["runs"]
    assert record["runs"][key]["convergence"] == reference["runs"][key]["convergence"]
    assert record["runs"][key]["resumed_from"] == carried
    (row,) = cc.verify(tmp_path / "collected", fresh)
    assert (row.kind, row.status) == ("selection", "resumed")
