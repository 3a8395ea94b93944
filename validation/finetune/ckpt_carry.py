"""Carry the last checkpoints of unfinished runs from one device session to the next.

A device session lends a GPU machine for at most 30 minutes and loses every file on it afterwards; a call
brings back at most 8 files of at most 16 MiB each (64 MiB together) and carries in at most 64 MiB (the
working tree included). A cell that cannot finish within one session resumes in the next one only if its
last checkpoint travels: out through the fetched files of one or more calls, in through carried folders of
the next session's calls. The runner then resumes it by itself (``train.resumed_from``).

Subcommands (``python -m validation.finetune.ckpt_carry SUBCOMMAND ...``)::

    status RUN_DIR                      # the work folders, their last checkpoint (step, MiB), final or not
    pack RUN_DIR STAGE                  # GPU side: one tar of the unfinished runs' last checkpoints, in parts
    emit STAGE OUT [--parts NAME...]    # GPU side, last in each call: the manifest and the next parts (or the
                                        # named ones again, after a lost fetch) into $OUT
    collect DEST FETCHED...             # CPU side: the fetched parts into DEST, each verified
    bundle DEST CARRY_ROOT --prefix ck  # CPU side: the parts spread over carry folders that fit a call
    unpack CARRY_DIR RUN_DIR            # GPU side, once per carry folder: verify, and restore when complete
    verify MANIFEST RUN_DIR             # CPU side, afterwards: each carried run resumed from its checkpoint?
                                        # (exit 1 when one trained from scratch or restarted)

The archive is an uncompressed tar with paths relative to the run directory (``work/<cell>/checkpoint-N/``,
``lr_select/work/<task>__<method>__lr<key>/checkpoint-N/``, and beside a checkpoint the work folder's
``heldout_curve.json`` when present: a resumed selection run keeps its held-out curve), deterministic (members sorted, mtime 0, uid/gid
0, modes 0644/0755), split into parts ``<run>.ckpt.NNN`` and described by ``<run>.ckpt.json`` (SHA-256 of
every part, of the tar and of every file of every checkpoint, and of the run copy ``<run>.run.tar``: the run
directory without work folders, claims and caches, written by ``pack`` at the same moment, sent first). Nothing is restored before the tar and every
file verify; a checkpoint folder (or curve file) already in place is accepted when identical and refused when
it differs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from gelora._io import atomic_write_bytes, atomic_write_json, read_json, replacing, set_default_mode
from gelora.errors import CheckpointCarryError, ConfigError, GeLoRAError, ResultFileError
from gelora.model_store import sha256_file
from validation.carry_size import LIMIT_MIB, MIB, tar_bytes, tree_bytes
from validation.finetune.checkpoints import (
    CHECKPOINT_RE,
    TRAINER_STATE,
    last_checkpoint,
    partial_checkpoints,
)
from validation.finetune.claims import is_live
from validation.finetune.heldout_curve import FILE_NAME as HELDOUT_CURVE_FILE

SCHEMA = "gelora-ckpt-carry/1"
#: names the device tool brings back (letters, digits, '.', '_' and '-')
SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
#: a name of one path component that the manifest may hold: SAFE_NAME, and not starting with '.' ('.', '..')
_COMPONENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"
#: a checkpoint's path in a manifest: a cell's or a selection run's work folder, one checkpoint folder in it
CHECKPOINT_PATH_RE = re.compile(rf"^(work|lr_select/work)/{_COMPONENT}/checkpoint-[0-9]+$")
#: largest file the device tool brings back, bytes
FETCH_FILE_LIMIT = 16 * MIB
#: folders of a run directory that a run copy leaves out (checkpoints, token caches, claims, worker specs)
RUN_COPY_EXCLUDE = ("work", "lr_select/work", "claims", "workers", "cache")
#: suffixes of files a run copy leaves out (selection runs' claims and holds: the next session resumes them)
RUN_COPY_EXCLUDE_SUFFIXES = (".claim", ".hold")
#: files of a work folder, beside its checkpoints, that a resumed run reads (a selection run's held-out curve,
#: :mod:`validation.finetune.heldout_curve`): carried with the checkpoint when present
WORK_FILES = (HELDOUT_CURVE_FILE,)
_CHUNK = 1 << 20


# ------------------------------------------------------------------------------------------------ names
def manifest_name(run: str) -> str:
    """``<run>.ckpt.json``: the manifest of a run's checkpoint archive."""
    return f"{run}.ckpt.json"


def part_name(run: str, index: int) -> str:
    """``<run>.ckpt.NNN``: part ``index`` (0-based) of a run's checkpoint archive."""
    return f"{run}.ckpt.{index:03d}"


def emitted_name(run: str) -> str:
    """``<run>.ckpt.emitted.json``: in the stage, the parts :func:`emit` has already copied out."""
    return f"{run}.ckpt.emitted.json"


#: file a stage holds once its archive is restored (the parts themselves are then removed)
RESTORED_MARKER = "restored"


def run_copy_name(run: str) -> str:
    """``<run>.run.tar``: a copy of the run directory without its work folders (``bundle --run-copy``)."""
    return f"{run}.run.tar"


def _part_re(run: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(run)}\.ckpt\.\d{{3}}$")


