"""Pack a model as bf16 safetensors + config + tokenizer into a tar split in chunks a GPU call can carry.

Run on the CPU machine from the repository root (project venv active)::

    python scripts/gpu/mpnet_chunks.py                      # mpnet-base -> .devcarry/mpnet/ (ignored by git)
    python scripts/gpu/mpnet_chunks.py --model DIR --name NAME --out DIR --chunk-mib 24

It writes ``<out>/<name>.tar.00``, ``.01``, ... (each at most ``--chunk-mib`` MiB) and ``<out>/SHA256SUMS``
(``sha256sum -c`` format: every chunk, the whole tar and ``<name>/model.safetensors``). On the GPU host,
``bash scripts/gpu/mpnet_assemble.sh K`` appends chunk K and, after the last one, verifies and unpacks the
model (see CONTRIBUTING.md, "GPU work"). The bf16 weights are upcast to fp32 when the runner loads them.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
from pathlib import Path

#: files of a model folder that are not needed to load it with transformers
SKIP = {"README.md", "desktop.ini", "model.safetensors", "pytorch_model.bin"}
MIB = 1 << 20
#: default largest chunk: beside the working tree (about 26 MiB on the evening of 2026-11-30, counted as a tar
#: archive holds it: scripts/gpu/carry_fits.py) within the 64 MiB a device call carries, with room for the tree
#: to grow; 44 stopped fitting when the tree passed 20 MB (a call was refused, 2026-11-30), 36 stopped leaving
#: the 2-MiB margin at 26 MiB (the same evening), 32 at 30.2 MiB (2026-12-01: eight chunks), 28 at 34.6 MiB
#: (2026-12-01 evening; the tree grows about 1.7 MiB a GPU session, mostly cells and logs): 24 gives nine
#: chunks of the 209.5-MiB tar (as 23.3 would) and leaves about two sessions' growth
DEFAULT_CHUNK_MIB = 24.0


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def bf16_safetensors(model_dir: Path) -> bytes:
    """``model.safetensors`` of ``model_dir`` with every floating tensor cast to bfloat16, as bytes."""
    import torch
    from safetensors.torch import load_file, save

    tensors = load_file(str(model_dir / "model.safetensors"))
    out = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    return save(out, metadata={"format": "pt"})


def make_chunks(model_dir: Path, out_dir: Path, *, name: str, chunk_bytes: int) -> dict[str, str]:
    """Write the chunks and ``SHA256SUMS`` into ``out_dir`` (emptied of old chunks first).

    Returns
    -------
    dict
        ``{file name: sha256}`` as written to ``SHA256SUMS``.
    """
    if not (model_dir / "config.json").is_file() or not (model_dir / "model.safetensors").is_file():
        raise SystemExit(f"{model_dir} needs config.json and model.safetensors")
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{name}.tar.*"):
        old.unlink()
    weights = bf16_safetensors(model_dir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.name not in SKIP)
        for p in [*files, None]:
            data = weights if p is None else p.read_bytes()
            info = tarfile.TarInfo(f"{name}/{'model.safetensors' if p is None else p.name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    sums: dict[str, str] = {}
    n = max(1, -(-len(blob) // chunk_bytes))
    for k in range(n):
        part = blob[k * chunk_bytes : (k + 1) * chunk_bytes]
        fname = f"{name}.tar.{k:02d}"
        (out_dir / fname).write_bytes(part)
        sums[fname] = _sha256(part)
    sums[f"{name}.tar"] = _sha256(blob)
    sums[f"{name}/model.safetensors"] = _sha256(weights)
    (out_dir / "SHA256SUMS").write_text("".join(f"{h}  {f}\n" for f, h in sums.items()), encoding="utf-8")
    print(
        f"{model_dir} -> {out_dir}: bf16 weights {len(weights) / MIB:.1f} MiB, tar {len(blob) / MIB:.1f} MiB "
        f"in {n} chunks of at most {chunk_bytes / MIB:.0f} MiB"
    )
    return sums


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mpnet-base", help="short name or model directory (default mpnet-base)")
    p.add_argument("--name", default="mpnet-base", help="folder name of the model after unpacking")
    p.add_argument(
        "--out", default=".devcarry/mpnet", help="output folder (default .devcarry/mpnet, ignored)"
    )
    p.add_argument(
        "--chunk-mib",
        type=float,
        default=DEFAULT_CHUNK_MIB,
        help=f"largest chunk in MiB (default {DEFAULT_CHUNK_MIB:.0f}: a chunk beside the ~35 MiB working tree within "
        "the 64 MiB a call carries: scripts/gpu/carry_fits.py)",
    )
    args = p.parse_args(argv)
    from gelora.models import resolve_model_name

    model_dir = Path(resolve_model_name(args.model))
    make_chunks(model_dir, Path(args.out), name=args.name, chunk_bytes=int(args.chunk_mib * MIB))
    return 0


if __name__ == "__main__":
    sys.exit(main())
