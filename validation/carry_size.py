"""What a device call carries, counted as the device tool counts it: a tar archive of the files.

A call carries the working tree (tracked files, untracked ones git does not ignore, and ``shared/`` where the
checkout has one) plus the ignored folders it names, at most :data:`LIMIT_MIB` MiB together, counted as a tar
archive holds them: a 512-byte header per file and its contents padded to whole 512-byte blocks. Used by
``scripts/gpu/carry_fits.py`` (does a call fit?) and :mod:`validation.finetune.ckpt_carry` (how much a carry
folder may hold beside the tree).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

#: bytes in a MiB
MIB = 1 << 20
#: MiB a device call carries at most (working tree and carried folders, counted by :func:`tar_bytes`)
LIMIT_MIB = 64.0
#: bytes of a tar block (the header of a file, the unit its contents are padded to)
TAR_BLOCK = 512


def tar_bytes(paths: Iterable[Path]) -> int:
    """Bytes the regular files under ``paths`` (files or folders) take in a tar archive.

    Parameters
    ----------
    paths
        Files or folders; a folder counts every regular file below it (links are not followed).

    Returns
    -------
    int
        Bytes: a 512-byte header per file plus its contents padded to whole 512-byte blocks.
    """
    total = 0
    for p in paths:
        files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file() and not f.is_symlink()]
        total += sum(TAR_BLOCK + -(-f.stat().st_size // TAR_BLOCK) * TAR_BLOCK for f in files)
    return total


def tree_files(root: Path) -> list[Path]:
    """The files of the working tree a call sends: tracked, untracked but not ignored, and ``shared/``.

    Parameters
    ----------
    root
        The repository root (a git checkout).

    Returns
    -------
    list of Path
        The files, and the ``shared`` folder itself where the checkout has one (count it with
        :func:`tar_bytes`).
    """
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    files = [root / f.decode() for f in out.split(b"\0") if f]
    files = [f for f in files if f.is_file()]
    shared = root / "shared"
    return files + ([shared] if shared.is_dir() and not shared.is_symlink() else [])


def tree_bytes(root: Path) -> int:
    """Bytes the working tree at ``root`` takes in a call (:func:`tar_bytes` of :func:`tree_files`)."""
    return tar_bytes(tree_files(root))
