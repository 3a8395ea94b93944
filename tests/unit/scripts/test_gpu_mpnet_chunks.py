"""The GPU model carry: bf16 tar in chunks (scripts/gpu/mpnet_chunks.py) and its reassembly on the host
(scripts/gpu/mpnet_assemble.sh), round trip on a tiny model with chunks small enough to need several."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from synthetic.tiny_models import save_tiny_model
from validation.carry_size import tree_bytes

ROOT = Path(__file__).resolve().parents[3]
ASSEMBLE = ROOT / "scripts" / "gpu" / "mpnet_assemble.sh"


def _assemble(k: int, chunks: Path, assembly: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MPNET_CHUNK_DIR": str(chunks),
        "MPNET_ASSEMBLY_DIR": str(assembly),
        "MPNET_NAME": "tiny",
    }
    return subprocess.run(["bash", str(ASSEMBLE), str(k)], env=env, capture_output=True, text=True)


def test_chunk_and_reassemble_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load_script
) -> None:
    from transformers import AutoModel

    model_dir = save_tiny_model("mpnet", tmp_path / "model")
    chunks, assembly = tmp_path / "chunks", tmp_path / "assembly"
    sums = load_script("gpu/mpnet_chunks.py").make_chunks(model_dir, chunks, name="tiny", chunk_bytes=1 << 20)
    parts = sorted(chunks.glob("tiny.tar.*"))
    assert len(parts) >= 2 and all(p.stat().st_size <= 1 << 20 for p in parts)
    assert set(sums) == {p.name for p in parts} | {"tiny.tar", "tiny/model.safetensors"}
    # out of order is refused, a repeated chunk is skipped, the last chunk verifies and unpacks
    assert _assemble(1, chunks, assembly).returncode == 4
    for k in range(len(parts)):
        done = _assemble(k, chunks, assembly)
        assert done.returncode == 0, done.stderr
    assert "verified and unpacked" in done.stdout
    assert "already appended" in _assemble(1, chunks, assembly).stdout
    out = assembly / "tiny"
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    original = AutoModel.from_pretrained(model_dir)
    carried = AutoModel.from_pretrained(out, dtype=torch.float32)
    for (name, a), (_, b) in zip(original.state_dict().items(), carried.state_dict().items(), strict=True):
        assert torch.equal(a.to(torch.bfloat16).float(), b), name
    # a damaged chunk is refused before anything is appended
    parts[0].write_bytes(b"garbage")
    bad = _assemble(0, chunks, tmp_path / "other")
    assert bad.returncode == 3 and "does not match" in bad.stderr


def test_the_default_chunk_still_fits_beside_the_working_tree(load_script):
    """A chunk call carries the working tree plus one chunk: when the tree grows past what the default chunk
    leaves (2 MiB kept free for SHA256SUMS and growth), the device refuses the call; this fails first.
    Counted as scripts/gpu/carry_fits.py counts (a tar archive's blocks)."""
    chunks = load_script("gpu/mpnet_chunks.py")
    fits = load_script("gpu/carry_fits.py")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tree = tree_bytes(ROOT)
    left = fits.LIMIT_MIB * chunks.MIB - tree - 2 * chunks.MIB
    assert chunks.DEFAULT_CHUNK_MIB * chunks.MIB <= left, (
        f"tree {tree / chunks.MIB:.1f} MiB: lower DEFAULT_CHUNK_MIB to {left / chunks.MIB:.0f} or shrink the tree"
    )


def test_carry_fits_counts_a_tar_archives_blocks(tmp_path, load_script):
    fits = load_script("gpu/carry_fits.py")
    (tmp_path / "a").write_bytes(b"x")  # 512 header + 512 content
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 1025)  # 512 + 1536
    assert fits.tar_bytes([tmp_path / "a", tmp_path / "d"]) == 1024 + 2048
