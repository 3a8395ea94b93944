"""Every committed GPU run directory is documented where a reviewer looks for its command (issue 19: "every
GPU number ... has its command in reports/gpu/README.md"): named in the file index of reports/gpu/README.md
(a table row, as `NAME/` or `PATH/`), or in the README.md of a directory above it when a directory above it has
an index row."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GPU = ROOT / "reports" / "gpu"


def _named(text: str, rel: Path) -> bool:
    names = {f"`{rel.as_posix()}/`", f"`{rel.name}/`"}
    return any(n in text for n in names)


def undocumented(gpu: Path = GPU) -> list[str]:
    """Run directories (a ``grid.json``) under ``gpu`` that are not named in its README's table rows, unless
    the README.md of a parent directory names them and a parent directory has a row."""
    rows = "\n".join(
        line for line in (gpu / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| ")
    )
    missing = []
    for grid in sorted(gpu.rglob("grid.json")):
        run = grid.parent.relative_to(gpu)
        if _named(rows, run):
            continue
        parents = [p for p in run.parents if p != Path(".")]
        in_a_readme = any(
            (gpu / p / "README.md").is_file()
            and _named((gpu / p / "README.md").read_text(encoding="utf-8"), run.relative_to(p))
            for p in parents
        )
        if in_a_readme and any(_named(rows, p) for p in parents):
            continue
        missing.append(run.as_posix())
    return missing


def test_every_committed_gpu_run_directory_is_documented() -> None:
    assert not undocumented(), (
        "add a file-index row to reports/gpu/README.md (or a line to its folder's README)"
    )


def test_an_undocumented_run_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("| `known/` | the command | docs |\nnot a row: `loose/`\n")
    for run in ("known", "loose", "known/sub", "other/inner"):
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "grid.json").write_text("{}")
    (tmp_path / "other" / "README.md").write_text("`inner/` holds the plan")
    assert undocumented(tmp_path) == ["known/sub", "loose", "other/inner"]  # other/ has no row
    (tmp_path / "known" / "README.md").write_text("`sub/` the second wave")
    assert undocumented(tmp_path) == ["loose", "other/inner"]
