"""Whether a device call with these carried folders fits the 64 MiB a call carries, before making it.

Run on the CPU machine from the repository root::

    python scripts/gpu/carry_fits.py .devcarry/m8 .devcarry/sitelite .devcarry/data

It adds up what the device tool sends: the working tree (tracked files and untracked ones git does not
ignore, and ``shared/`` where the checkout has one) and the carried paths, counted as a tar archive holds
them (a 512-byte header per file, its contents padded to 512 bytes), and exits 1 when the sum passes the
limit. That count reproduces both ends seen on 2026-11-30: the 44-MiB chunk calls at 2f8d52f (1,074 files,
63.9 MiB) were accepted, the first one at 3e9b1f8 (1,107 files, 64.4 MiB) refused; plain bytes (63.1 and
63.6 MiB) would have passed both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# the counting lives in the package (validation/carry_size.py, shared with validation.finetune.ckpt_carry);
# this checkout's copy first, also when the script is run by its path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from validation.carry_size import LIMIT_MIB, MIB, TAR_BLOCK, tar_bytes, tree_files  # noqa: E402

__all__ = ["LIMIT_MIB", "MIB", "TAR_BLOCK", "main", "tar_bytes", "tree_files"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("carry", nargs="*", help="paths the call carries (relative to the repository root)")
    a = p.parse_args(argv)
    root = Path.cwd()
    missing = [c for c in a.carry if not (root / c).exists()]
    if missing:
        print(f"error: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    tree = tar_bytes(tree_files(root))
    carry = tar_bytes(root / c for c in a.carry)
    total = (tree + carry) / MIB
    verdict = "fits" if total <= LIMIT_MIB else "too big: the device tool refuses the call"
    print(
        f"tree {tree / MIB:.1f} MiB + carry {carry / MIB:.1f} MiB = {total:.1f} of {LIMIT_MIB:.0f} MiB: {verdict}"
    )
    return 0 if total <= LIMIT_MIB else 1


if __name__ == "__main__":
    raise SystemExit(main())