def _mib(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _copy_atomic(src: Path, dst: Path, *, link: bool = False) -> None:
    """``src`` to ``dst`` through a temporary name in ``dst``'s folder and ``os.replace``; hard-linked when
    ``link`` and the file system allows it, else copied."""
    with replacing(dst) as (fd, tmp):
        os.close(fd)
        linked = False
        if link:
            os.unlink(tmp)
            try:
                os.link(src, tmp)
                linked = True
            except OSError:
                pass
        if not linked:
            shutil.copyfile(src, tmp)
            set_default_mode(tmp)


# ------------------------------------------------------------------------------------------- scanning
@dataclass
class WorkFolder:
    """One training work folder of a run directory and its last checkpoint.

    Attributes
    ----------
    path
        Relative to the run directory, POSIX form (``work/<cell>`` or ``lr_select/work/<run>__lr<key>``).
    kind
        ``"cell"`` or ``"selection"``.
    checkpoint
        The last checkpoint folder, relative to the run directory, or None when there is none.
    step
        Its optimizer step (the number in ``checkpoint-<step>``), or None.
    bytes
        Bytes of the checkpoint's regular files (0 without a checkpoint).
    final
        Why the run's result is already final (the work folder is left behind), or None when it is not.
    links
        Whether the checkpoint holds anything but regular files and folders (links, devices): not packed.
    running
        The live claim file (relative path) of a process still training this run, or None: its last
        checkpoint may be half written.
    partial
        Checkpoint folders (relative paths) above ``checkpoint`` without ``trainer_state.json``: saves cut
        short (a hard exit), not carried.
    """

    path: str
    kind: str
    checkpoint: str | None = None
    step: int | None = None
    bytes: int = 0
    final: str | None = None
    links: bool = False
    running: str | None = None
    partial: list[str] = field(default_factory=list)


def _walk(root: Path) -> Iterator[Path]:
    """Every path below ``root`` (not following links), sorted by path components."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            yield Path(dirpath) / name


def _tree_size(root: Path) -> tuple[int, bool]:
    """Bytes of the regular files below ``root`` and whether anything else (a link, a device) is there."""
    total, other = 0, False
    for p in _walk(root):
        if p.is_symlink() or not (p.is_file() or p.is_dir()):
            other = True
        elif p.is_file():
            total += p.stat().st_size
    return total, other


def _selection_final(run_dir: Path, name: str) -> str | None:
    """Why the selection run ``<task>__<method>__lr<key>`` is final, or None."""
    base, sep, key = name.rpartition("__lr")
    if not sep:
        return None
    record = run_dir / "lr_select" / f"{base}.json"
    if not record.is_file():
        return None
    try:
        data = read_json(record)
    except ResultFileError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("done") is True:
        return f"selection done (lr_select/{base}.json)"
    if key in (data.get("scores") or {}):
        return f"rate {key} scored (lr_select/{base}.json)"
    return None


def scan(run_dir: str | Path) -> list[WorkFolder]:
    """Every work folder of a run directory with its last checkpoint and whether its result is final.

    Parameters
    ----------
    run_dir
        A grid run directory (``cells/``, ``lr_select/``, ``work/``, ``lr_select/work/``).

    Returns
    -------
    list of WorkFolder
        Cells' work folders (``work/*``) first, then selection runs' (``lr_select/work/*``), each sorted by
        name. A cell is final when ``cells/<name>.json`` exists; a selection run when
        ``lr_select/<task>__<method>.json`` says ``"done": true`` or holds the rate's score.
    """
    run_dir = Path(run_dir)
    out: list[WorkFolder] = []
    for rel, kind in (("work", "cell"), ("lr_select/work", "selection")):
        parent = run_dir / rel
        if not parent.is_dir():
            continue
        for wd in sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink()):
            folder = WorkFolder(path=f"{rel}/{wd.name}", kind=kind)
            if kind == "cell":
                if (run_dir / "cells" / f"{wd.name}.json").is_file():
                    folder.final = f"cell finished (cells/{wd.name}.json)"
                claim = f"claims/{wd.name}.claim"
            else:
                folder.final = _selection_final(run_dir, wd.name)
                claim = f"lr_select/{wd.name.rpartition('__lr')[0]}.claim"
            if is_live(run_dir / claim):
                folder.running = claim
            folder.partial = [f"{folder.path}/{p.name}" for p in partial_checkpoints(wd)]
            ck = last_checkpoint(wd)
            if ck is not None:
                m = CHECKPOINT_RE.fullmatch(ck.name)
                assert m is not None
                folder.checkpoint = f"{folder.path}/{ck.name}"
                folder.step = int(m.group(1))
                folder.bytes, folder.links = _tree_size(ck)
            out.append(folder)
    return out


# ------------------------------------------------------------------------------------------ tar writing
def _tar_info(name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type, info.mode, info.size = tarfile.DIRTYPE, 0o755, 0
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, size
    return info


def write_tar(out: BinaryIO, entries: Iterable[tuple[str, Path]]) -> None:
    """A deterministic uncompressed tar of folders' contents.

    Parameters
    ----------
    out
        A binary file open for writing.
    entries
        ``(archive_path, folder)`` pairs: the folder is stored under ``archive_path`` with everything below
        it (regular files and folders only; a regular file in place of the folder is stored alone), members sorted by path components, mtime 0, uid/gid 0, no
        owner names, mode 0644 (files) or 0755 (folders). The same contents give the same bytes.
    """
    members: list[tuple[tuple[str, ...], str, Path]] = []
    for arc, folder in entries:
        members.append((tuple(arc.split("/")), arc, folder))
        if not folder.is_dir():
            continue
        for p in _walk(folder):
            if p.is_symlink() or not (p.is_file() or p.is_dir()):
                continue
            rel = p.relative_to(folder).as_posix()
            members.append((tuple(f"{arc}/{rel}".split("/")), f"{arc}/{rel}", p))
    members.sort(key=lambda m: m[0])
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for _, arc, p in members:
            if p.is_dir():
                tar.addfile(_tar_info(arc, directory=True))
            else:
                with open(p, "rb") as fh:
                    tar.addfile(_tar_info(arc, size=p.stat().st_size), fh)


def _file_list(folder: Path) -> list[dict[str, Any]]:
    return [
        {"path": p.relative_to(folder).as_posix(), "bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in _walk(folder)
        if p.is_file() and not p.is_symlink()
    ]


# ------------------------------------------------------------------------------------------------ pack
def _inside(path: Path, root: Path) -> bool:
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def _run_name(run_dir: Path) -> str:
    run = run_dir.resolve().name
    if not re.fullmatch(_COMPONENT, run):
        raise ConfigError(
            f"run directory name {run!r}: the device tool brings back only names of letters, digits, "
            "'.', '_' and '-' (not starting with '.')"
        )
    return run


def pack(
    run_dir: str | Path,
    stage: str | Path,
    *,
    part_mib: float = 15.0,
    max_checkpoint_mib: float = 60.0,
    include_running: bool = False,
    run_copy: bool = True,
) -> dict[str, Any]:
    """Pack the last checkpoint of every unfinished run of ``run_dir`` into parts in ``stage``.

    Parameters
    ----------
    run_dir
        The grid run directory.
    stage
        A folder outside ``run_dir``; the run's earlier parts, manifest and emit record there are replaced.
    part_mib
        Largest part, MiB (at most 16: the largest file a call brings back).
    max_checkpoint_mib
        Checkpoints larger than this (MiB; e.g. full fine-tuning, about 1.3 GB on MPNet-base) are skipped
        and listed in the manifest's ``skipped``.
    include_running
        Also pack runs whose claim is live (a process still trains them: their last checkpoint may be
        half written). By default they are skipped: stop them (``waves.sh stop``/``triage --apply``) and
        wait for them to exit first.
    run_copy
        Also write ``<run>.run.tar`` (:func:`write_run_copy`: the run directory without its work folders,
        claims, worker specs and caches) into ``stage`` and list it in the manifest's ``run_copy``: taken
        at the same moment as the checkpoints, :func:`emit` sends it first, :func:`collect`, :func:`bundle`
        and :func:`unpack` use it unless given another. Left out (and listed in ``skipped``) when larger
        than a fetched file may be (16 MiB).

    Returns
    -------
    dict
        The manifest written to ``stage/<run>.ckpt.json``.

    Raises
    ------
    ConfigError
        ``stage`` is inside ``run_dir``, ``run_dir`` is not a folder or has an unsafe name, or ``part_mib``
        is out of range.
    """
    run_dir, stage = Path(run_dir), Path(stage)
    if not run_dir.is_dir():
        raise ConfigError(f"not a run directory: {run_dir}")
    if _inside(stage, run_dir):
        raise ConfigError(f"the stage {stage} is inside the run directory {run_dir}: choose another folder")
    part_bytes = int(part_mib * MIB)
    if not 0 < part_bytes <= FETCH_FILE_LIMIT:
        raise ConfigError(f"--part-mib {part_mib}: must be > 0 and at most 16 (the largest file fetched)")
    run = _run_name(run_dir)
    chosen: list[WorkFolder] = []
    skipped: list[dict[str, Any]] = []
    for wf in scan(run_dir):
        if wf.final is not None:
            skipped.append({"path": wf.path, "reason": wf.final})
        elif wf.checkpoint is None:
            skipped.append({"path": wf.path, "reason": "no checkpoint"})
        elif wf.running is not None and not include_running:
            skipped.append(
                {
                    "path": wf.checkpoint,
                    "reason": f"still running (live claim {wf.running}): stop it, wait, pack again",
                    "bytes": wf.bytes,
                }
            )
        elif wf.links:
            skipped.append(
                {"path": wf.checkpoint, "reason": "holds links or special files", "bytes": wf.bytes}
            )
        elif wf.bytes > max_checkpoint_mib * MIB:
            skipped.append(
                {
                    "path": wf.checkpoint,
                    "reason": f"{_mib(wf.bytes)} > --max-checkpoint-mib {max_checkpoint_mib:g}",
                    "bytes": wf.bytes,
                }
            )
        else:
            chosen.append(wf)
        if wf.final is None:
            skipped += [
                {
                    "path": p,
                    "reason": f"partial checkpoint (no readable {TRAINER_STATE}: its save was cut short)",
                }
                for p in wf.partial
            ]
    stage.mkdir(parents=True, exist_ok=True)
    pattern = _part_re(run)
    for old in stage.iterdir():
        if pattern.fullmatch(old.name) or old.name in (
            manifest_name(run),
            emitted_name(run),
            run_copy_name(run),
        ):
            old.unlink()
    checkpoints: list[dict[str, Any]] = []
    for wf in chosen:
        assert wf.checkpoint is not None
        files = _file_list(run_dir / wf.checkpoint)
        work_files = [
            {"path": name, "bytes": f.stat().st_size, "sha256": sha256_file(f)}
            for name in WORK_FILES
            if (f := run_dir / wf.path / name).is_file() and not f.is_symlink()
        ]
        checkpoints.append(
            {
                "path": wf.checkpoint,
                "kind": wf.kind,
                "step": wf.step,
                "bytes": wf.bytes,
                "files": files,
                "work_files": work_files,
            }
        )
    parts: list[dict[str, Any]] = []
    tar_info: dict[str, Any] = {"bytes": 0, "sha256": None}
    if checkpoints:
        fd, tmp = tempfile.mkstemp(prefix=f".{run}.ckpt.", suffix=".tar", dir=stage)
        try:
            with os.fdopen(fd, "wb") as fh:
                entries = [(c["path"], run_dir / c["path"]) for c in checkpoints]
                entries += [(a, run_dir / a) for a in _work_file_paths(checkpoints)]
                write_tar(fh, entries)
            tar_info = {"bytes": os.path.getsize(tmp), "sha256": sha256_file(Path(tmp))}
            with open(tmp, "rb") as fh:
                index = 0
                while block := fh.read(part_bytes):
                    if index > 999:
                        raise ConfigError(f"more than 1000 parts of {part_mib:g} MiB: raise --part-mib")
                    name = part_name(run, index)
                    atomic_write_bytes(stage / name, block)
                    parts.append(
                        {"name": name, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()}
                    )
                    index += 1
        finally:
            os.unlink(tmp)
    copy_info: dict[str, Any] | None = None
    if run_copy:
        copy_path = write_run_copy(run_dir, stage / run_copy_name(run))
        size = copy_path.stat().st_size
        if size > FETCH_FILE_LIMIT:
            copy_path.unlink()
            skipped.append(
                {
                    "path": copy_path.name,
                    "reason": f"run copy {_mib(size)} > 16 MiB (the largest file fetched): bring runs.tgz",
                    "bytes": size,
                }
            )
        else:
            copy_info = {"name": copy_path.name, "bytes": size, "sha256": sha256_file(copy_path)}
    manifest = {
        "schema": SCHEMA,
        "run": run,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "part_bytes": part_bytes,
        "tar": tar_info,
        "parts": parts,
        "checkpoints": checkpoints,
        "skipped": skipped,
        "run_copy": copy_info,
    }
    atomic_write_json(stage / manifest_name(run), manifest)
    return manifest


def _work_dir_of(checkpoint: str) -> str:
    """The work folder (relative path) of a checkpoint folder's relative path."""
    return checkpoint.rpartition("/")[0]


def _work_file_paths(checkpoints: Sequence[dict[str, Any]]) -> list[str]:
    """Relative paths of the work files (:data:`WORK_FILES`) the manifest's checkpoints carry."""
    return [f"{_work_dir_of(c['path'])}/{w['path']}" for c in checkpoints for w in c.get("work_files", [])]


# --------------------------------------------------------------------------------------------- manifest
def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest written by :func:`pack`.

    Raises
    ------
    ResultFileError
        Missing, not JSON, or not of this module's schema.
    CheckpointCarryError
        An unsafe run name ('.', '..', starting with '.', other than letters, digits, '.', '_', '-'), a
        checkpoint path other than ``work/<name>/checkpoint-N`` or ``lr_select/work/<name>/checkpoint-N``,
        or a file path that is absolute or holds '..' or empty parts: unpacking it could write outside the
        run directory.
    """
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultFileError(f"{path}: not a checkpoint-carry manifest (schema {SCHEMA})")
    for key in ("run", "parts", "checkpoints", "tar"):
        if key not in data:
            raise ResultFileError(f"{path}: manifest without {key!r}")
    if not re.fullmatch(_COMPONENT, str(data["run"])):
        raise CheckpointCarryError(f"{path}: unsafe run name {data['run']!r}")
    for p in data["parts"]:
        if not _part_re(str(data["run"])).fullmatch(str(p.get("name", ""))):
            raise ResultFileError(f"{path}: unexpected part name {p.get('name')!r}")
    rc = data.get("run_copy")
    if rc is not None and (not isinstance(rc, dict) or rc.get("name") != run_copy_name(str(data["run"]))):
        raise CheckpointCarryError(f"{path}: unsafe run copy entry {rc!r}")
    if not isinstance(data["checkpoints"], list):
        raise ResultFileError(f"{path}: 'checkpoints' is not a list")
    for c in data["checkpoints"]:
        cpath = c.get("path") if isinstance(c, dict) else None
        if not isinstance(cpath, str) or not CHECKPOINT_PATH_RE.fullmatch(cpath):
            raise CheckpointCarryError(
                f"{path}: unsafe checkpoint path {cpath!r} (expected work/<name>/checkpoint-N or "
                "lr_select/work/<name>/checkpoint-N)"
            )
        assert isinstance(c, dict)
        for key in ("files", "work_files"):
            for f in c.get(key, []):
                _check_relative(path, f.get("path") if isinstance(f, dict) else None)
        for w in c.get("work_files", []):
            if w["path"] not in WORK_FILES:
                raise CheckpointCarryError(f"{path}: unexpected work file {w['path']!r} of {cpath}")
    return data


def _check_relative(manifest: str | Path, rel: Any) -> None:
    """``rel`` is a relative POSIX path without '..', empty parts or backslashes, else CheckpointCarryError."""
    parts = rel.split("/") if isinstance(rel, str) else []
    if (
        not parts
        or rel.startswith("/")
        or "\\" in rel
        or re.match(r"^[A-Za-z]:", rel)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise CheckpointCarryError(f"{manifest}: unsafe file path {rel!r} in the manifest")


def _manifests_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ckpt.json") if p.is_file())


def find_manifest(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """The one manifest directly in ``folder``.

    Raises
    ------
    ResultFileError
        None there, or more than one.
    """
    folder = Path(folder)
    found = _manifests_in(folder)
    if len(found) != 1:
        what = "no manifest (*.ckpt.json)" if not found else f"{len(found)} manifests"
        raise ResultFileError(f"{folder}: {what}; expected exactly one")
    return found[0], read_manifest(found[0])


# ------------------------------------------------------------------------------------------------- emit
def _out_usage(out: Path, ignore: set[str]) -> tuple[int, int]:
    """Files and bytes under ``out`` (all depths), leaving out ``out``'s own files named in ``ignore``."""
    files = total = 0
    for p in _walk(out):
        if p.is_file() and not (p.parent == out and p.name in ignore):
            files += 1
            total += p.stat().st_size
    return files, total


@dataclass
class EmitReport:
    """What one :func:`emit` call did: part indices (0-based) copied now, and how many are left."""

    emitted: list[int] = field(default_factory=list)
    total: int = 0
    left: int = 0
    out_files: int = 0
    out_bytes: int = 0
    run_copy: bool = False

    def line(self) -> str:
        if not self.emitted:
            span = "no part"
        elif self.emitted == list(range(self.emitted[0], self.emitted[-1] + 1)):
            span = f"parts {self.emitted[0] + 1}-{self.emitted[-1] + 1}"
        else:
            span = "parts " + ",".join(str(i + 1) for i in self.emitted)
        if self.run_copy:
            span = "the run copy and " + span
        return (
            f"emitted {span} of {self.total}; {self.left} left "
            f"(OUT: {self.out_files} files, {_mib(self.out_bytes)})"
        )


def emit(
    stage: str | Path,
    out: str | Path,
    *,
    max_files: int = 8,
    max_mib: float = 60.0,
    dry_run: bool = False,
    reset: bool = False,
    parts: Sequence[str] | None = None,
) -> EmitReport:
    """Copy the manifest and the next parts not yet emitted from ``stage`` into ``out``.

    Parameters
    ----------
    stage
        The folder :func:`pack` wrote (one manifest).
    out
        The folder the call brings back (``$OUT``); files already there (at any depth) count against the
        limits.
    max_files, max_mib
        Limits for everything under ``out`` after the copy: files, and MiB together. The manifest always
        goes first; parts follow in order while both limits hold.
    dry_run
        Only say what would be copied.
    reset
        Forget what earlier calls emitted (start again at the first part).
    parts
        Send these parts again (names as :func:`collect` reports them missing: a call whose files were
        never fetched), whatever earlier calls emitted, in the manifest's order while the limits hold;
        ``left`` then counts the named parts that did not fit.

    Returns
    -------
    EmitReport

    Raises
    ------
    ConfigError
        ``out`` cannot take even the manifest within the limits; ``parts`` names a part the manifest does
        not list, or comes with ``reset``.
    ResultFileError
        No manifest in ``stage``, or a part named in it is missing.
    """
    stage, out = Path(stage), Path(out)
    mpath, manifest = find_manifest(stage)
    run = manifest["run"]
    if parts is not None:
        if reset:
            raise ConfigError("--parts and --reset together: choose one")
        known = {p["name"] for p in manifest["parts"]} | (
            {rc["name"]} if (rc := manifest.get("run_copy")) else set()
        )
        unknown = sorted(set(parts) - known)
        if unknown or not parts:
            raise ConfigError(
                f"--parts: not parts of {mpath.name}: {' '.join(unknown) or '(none named)'} "
                "(names as collect prints them, e.g. " + part_name(run, 0) + ")"
            )
    record_path = stage / emitted_name(run)
    done: list[str] = []
    if record_path.is_file() and not reset:
        done = list(read_json(record_path).get("emitted", []))
    out.mkdir(parents=True, exist_ok=True)
    names = [p["name"] for p in manifest["parts"]]
    files, used = _out_usage(out, {mpath.name})  # the manifest is replaced; parts already there stay
    files += 1
    used += mpath.stat().st_size
    limit = int(max_mib * MIB)
    if files > max_files or used > limit:
        raise ConfigError(
            f"{out} cannot take the manifest: {files} files, {_mib(used)} with it "
            f"(limits {max_files} files, {max_mib:g} MiB)"
        )
    # the run copy (when pack wrote one) goes first, then the parts in order, while the limits hold
    items = _items(manifest)
    offset = len(items) - len(names)
    todo: list[int] = []  # indices into items
    for i, item in enumerate(items):
        if (item["name"] not in parts) if parts is not None else (item["name"] in done):
            continue
        if files + 1 > max_files or used + int(item["bytes"]) > limit:
            break
        if not (stage / item["name"]).is_file():
            raise ResultFileError(f"{stage / item['name']}: missing from the stage")
        files += 1
        used += int(item["bytes"])
        todo.append(i)
    wanted = [
        it["name"] for it in items if (it["name"] in parts if parts is not None else it["name"] not in done)
    ]
    report = EmitReport(
        emitted=[i - offset for i in todo if i >= offset],
        total=len(names),
        left=len(wanted) - len(todo),
        out_files=files,
        out_bytes=used,
        run_copy=bool(offset) and 0 in todo,
    )
    if dry_run:
        return report
    _copy_atomic(mpath, out / mpath.name)
    for i in todo:
        name = items[i]["name"]
        _copy_atomic(stage / name, out / name)
        if name not in done:
            done.append(name)
        atomic_write_json(record_path, {"run": run, "emitted": done})
    if not record_path.is_file():
        atomic_write_json(record_path, {"run": run, "emitted": done})
    return report


# ---------------------------------------------------------------------------------------------- collect
@dataclass
class CollectReport:
    """What :func:`collect` found: part names present in DEST (verified), missing, and ignored files."""

    run: str
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        n = len(self.present) + len(self.missing)
        out = [f"{self.run}: {len(self.present)} of {n} parts present ({len(self.copied)} copied now)"]
        if self.missing:
            out.append("missing: " + " ".join(self.missing))
            out.append(
                "  (emitted but never fetched? send them again, as the last command of a call: "
                "python3 -m validation.finetune.ckpt_carry emit STAGE $OUT --parts "
                + " ".join(self.missing)
                + ")"
            )
        out += [f"ignored (not in the manifest): {p}" for p in self.ignored]
        return out


def _same_manifest(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (
        a["tar"] == b["tar"]
        and a["parts"] == b["parts"]
        and a["checkpoints"] == b["checkpoints"]
        and a.get("run_copy") == b.get("run_copy")
    )


def _items(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The files a manifest lists for fetching: its run copy (when any) first, then its parts."""
    return ([manifest["run_copy"]] if manifest.get("run_copy") else []) + list(manifest["parts"])


def collect(dest: str | Path, fetched: Sequence[str | Path], *, run: str | None = None) -> CollectReport:
    """Gather the manifest and parts of one run from fetched folders into ``dest``, verifying each part.

    Parameters
    ----------
    dest
        The collection folder (created; may already hold parts of the same archive: idempotent).
    fetched
        Folders of fetched files; only files directly in them are read.
    run
        The run to collect when the fetched folders hold manifests of several runs.

    Returns
    -------
    CollectReport

    Raises
    ------
    CheckpointCarryError
        A fetched part whose SHA-256 differs from the manifest (the good ones are collected first), or
        manifests of the same run that describe different archives.
    ResultFileError
        No manifest anywhere, or of several runs without ``run``.
    """
    dest = Path(dest)
    sources = [Path(f) for f in fetched]
    manifests: dict[str, tuple[Path, dict[str, Any]]] = {}
    for folder in [dest, *sources]:
        if not folder.is_dir():
            continue
        for mp in _manifests_in(folder):
            m = read_manifest(mp)
            if run is not None and m["run"] != run:
                continue
            if m["run"] in manifests and not _same_manifest(manifests[m["run"]][1], m):
                raise CheckpointCarryError(
                    f"{mp} describes another archive of {m['run']} than {manifests[m['run']][0]} "
                    "(a later pack?): collect into a fresh folder"
                )
            manifests.setdefault(m["run"], (mp, m))
    if not manifests:
        raise ResultFileError("no manifest (*.ckpt.json) in " + ", ".join(str(f) for f in [dest, *sources]))
    if len(manifests) > 1:
        raise ResultFileError(f"manifests of several runs ({', '.join(sorted(manifests))}): pass --run")
    name, (mpath, manifest) = next(iter(manifests.items()))
    dest.mkdir(parents=True, exist_ok=True)
    if mpath.parent != dest:
        _copy_atomic(mpath, dest / mpath.name)
    report = CollectReport(run=name)
    parts = {p["name"]: p for p in _items(manifest)}
    good = {n for n, p in parts.items() if (dest / n).is_file() and sha256_file(dest / n) == p["sha256"]}
    bad: list[str] = []
    pattern = _part_re(name)
    for folder in sources:
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir()):
            if not f.is_file() or not (f.name.startswith(f"{name}.ckpt.") or f.name == run_copy_name(name)):
                continue
            if f.name not in parts:
                if pattern.fullmatch(f.name):
                    report.ignored.append(str(f))
                continue
            if f.name in good:
                continue
            if sha256_file(f) != parts[f.name]["sha256"]:
                bad.append(str(f))
                continue
            _copy_atomic(f, dest / f.name)
            good.add(f.name)
            report.copied.append(f.name)
    report.present = [n for n in parts if n in good]
    report.missing = [n for n in parts if n not in good]
    if bad:
        raise CheckpointCarryError(
            "SHA-256 differs from the manifest (damaged part, fetch it again): " + ", ".join(bad)
        )
    return report


# ----------------------------------------------------------------------------------------------- bundle
def default_budget_mib(repo: str | Path = ".") -> float:
    """MiB a carry folder may hold: 64 minus the working tree (as ``scripts/gpu/carry_fits.py`` counts it)
    minus a 1-MiB margin."""
    return LIMIT_MIB - tree_bytes(Path(repo)) / MIB - 1.0


def _run_copy_files(run_dir: Path) -> list[tuple[str, Path]]:
    keep: list[tuple[str, Path]] = []
    for p in _walk(run_dir):
        rel = p.relative_to(run_dir).as_posix()
        if any(rel == x or rel.startswith(x + "/") for x in RUN_COPY_EXCLUDE):
            continue
        if p.is_file() and not p.is_symlink() and not rel.endswith(RUN_COPY_EXCLUDE_SUFFIXES):
            keep.append((rel, p))
    return keep


def write_run_copy(run_dir: str | Path, path: str | Path) -> Path:
    """A deterministic tar of a run directory's files without ``work/``, ``lr_select/work/``, ``claims/``,
    ``workers/``, ``cache/`` and ``*.claim``/``*.hold`` files, at ``path`` (written atomically)."""
    run_dir, path = Path(run_dir), Path(path)
    if not run_dir.is_dir():
        raise ConfigError(f"not a run directory: {run_dir}")
    files = sorted(_run_copy_files(run_dir), key=lambda f: tuple(f[0].split("/")))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, p in files:
            with open(p, "rb") as fh:
                tar.addfile(_tar_info(rel, size=p.stat().st_size), fh)
    atomic_write_bytes(path, buf.getvalue())
    return path


@dataclass
class CarryFolder:
    """One carry folder :func:`bundle` filled: its path, the parts in it, tar-counted bytes."""

    path: Path
    parts: list[str]
    bytes: int
    run_copy: bool = False


def bundle(
    dest: str | Path,
    carry_root: str | Path,
    *,
    prefix: str = "ck",
    budget_mib: float | None = None,
    run_copy: str | Path | None = None,
    repo: str | Path = ".",
) -> list[CarryFolder]:
    """Spread the collected parts over carry folders ``carry_root/<prefix>0``, ``<prefix>1``, ...

    Parameters
    ----------
    dest
        The folder :func:`collect` filled; every part of its manifest must be there and verify.
    carry_root
        Where the carry folders go (``.devcarry``).
    prefix
        Their name before the index.
    budget_mib
        MiB a folder may hold, counted as a tar archive holds it (a 512-byte header per file, contents padded
        to 512 bytes: :func:`validation.carry_size.tar_bytes`); default :func:`default_budget_mib`.
    run_copy
        A fetched run directory: its copy (:func:`write_run_copy`) goes into the first folder. Default: the
        run copy :func:`pack` wrote and :func:`collect` gathered, when the manifest lists one.
    repo
        The repository root whose working tree the calls carry (for the default budget).

    Returns
    -------
    list of CarryFolder
        In order: carry them in consecutive calls. Each holds the manifest; parts are hard links where
        the file system allows, else copies. Earlier carry folders of the same prefix are replaced.

    Raises
    ------
    ConfigError
        The budget cannot hold the manifest and one part; a carry folder holds files of other kinds.
    CheckpointCarryError
        A part is missing or does not verify.
    """
    dest, carry_root = Path(dest), Path(carry_root)
    mpath, manifest = find_manifest(dest)
    run = manifest["run"]
    if not SAFE_NAME.fullmatch(prefix):
        raise ConfigError(f"--prefix {prefix!r}: letters, digits, '.', '_' and '-' only")
    budget = int((default_budget_mib(repo) if budget_mib is None else budget_mib) * MIB)
    needed = _items(manifest) if run_copy is None else list(manifest["parts"])
    absent = [p["name"] for p in needed if not (dest / p["name"]).is_file()]
    if absent:
        raise CheckpointCarryError(
            f"{dest}: parts missing ({' '.join(absent)}): collect them first"
            + (" (or pass --run-copy with a fetched run directory)" if run_copy_name(run) in absent else "")
        )
    damaged = [p["name"] for p in needed if sha256_file(dest / p["name"]) != p["sha256"]]
    if damaged:
        raise CheckpointCarryError(f"{dest}: SHA-256 differs from the manifest: {' '.join(damaged)}")
    copy_path: Path | None = None
    if run_copy is not None:  # given explicitly: written beside, the collected one (if any) stays as it is
        copy_path = write_run_copy(run_copy, dest / "explicit-run-copy" / run_copy_name(run))
        # the carry folders' manifest names this copy, so that unpack verifies what it extracts
        manifest = {
            **manifest,
            "run_copy": {
                "name": copy_path.name,
                "bytes": copy_path.stat().st_size,
                "sha256": sha256_file(copy_path),
                "explicit": True,
            },
        }
        mpath = dest / "explicit-run-copy" / mpath.name
        atomic_write_json(mpath, manifest)
    elif manifest.get("run_copy"):
        copy_path = dest / run_copy_name(run)
    base = tar_bytes([mpath])
    plan: list[tuple[list[str], int, bool]] = []
    names: list[str] = []
    used = base + (tar_bytes([copy_path]) if copy_path else 0)
    if used > budget:
        raise ConfigError(f"budget {_mib(budget)}: the manifest and run copy alone take {_mib(used)}")
    for p in manifest["parts"]:
        size = tar_bytes([dest / p["name"]])
        if base + size > budget:
            raise ConfigError(
                f"budget {_mib(budget)} cannot hold the manifest and {p['name']} ({_mib(size)})"
            )
        if used + size > budget:
            plan.append((names, used, not plan and copy_path is not None))
            names, used = [], base
        names.append(p["name"])
        used += size
    plan.append((names, used, not plan and copy_path is not None))
    folders: list[CarryFolder] = []
    for k, (part_names, size, with_copy) in enumerate(plan):
        folder = carry_root / f"{prefix}{k}"
        _clear_carry_folder(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _copy_atomic(mpath, folder / mpath.name, link=True)
        if with_copy:
            assert copy_path is not None
            _copy_atomic(copy_path, folder / copy_path.name, link=True)
        for n in part_names:
            _copy_atomic(dest / n, folder / n, link=True)
        folders.append(CarryFolder(folder, part_names, size, with_copy))
    stale = re.compile(rf"^{re.escape(prefix)}(\d+)$")
    if carry_root.is_dir():
        for old in sorted(carry_root.iterdir()):
            m = stale.fullmatch(old.name)
            if m and int(m.group(1)) >= len(folders) and old.is_dir():
                if all(_manifest_like(f) for f in old.iterdir()):
                    shutil.rmtree(old)
    return folders


def _manifest_like(path: Path) -> bool:
    return (
        bool(re.fullmatch(r"^[A-Za-z0-9._-]+\.(ckpt\.(\d{3}|json)|run\.tar)$", path.name)) and path.is_file()
    )


def _clear_carry_folder(folder: Path) -> None:
    if not folder.is_dir():
        return
    other = [f.name for f in folder.iterdir() if not _manifest_like(f)]
    if other:
        raise ConfigError(f"{folder} holds other files ({', '.join(sorted(other))}): choose another --prefix")
    for f in folder.iterdir():
        f.unlink()


# ----------------------------------------------------------------------------------------------- unpack
@dataclass
class UnpackReport:
    """What one :func:`unpack` call did: parts in the stage, and the checkpoints now in place."""

    run: str
    present: int = 0
    total: int = 0
    restored: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    run_copy: str | None = None
    run_copy_ok: bool = True

    def lines(self) -> list[str]:
        out = []
        if self.run_copy:
            out.append(self.run_copy)
        out.append(f"{self.run}: {self.present} of {self.total} parts")
        if self.present == self.total:
            out.append("restored: " + (" ".join(self.restored) if self.restored else "(none)"))
            if self.identical:
                out.append("already in place: " + " ".join(self.identical))
        return out


def _member_target(member: tarfile.TarInfo, allowed: Sequence[str] | None) -> str:
    """The member's path after the safety checks: a regular file or folder, relative, without ``..``, and
    (unless ``allowed`` is None) inside one of the ``allowed`` folders."""
    name = member.name
    pure = PurePosixPath(name)
    if name.startswith("/") or pure.is_absolute() or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise CheckpointCarryError(f"unsafe member {name!r}: absolute path")
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or ".." in pure.parts:
        raise CheckpointCarryError(f"unsafe member {name!r}: '..' or an empty component")
    if not (member.isreg() or member.isdir()):
        raise CheckpointCarryError(f"unsafe member {name!r}: a link, device or other special file")
    rel = name.rstrip("/")
    if allowed is not None and not any(rel == a or rel.startswith(a + "/") for a in allowed):
        raise CheckpointCarryError(f"member {name!r} is outside the manifest's checkpoint folders")
    return rel


def _safe_extract(tar_path: Path, into: Path, allowed: Sequence[str] | None) -> None:
    """Extract regular files and folders of ``tar_path`` below ``into`` after :func:`_member_target`."""
    with tarfile.open(tar_path, mode="r:") as tar:
        for member in tar:
            rel = _member_target(member, allowed)
            target = into / rel
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(member)
            assert src is not None
            with src, open(target, "xb") as fh:
                shutil.copyfileobj(src, fh, _CHUNK)


def _files_of(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of the regular files below ``folder`` (:func:`_file_list`'s)."""
    return {f["path"]: f["sha256"] for f in _file_list(folder)}


def _extract_run_copy(tar_path: Path, run_dir: Path) -> None:
    parent = run_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.copy.", dir=parent))
    try:
        _safe_extract(tar_path, tmp, None)
        set_default_mode(tmp, directory=True)  # mkdtemp's 0700 -> what mkdir gives
        os.replace(tmp, run_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _restore_run_copy(tar_path: Path, run_dir: Path) -> tuple[str, bool]:
    """Put the run copy ``tar_path`` in place at ``run_dir``; what was done, and whether it went well.

    * ``run_dir`` missing: extracted there (atomically).
    * ``run_dir`` without ``grid.json`` (e.g. created empty by an earlier ``waves.sh`` command's
      ``mkdir -p``): the copy's files merged into it; a file already there with other contents is refused
      (CheckpointCarryError, nothing written).
    * ``run_dir`` with ``grid.json``: left alone; not well (False) unless every file of the copy is there,
      identical.
    """
    if not run_dir.exists():
        _extract_run_copy(tar_path, run_dir)
        return f"run directory {run_dir} extracted from {tar_path.name}", True
    parent = run_dir.resolve().parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.copy.", dir=parent))
    try:
        _safe_extract(tar_path, tmp, None)
        copied = _files_of(tmp)
        differ = sorted(
            rel
            for rel, sha in copied.items()
            if not ((run_dir / rel).is_file() and sha256_file(run_dir / rel) == sha)
        )
        if (run_dir / "grid.json").is_file():
            if not differ:
                return (
                    f"{run_dir} has grid.json and every file of {tar_path.name}, identical: run copy not needed",
                    True,
                )
            return (
                f"{run_dir} already has grid.json: run copy {tar_path.name} NOT used; missing or different "
                f"there ({len(differ)}): {' '.join(differ[:10])}{' ...' if len(differ) > 10 else ''} "
                "(move RUN_DIR away and unpack again with --run-copy, or keep RUN_DIR as it is)",
                False,
            )
        clash = [rel for rel in differ if (run_dir / rel).exists()]
        if clash:
            raise CheckpointCarryError(
                f"{run_dir} (without grid.json) holds files that differ from the run copy {tar_path.name}: "
                f"{' '.join(clash[:10])}: not overwritten (move RUN_DIR away and unpack again)"
            )
        for rel in differ:
            target = run_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, target)
        return (
            f"run copy {tar_path.name} merged into {run_dir} ({len(differ)} files written, "
            f"{len(copied) - len(differ)} already there)",
            True,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack(
    carry_dir: str | Path,
    run_dir: str | Path,
    *,
    stage: str | Path = "/tmp/ckpt-in",
    run_copy: bool = False,
) -> UnpackReport:
    """Stage one carry folder's parts; once every part is staged, restore the checkpoints into ``run_dir``.

    Parameters
    ----------
    carry_dir
        One carry folder (:func:`bundle`): the manifest and some parts.
    run_dir
        The run directory the checkpoints belong to (created if missing).
    stage
        Where parts gather across calls (the machine keeps ``/tmp`` between calls while it is held); a
        subfolder per run.
    run_copy
        Put ``<run>.run.tar`` from ``carry_dir`` in place first (done without asking too when the manifest
        lists a run copy, :func:`pack`'s, and ``carry_dir`` holds one): extracted when ``run_dir`` is missing,
        merged into it when it has no ``grid.json`` (refused where a file there differs), left alone when it
        has one (``run_copy_ok`` False unless the copy's files are all there, identical).

    Returns
    -------
    UnpackReport

    Raises
    ------
    CheckpointCarryError
        A part, the tar or a restored file whose SHA-256 differs from the manifest; an unsafe member; a
        checkpoint folder in place with other contents (nothing is moved then); a stage holding parts of
        another archive.
    ResultFileError
        No manifest in ``carry_dir``.
    """
    carry_dir, run_dir = Path(carry_dir), Path(run_dir)
    mpath, manifest = find_manifest(carry_dir)
    run = manifest["run"]
    report = UnpackReport(run=run, total=len(manifest["parts"]))
    copy = carry_dir / run_copy_name(run)
    if run_copy or (manifest.get("run_copy") and copy.is_file()):
        listed = manifest.get("run_copy")
        if not copy.is_file():
            report.run_copy = f"no run copy in {carry_dir}"
        elif not listed or sha256_file(copy) != listed["sha256"]:
            # a run copy decides which cells count as finished: never one the manifest does not vouch for
            raise CheckpointCarryError(
                f"{copy}: "
                + ("not listed in the manifest" if not listed else "SHA-256 differs from the manifest")
                + " (nothing restored)"
            )
        else:
            report.run_copy, report.run_copy_ok = _restore_run_copy(copy, run_dir)
    staged = Path(stage) / run
    staged.mkdir(parents=True, exist_ok=True)
    smanifest = staged / mpath.name
    done_marker = staged / RESTORED_MARKER
    if done_marker.is_file() and smanifest.is_file():
        if _same_manifest(read_manifest(smanifest), manifest):
            want = {c["path"]: {f["path"]: f["sha256"] for f in c["files"]} for c in manifest["checkpoints"]}
            extra = {
                f"{_work_dir_of(c['path'])}/{w['path']}": w["sha256"]
                for c in manifest["checkpoints"]
                for w in c.get("work_files", [])
            }
            if all(_files_of(run_dir / path) == files for path, files in want.items()) and all(
                (run_dir / rel).is_file() and sha256_file(run_dir / rel) == sha for rel, sha in extra.items()
            ):
                report.present = report.total  # restored by an earlier call: nothing to do
                report.identical = sorted([*want, *extra])
                return report
        # another archive of the run, or the restored folders changed since: start the stage afresh
        shutil.rmtree(staged)
        staged.mkdir(parents=True)
    if smanifest.is_file():
        if not _same_manifest(read_manifest(smanifest), manifest):
            raise CheckpointCarryError(
                f"the stage {staged} holds parts of another archive of {run}: remove it or pass --stage"
            )
    else:
        _copy_atomic(mpath, smanifest)
    parts = {p["name"]: p for p in manifest["parts"]}
    for name, p in parts.items():
        src = carry_dir / name
        if not src.is_file():
            continue
        if sha256_file(src) != p["sha256"]:
            raise CheckpointCarryError(f"{src}: SHA-256 differs from the manifest (damaged part)")
        dst = staged / name
        if not (dst.is_file() and dst.stat().st_size == p["bytes"]):
            _copy_atomic(src, dst)
    present = [
        n for n, p in parts.items() if (staged / n).is_file() and (staged / n).stat().st_size == p["bytes"]
    ]
    report.present = len(present)
    if report.present < report.total:
        return report
    checkpoints = manifest["checkpoints"]
    if not checkpoints:
        return report
    run_dir.mkdir(parents=True, exist_ok=True)
    tar_path = staged / f"{run}.ckpt.tar"
    h = hashlib.sha256()
    with open(tar_path, "wb") as out:
        for p in manifest["parts"]:
            with open(staged / p["name"], "rb") as fh:
                while block := fh.read(_CHUNK):
                    h.update(block)
                    out.write(block)
    try:
        if h.hexdigest() != manifest["tar"]["sha256"]:
            bad = [n for n, p in parts.items() if sha256_file(staged / n) != p["sha256"]]
            for n in bad:
                (staged / n).unlink()
            raise CheckpointCarryError(
                f"the archive of {run} does not verify (SHA-256 of the tar differs from the manifest); "
                f"damaged staged parts removed: {' '.join(bad) or 'none'}"
            )
        allowed = [c["path"] for c in checkpoints] + _work_file_paths(checkpoints)
        tmp = Path(tempfile.mkdtemp(prefix=".ckpt-carry.", dir=run_dir))
        try:
            _safe_extract(tar_path, tmp, allowed)
            for c in checkpoints:
                want = {f["path"]: f["sha256"] for f in c["files"]}
                got = _files_of(tmp / c["path"])
                if got != want:
                    diff = sorted(set(got) ^ set(want)) or sorted(k for k in want if got.get(k) != want[k])
                    raise CheckpointCarryError(
                        f"{c['path']}: extracted files differ from the manifest ({', '.join(diff[:5])})"
                    )
                for w in c.get("work_files", []):
                    rel = f"{_work_dir_of(c['path'])}/{w['path']}"
                    f = tmp / rel
                    if not f.is_file() or sha256_file(f) != w["sha256"]:
                        raise CheckpointCarryError(f"{rel}: extracted file differs from the manifest")
            file_moves: list[tuple[Path, Path, str]] = []
            for c in checkpoints:
                for w in c.get("work_files", []):
                    rel = f"{_work_dir_of(c['path'])}/{w['path']}"
                    target = run_dir / rel
                    if target.exists():
                        if not target.is_file() or sha256_file(target) != w["sha256"]:
                            raise CheckpointCarryError(
                                f"{target} exists with other contents: not overwritten (move it away to "
                                "restore the carried one)"
                            )
                        report.identical.append(rel)
                    else:
                        file_moves.append((tmp / rel, target, rel))
            moves: list[tuple[Path, Path, str]] = []
            for c in checkpoints:
                target = run_dir / c["path"]
                if target.exists():
                    if _files_of(target) != {f["path"]: f["sha256"] for f in c["files"]}:
                        raise CheckpointCarryError(
                            f"{target} exists with other contents: not overwritten (move it away to restore "
                            "the carried one)"
                        )
                    report.identical.append(c["path"])
                else:
                    moves.append((tmp / c["path"], target, c["path"]))
            for src, target, rel in moves + file_moves:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, target)
                report.restored.append(rel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        tar_path.unlink(missing_ok=True)
    # everything is in place: the staged parts have done their job; the marker lets a repeated call report
    # the restore and a later archive of the same run (another pack) replace this stage
    for name in parts:
        (staged / name).unlink(missing_ok=True)
    done_marker.write_text(datetime.now(timezone.utc).isoformat(timespec="seconds") + "\n", encoding="utf-8")
    return report


# ----------------------------------------------------------------------------------------------- status
def status_lines(run_dir: str | Path, *, max_checkpoint_mib: float = 60.0) -> list[str]:
    """One line per work folder of ``run_dir``: last checkpoint, step, MiB, and what ``pack`` does with it."""
    lines = []
    for wf in scan(run_dir):
        if wf.final is not None:
            what = f"final: {wf.final}"
        elif wf.checkpoint is None:
            what = "unfinished, no checkpoint"
        elif wf.running is not None:
            what = f"still running ({wf.running}): not packed until it stops"
        elif wf.links:
            what = "unfinished, holds links (not packed)"
        elif wf.bytes > max_checkpoint_mib * MIB:
            what = f"unfinished, too large to carry (> {max_checkpoint_mib:g} MiB)"
        else:
            what = "unfinished: packed"
        if wf.partial and wf.final is None:
            what += f"; partial (not carried): {' '.join(p.rpartition('/')[2] for p in wf.partial)}"
        step = f"step {wf.step}" if wf.step is not None else "-"
        lines.append(f"{wf.path}  {step}  {_mib(wf.bytes)}  {what}")
    return lines or [f"{run_dir}: no work folders"]


# ----------------------------------------------------------------------------------------------- verify
#: a selection run's work folder name: ``<task>__<method>__lr<rate key>``
_SELECTION_WORK_RE = re.compile(r"^(?P<run>[^/]+__[^/]+)__lr(?P<lr>[^/]+)$")


@dataclass
class Resumed:
    """How one carried checkpoint's run went on (:func:`verify`).

    ``status``: ``"resumed"`` (from the carried checkpoint), ``"resumed later"`` (the last resume was from
    a later checkpoint of the same run: interrupted again after the carry; only the last resume is recorded,
    so whether the carried checkpoint was used is not shown), ``"unfinished"`` (no result yet),
    ``"not recorded"`` (a result without resume fields, written by older code), ``"failed"`` (the cell
    left only its failure record, ``cells/<cell>.failed.json``, e.g. a checkpoint of another configuration;
    a failed selection run leaves the failure record of the cell that started it), ``"from scratch"`` or
    ``"restarted"`` (the carried checkpoint was not used).
    """

    path: str
    kind: str
    status: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("from scratch", "restarted", "failed")


def _step_of(checkpoint: str) -> int:
    m = CHECKPOINT_RE.fullmatch(checkpoint.rpartition("/")[2])
    return int(m.group(1)) if m else -1


def _resume_status(carried: str, resumed: Any, restarted: Any) -> tuple[str, str]:
    if restarted:
        return "restarted", f"discarding {restarted}"
    if not resumed:
        return "from scratch", "the result records no resume"
    resumed = str(resumed).replace("\\", "/")
    if resumed == carried:
        return "resumed", resumed
    if _work_dir_of(resumed) == _work_dir_of(carried) and _step_of(resumed) > _step_of(carried):
        return "resumed later", resumed
    return "from scratch", f"resumed from {resumed}, not from the carried checkpoint"


def verify(manifest: str | Path, run_dir: str | Path) -> list[Resumed]:
    """Whether each run whose checkpoint a manifest carried continued from it in ``run_dir``.

    Reads the cells' ``train.resumed_from`` / ``train.restarted_discarding`` and the same fields of a
    selection run's rate in ``lr_select/<task>__<method>.json`` (recorded since 2026-12-01).

    Parameters
    ----------
    manifest : str or Path
        A manifest file (``<run>.ckpt.json``) or a folder holding exactly one (e.g. ``collect``'s DEST).
    run_dir : str or Path
        The run directory after the next session, e.g. a fetched ``runs/<run>``.

    Returns
    -------
    list of Resumed
        One per carried checkpoint, in the manifest's order.
    """
    path = Path(manifest)
    data = find_manifest(path)[1] if path.is_dir() else read_manifest(path)
    run_dir = Path(run_dir)
    if not any((run_dir / name).exists() for name in ("grid.json", "cells", "lr_select")):
        # a typo or the wrong level (<fetched> for <fetched>/runs/<run>) would read "unfinished" everywhere
        raise ConfigError(f"{run_dir}: not a run directory (no grid.json, cells/ or lr_select/)")
    out = []
    for c in data["checkpoints"]:
        carried, kind = str(c["path"]), str(c.get("kind", ""))
        work = _work_dir_of(carried).rpartition("/")[2]
        if kind == "selection":
            m = _SELECTION_WORK_RE.fullmatch(work)
            record_path = run_dir / "lr_select" / f"{m.group('run') if m else work}.json"
            record = read_json(record_path) if record_path.is_file() else None
            entry = (record or {}).get("runs", {}).get(m.group("lr") if m else "")
        else:
            cell_file = run_dir / "cells" / f"{work}.json"
            entry = read_json(cell_file).get("train") if cell_file.is_file() else None
            failure = run_dir / "cells" / f"{work}.failed.json"
            if entry is None and failure.is_file():
                rec = read_json(failure)
                why = f"{rec.get('error', '')}: {rec.get('message', '')}"[:160]
                out.append(Resumed(carried, kind, "failed", f"cells/{failure.name}: {why}"))
                continue
        if not isinstance(entry, dict):
            out.append(Resumed(carried, kind, "unfinished", "no result yet"))
        elif "resumed_from" not in entry:
            out.append(Resumed(carried, kind, "not recorded", "a result of code before 2026-12-01"))
        else:
            status, detail = _resume_status(
                carried, entry.get("resumed_from"), entry.get("restarted_discarding")
            )
            out.append(Resumed(carried, kind, status, detail))
    return out


# -------------------------------------------------------------------------------------------------- CLI
def _device_command(folder: Path, run_dir: str, first: bool) -> str:
    extra = " --run-copy" if first else ""
    return f"python3 -m validation.finetune.ckpt_carry unpack {folder} {run_dir}{extra}"


def _rel(path: Path) -> Path:
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m validation.finetune.ckpt_carry",
        description=(__doc__ or "").split("\n\n")[0],
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser(
        "status", help="work folders, their last checkpoint (step, MiB) and whether pack takes it"
    )
    s.add_argument("run_dir", type=Path)
    s.add_argument("--max-checkpoint-mib", type=float, default=60.0)
    s = sub.add_parser("pack", help="GPU side: unfinished runs' last checkpoints into parts in STAGE")
    s.add_argument("run_dir", type=Path)
    s.add_argument("stage", type=Path)
    s.add_argument("--part-mib", type=float, default=15.0, help="largest part, MiB (<= 16; default 15)")
    s.add_argument("--max-checkpoint-mib", type=float, default=60.0, help="skip larger checkpoints (60)")
    s.add_argument("--include-running", action="store_true", help="pack runs with a live claim too")
    s.add_argument(
        "--no-run-copy",
        action="store_true",
        help="do not write <run>.run.tar (the run without work/) into STAGE",
    )
    s = sub.add_parser("emit", help="GPU side, once per call: the manifest and the next parts into OUT")
    s.add_argument("stage", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--max-files", type=int, default=8, help="files under OUT at most (8)")
    s.add_argument("--max-mib", type=float, default=60.0, help="MiB under OUT at most (60)")
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--reset", action="store_true", help="emit again from the first part")
    s.add_argument(
        "--parts",
        nargs="+",
        default=None,
        metavar="NAME",
        help="send these parts again (those collect reports missing), within the same limits",
    )
    s = sub.add_parser("collect", help="CPU side: fetched parts into DEST, each verified")
    s.add_argument("dest", type=Path)
    s.add_argument("fetched", type=Path, nargs="+")
    s.add_argument("--run", default=None, help="the run, when the fetched folders hold several")
    s = sub.add_parser("bundle", help="CPU side: the collected parts over carry folders that fit a call")
    s.add_argument("dest", type=Path)
    s.add_argument("carry_root", type=Path)
    s.add_argument("--prefix", default="ck")
    s.add_argument("--budget-mib", type=float, default=None, help="default: 64 - working tree - 1 MiB")
    s.add_argument("--run-copy", type=Path, default=None, help="a fetched run directory (no work/) to carry")
    s.add_argument("--device-run-dir", default=None, help="RUN_DIR in the printed commands (runs/<run>)")
    s = sub.add_parser(
        "verify", help="CPU side, after the next session: did each carried run continue from its checkpoint?"
    )
    s.add_argument("manifest", type=Path, help="a <run>.ckpt.json, or collect's DEST holding one")
    s.add_argument("run_dir", type=Path, help="the run directory afterwards (e.g. a fetched runs/<run>)")
    s = sub.add_parser("unpack", help="GPU side, once per carry folder: stage, and restore when complete")
    s.add_argument("carry_dir", type=Path)
    s.add_argument("run_dir", type=Path)
    s.add_argument("--stage", type=Path, default=Path("/tmp/ckpt-in"))
    s.add_argument(
        "--run-copy",
        action="store_true",
        help="extract the carried run copy unless RUN_DIR has a grid.json (exit 1 if that one differs)",
    )
    a = ap.parse_args(argv)
    try:
        if a.cmd == "status":
            print("\n".join(status_lines(a.run_dir, max_checkpoint_mib=a.max_checkpoint_mib)))
        elif a.cmd == "pack":
            m = pack(
                a.run_dir,
                a.stage,
                part_mib=a.part_mib,
                max_checkpoint_mib=a.max_checkpoint_mib,
                include_running=a.include_running,
                run_copy=not a.no_run_copy,
            )
            for c in m["checkpoints"]:
                print(f"packed {c['path']} (step {c['step']}, {_mib(c['bytes'])}, {len(c['files'])} files)")
            for sk in m["skipped"]:
                print(f"skipped {sk['path']}: {sk['reason']}")
            copy = f" and the run copy ({_mib(m['run_copy']['bytes'])})" if m.get("run_copy") else ""
            print(f"{len(m['parts'])} parts ({_mib(m['tar']['bytes'])} tar){copy} in {a.stage}")
        elif a.cmd == "emit":
            r = emit(
                a.stage,
                a.out,
                max_files=a.max_files,
                max_mib=a.max_mib,
                dry_run=a.dry_run,
                reset=a.reset,
                parts=a.parts,
            )
            print(("would have " if a.dry_run else "") + r.line())
        elif a.cmd == "collect":
            c = collect(a.dest, a.fetched, run=a.run)
            print("\n".join(c.lines()))
            return 0 if not c.missing else 1
        elif a.cmd == "bundle":
            folders = bundle(
                a.dest, a.carry_root, prefix=a.prefix, budget_mib=a.budget_mib, run_copy=a.run_copy
            )
            _, manifest = find_manifest(a.dest)
            run_dir = a.device_run_dir or f"runs/{manifest['run']}"
            for k, f in enumerate(folders):
                rel = _rel(f.path)
                what = f"{len(f.parts)} parts" + (" + run copy" if f.run_copy else "")
                print(f"{rel}: {what}, {_mib(f.bytes)}")
                print(f'  carry: ["{rel}"]  run: {_device_command(rel, run_dir, k == 0 and f.run_copy)}')
        elif a.cmd == "verify":
            rows = verify(a.manifest, a.run_dir)
            width = max((len(row.path) for row in rows), default=0)
            for row in rows:
                print(f"{row.path.ljust(width)}  {row.kind:<9}  {row.status}: {row.detail}")
            counts = {st: sum(x.status == st for x in rows) for st in dict.fromkeys(x.status for x in rows)}
            print(
                f"{len(rows)} carried"
                + (": " if rows else "")
                + ", ".join(f"{n} {st}" for st, n in counts.items())
            )
            if any(row.failed for row in rows):
                return 1
        elif a.cmd == "unpack":
            u = unpack(a.carry_dir, a.run_dir, stage=a.stage, run_copy=a.run_copy)
            print("\n".join(u.lines()))
            if not u.run_copy_ok:
                return 1
    except GeLoRAError as exc:
        print(f"ckpt_carry {a.cmd}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
