"""The README's evidence table quotes the committed full report (issue 19: "the README's evidence table
matches the report"): every paired difference with its interval in the C4 row and in its "C4 in detail"
bullets is one the report computed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[4]
MINUS = "\u2212"
#: "−0.0095 [−0.0133, −0.0058]": a difference and its 95 % interval, as the README writes them
TRIPLE = re.compile(r"([+\u2212-]?\d+\.\d+) \[([+\u2212-]?\d+\.\d+), ([+\u2212-]?\d+\.\d+)\]")


def _num(text: str) -> tuple[float, int]:
    """The value and its number of decimals."""
    text = text.replace(MINUS, "-")
    return float(text), len(text.split(".")[1])


def _c4_row() -> str:
    rows = [
        line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| GeLoRA beats LoRA")
    ]
    assert len(rows) == 1, "README.md has no single evidence row for C4"
    return rows[0]


def _c4_detail() -> str:
    """The README's "C4 in detail" (the C4 row's protocol, exclusions, ablations, second budget and rate
    check, moved out of the table cell): every line from its anchor to the next heading, so that no bullet,
    continuation line or paragraph in between goes unchecked."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == '<a id="c4-in-detail"></a>']
    assert len(starts) == 1, "README.md has no single 'C4 in detail' anchor"
    block: list[str] = []
    for line in lines[starts[0] + 1 :]:
        if line.startswith("#"):
            break
        block.append(line)
    assert any(line.startswith("- **") for line in block), "README.md's 'C4 in detail' has no bullets"
    return "\n".join(block)


def _report_triples(report: dict[str, Any]) -> list[tuple[float, float, float]]:
    """Every (difference, low, high) of C4 (incl. its rate check), of the score-vs-budget pairs and of the
    ablation section (its comparisons and controls)."""
    c4 = next(c for c in report["claims"] if c["id"] == "C4")
    nums = c4["numbers"]
    out = [(v, *nums[f"{k}/ci95"]) for k, v in nums.items() if f"{k}/ci95" in nums and nums[f"{k}/ci95"]]
    grid = report["sections"].get("grid", {}).get("data") or {}
    out += [
        (q["diff"], *q["ci"])
        for rec in grid.get("paper_budgets", [])
        for by in rec.get("pairs", {}).values()
        for q in by.values()
        if q.get("ci")
    ]
    abl = report["sections"].get("ablations", {}).get("data") or {}
    out += [
        (c["diff"], *c["ci"]) for c in [*abl.get("comparisons", []), *abl.get("controls", [])] if c.get("ci")
    ]
    return out


def matches(quoted: tuple[str, str, str], computed: tuple[float, float, float]) -> bool:
    """Whether a quoted triple is the computed one rounded to the quoted decimals."""
    return all(
        abs(round(c, d) - q) < 0.5 * 10**-d
        for (q, d), c in zip((_num(t) for t in quoted), computed, strict=True)
    )


def test_matches_rounds_to_the_quoted_digits():
    assert matches(("\u22120.0095", "\u22120.0133", "\u22120.0058"), (-0.009512, -0.013252, -0.005773))
    assert not matches(("\u22120.0095", "\u22120.0133", "\u22120.0057"), (-0.009512, -0.013252, -0.005773))
    assert matches(("+0.003", "\u22120.018", "+0.024"), (0.002941, -0.017967, 0.023849))


def test_every_interval_in_the_c4_row_is_in_the_committed_report():
    report = json.loads((ROOT / "reports" / "full" / "report.json").read_text(encoding="utf-8"))
    computed = _report_triples(report)
    quoted = TRIPLE.findall(_c4_row()) + TRIPLE.findall(_c4_detail())
    assert len(TRIPLE.findall(_c4_row())) >= 4 and len(quoted) >= 20
    missing = [q for q in quoted if not any(matches(q, c) for c in computed)]
    assert not missing, f"README C4 intervals not in reports/full/report.json: {missing}"


def test_c4_row_states_the_report_verdict_and_counts():
    report = json.loads((ROOT / "reports" / "full" / "report.json").read_text(encoding="utf-8"))
    c4 = next(c for c in report["claims"] if c["id"] == "C4")
    row = _c4_row()
    assert f'C4 reads "{c4["verdict"]}"' in row
    m = re.search(r"worse on (\d+) of (\d+) decided pairs", row)
    assert m, "the C4 row gives no 'worse on N of M decided pairs'"
    # the key counts the decided pairs of every model: "...; worse on w/n pairs"
    key = re.search(r"worse on (\d+)/(\d+) pairs", c4["key"]["text"])
    assert key, c4["key"]["text"]
    assert (m.group(1), m.group(2)) == key.groups()
