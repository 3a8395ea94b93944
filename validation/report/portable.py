"""Machine-independent paths for committed results: no absolute path of any machine in a report.

A report records which data files, weights and sources it used. Written as absolute paths they name one
machine's layout (``/home/me/data/glue/...``) and leak it into committed files. :func:`portable_path`
rewrites a path against known roots instead:

========================  =====================================================================
root                      written as
========================  =====================================================================
the data root             ``$GELORA_DATA_DIR/glue/STS-B/train.tsv.gz`` (``GELORA_DATA_DIR`` or
                          ``<repo>/../shared/data``, see :func:`validation.data.default_data_dir`)
the repository checkout   a relative path (``validation/metrics.py``)
the working directory     a relative path (``reports/quick/runs``)
a site-packages folder    ``site-packages/transformers/trainer.py``
the home folder           ``~/...``
anything else             ``<elsewhere>/<file name>``
========================  =====================================================================

:func:`portable_text` applies the same rewriting to every occurrence inside free text (error messages,
"GLUE stsb train (/abs/path)"), and :func:`portable_json` to every string of a JSON value.
:func:`portable_text` leaves an absolute path under none of these roots as it is (it cannot tell where a
path ends inside free text); :func:`portable_path` does not. ``python -m validation.report.portable
--root PREFIX=LABEL ... FILE ...`` rewrites committed result files
in place (for results produced on another machine, whose roots are passed explicitly) and adds the
SHA-256 of each data file it can find under ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: how the data root is written in a report
DATA_ROOT_LABEL = "$GELORA_DATA_DIR"
#: how a site-packages folder is written
SITE_LABEL = "site-packages"
#: prefix of an absolute path under none of the known roots (followed by the file name only)
ELSEWHERE_LABEL = "<elsewhere>"

#: absolute paths of a machine, as found in text: POSIX roots that name a machine's layout, and Windows
#: drive paths. Used by :func:`find_absolute_paths` (and the test that scans the committed files).
ABSOLUTE_PATH_RE = re.compile(
    r"(?<![\w.$~<>/-])(?:/(?:work|root|home|tmp|opt|Users|mnt|private)/"
    r"|[A-Za-z]:\\\\?[A-Za-z0-9_.$-])"
)

Roots = Sequence[tuple[str, str]]


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _data_root() -> Path | None:
    env = os.environ.get("GELORA_DATA_DIR")
    if env:
        return Path(env).expanduser()
    fallback = _repo_root().parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


def _site_dirs() -> list[str]:
    dirs: set[str] = set()
    try:
        dirs.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - virtualenvs without getsitepackages
        pass
    user = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user, str):
        dirs.add(user)
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths().get(key)
        if p:
            dirs.add(p)
    dirs.update(p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages")))
    return sorted(dirs)


def default_roots() -> list[tuple[str, str]]:
    """``(prefix, label)`` pairs of this machine, longest first: data root, site-packages, checkout, working
    directory (both written as relative paths), home.

    Both the path as given and its resolved form (symbolic links followed) are listed.
    """
    pairs: list[tuple[str, str]] = []

    def add(path: str | Path | None, label: str) -> None:
        if not path:
            return
        for p in {str(Path(path)), os.path.realpath(path)}:
            if p not in ("/", "") and (p, label) not in pairs:
                pairs.append((p.rstrip("/"), label))

    add(_data_root(), DATA_ROOT_LABEL)
    for d in _site_dirs():
        add(d, SITE_LABEL)
    add(_repo_root(), "")
    # the working directory: paths the user gave relative to it (--out, --runs) are written back that way
    add(Path.cwd(), "")
    add(Path.home(), "~")
    # longest prefix first, so a data root inside the checkout wins over the checkout
    return sorted(pairs, key=lambda kv: -len(kv[0]))


def _join(label: str, rest: str) -> str:
    if not label:
        return rest or "."
    return f"{label}/{rest}" if rest else label


def portable_path(path: str | os.PathLike[str], roots: Roots | None = None) -> str:
    """``path`` written against the first root that holds it (see the module docstring).

    Parameters
    ----------
    path : str or path-like
        Any path; a relative one is returned unchanged.
    roots : sequence of (prefix, label), optional
        Absolute prefixes and how to write them, most specific first (default :func:`default_roots`).

    Returns
    -------
    str
        The path without any absolute prefix of this machine.
    """
    text = os.fspath(path)
    if not os.path.isabs(text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        return text
    for prefix, label in default_roots() if roots is None else roots:
        if text == prefix:
            return _join(label, "")
        if text.startswith(prefix + "/"):
            return _join(label, text[len(prefix) + 1 :])
    name = re.split(r"[\\/]", text.rstrip("/\\"))[-1]
    return f"{ELSEWHERE_LABEL}/{name}"


def portable_text(text: str, roots: Roots | None = None) -> str:
    """``text`` with every occurrence of a root prefix rewritten (``/data/root/x`` -> ``$GELORA_DATA_DIR/x``).

    Only known prefixes are rewritten (followed by ``/`` or ending a word), so URLs, ratios and relative
    paths are left alone.
    """
    for prefix, label in default_roots() if roots is None else roots:
        if prefix not in text:
            continue
        text = text.replace(prefix + "/", label + "/" if label else "")
        bare = label or "."
        text = re.sub(re.escape(prefix) + r"(?=[\s\"'),;:\]]|$)", lambda _m: bare, text)  # noqa: B023
    return text


def portable_json(obj: Any, roots: Roots | None = None) -> Any:
    """A copy of a JSON value with :func:`portable_text` applied to every string (keys included)."""
    roots = default_roots() if roots is None else roots
    if isinstance(obj, str):
        return portable_text(obj, roots)
    if isinstance(obj, dict):
        return {portable_text(str(k), roots): portable_json(v, roots) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [portable_json(v, roots) for v in obj]
    return obj


def local_path(path: str, roots: Roots | None = None) -> Path:
    """The file on this machine that a portable path names (the inverse of :func:`portable_path`).

    ``$GELORA_DATA_DIR/x`` resolves against this machine's data root, ``site-packages/x`` against the
    first site-packages folder holding ``x``, ``~/x`` against the home folder and a relative path against
    the repository checkout; an absolute path is returned as it is. The result may not exist.
    """
    roots = default_roots() if roots is None else roots
    if os.path.isabs(path):
        return Path(path)
    head, _, rest = path.partition("/")
    candidates = [p for p, label in roots if label == head and rest] or None
    if candidates:
        for prefix in candidates:
            if (Path(prefix) / rest).exists():
                return Path(prefix) / rest
        return Path(candidates[0]) / rest
    return _repo_root() / path


def find_absolute_paths(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every line of ``text`` holding an absolute path of a machine."""
    return [(i, line) for i, line in enumerate(text.splitlines(), 1) if ABSOLUTE_PATH_RE.search(line)]


