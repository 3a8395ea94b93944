"""scripts/probes/step_rate.py on the CPU: one JSON line per (method, length, variant), rates that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic.tiny_models import save_tiny_model


def test_eager_lines_per_method_and_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], load_script
) -> None:
    mod = load_script("probes/step_rate.py")
    model = save_tiny_model("bert", tmp_path / "bert")
    argv = ["--model", str(model), "--device", "cpu", "--methods", "lora,head_only", "--variants", "eager"]
    assert mod.main([*argv, "--lengths", "8,16", "--steps", "3", "--warm", "1", "--batch", "4"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [(r["method"], r["length"]) for r in rows] == [
        ("lora", 8),
        ("lora", 16),
        ("head_only", 8),
        ("head_only", 16),
    ]
    for r in rows:
        assert r["variant"] == "eager" and r["compile_s"] is None and r["steps"] == 3 and r["batch"] == 4
        assert r["ms_per_step"] == pytest.approx(1e3 / r["steps_per_s"])
        assert len(r["losses"]) == 2 and all(0.0 < v < 5.0 for v in r["losses"])  # warm-up + last step
        assert r["end_unix"] - r["start_unix"] == pytest.approx(r["steps"] / r["steps_per_s"], abs=1e-5)
    assert all(
        a["end_unix"] <= b["start_unix"] for a, b in zip(rows, rows[1:], strict=False)
    )  # one after another


def test_unknown_variant_and_bad_counts_are_refused(load_script) -> None:
    mod = load_script("probes/step_rate.py")
    with pytest.raises(SystemExit):
        mod.main(["--steps", "0"])
    with pytest.raises(SystemExit, match="unknown variant"):
        mod.run("lora", "graphs", 8, type("A", (), {"model": None, "device": "cpu"})())