# --------------------------------------------------------------------------------------------------
# rewriting committed files
# --------------------------------------------------------------------------------------------------


def _add_hashes(obj: Any, data_dir: Path | None) -> Any:
    """Add ``<key>_sha256`` beside every ``source``/``path`` string naming a file under the data root."""
    from validation.report.environment import sha256_file

    if isinstance(obj, list):
        return [_add_hashes(v, data_dir) for v in obj]
    if not isinstance(obj, dict):
        return obj
    out = {k: _add_hashes(v, data_dir) for k, v in obj.items()}
    if data_dir is None:
        return out
    for key, value in obj.items():
        if key not in ("source", "path") or not isinstance(value, str):
            continue
        if not value.startswith(DATA_ROOT_LABEL + "/"):
            continue
        local = data_dir / value[len(DATA_ROOT_LABEL) + 1 :]
        hkey = "sha256" if key == "path" else f"{key}_sha256"
        if local.is_file() and hkey not in out:
            out[hkey] = sha256_file(local)
    return out


def rewrite_file(path: Path, roots: Roots, data_dir: Path | None = None) -> bool:
    """Rewrite one committed file in place (JSON: every string; text: every line); ``True`` if it changed.

    A JSON file keeps its indentation (:func:`gelora._io.json_indent_of`: 2 spaces by default, none for
    bulk results written at :data:`gelora._io.RESULT_INDENT`).
    """
    from gelora._io import atomic_write_text, json_indent_of, json_text

    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return False
    if path.suffix == ".json":
        new_obj = _add_hashes(portable_json(json.loads(text), roots), data_dir)
        indent = json_indent_of(text)
        new = json_text(new_obj, indent) + ("\n" if text.endswith("\n") else "")
        if json.loads(new) == json.loads(text):
            return False
    else:
        new = portable_text(text, roots)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True


def _parse_root(spec: str) -> tuple[str, str]:
    prefix, sep, label = spec.partition("=")
    if not sep or not os.path.isabs(prefix):
        raise argparse.ArgumentTypeError(f"--root expects ABSOLUTE_PREFIX=LABEL, got {spec!r}")
    return prefix.rstrip("/"), label


def main(argv: Iterable[str] | None = None) -> int:
    """Command line: rewrite absolute paths in committed result files (see the module docstring)."""
    ap = argparse.ArgumentParser(
        prog="python -m validation.report.portable",
        description="Rewrite absolute paths of a machine in result files as portable paths.",
    )
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument(
        "--root",
        action="append",
        type=_parse_root,
        default=[],
        metavar="PREFIX=LABEL",
        help=f"an extra root, e.g. /other/machine/data='{DATA_ROOT_LABEL}' (repeatable; this machine's "
        "roots are always added)",
    )
    ap.add_argument("--data-dir", type=Path, default=_data_root(), help="data root used to hash data files")
    args = ap.parse_args(list(argv) if argv is not None else None)
    roots = sorted([*args.root, *default_roots()], key=lambda kv: -len(kv[0]))
    changed = 0
    for f in args.files:
        if f.is_file() and rewrite_file(f, roots, args.data_dir):
            changed += 1
            print(f"rewrote {f}")
    print(f"{changed} of {len(args.files)} file(s) rewritten")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
