"""scripts/probes/step_rate.py on the CPU: one JSON line per (method, length, variant), rates that add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthetic.tiny_models import save_tiny_model


def _lines(mod, model: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict]:
    """The JSON lines of one eager run of LoRA and head only on the tiny ``model`` (main must return 0)."""
    argv = ["--model", str(model), "--device", "cpu", "--methods", "lora,head_only", "--variants", "eager"]
    assert mod.main([*argv, *extra]) == 0
    return [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]


def test_eager_lines_per_method_and_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], load_script
) -> None:
    mod = load_script("probes/step_rate.py")
    model = save_tiny_model("bert", tmp_path / "bert")
    rows = _lines(mod, model, capsys, "--lengths", "8,16", "--steps", "3", "--warm", "1", "--batch", "4")
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


def test_count_ops_counts_the_computing_operators_of_one_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], load_script
) -> None:
    mod = load_script("probes/step_rate.py")
    model = save_tiny_model("bert", tmp_path / "bert")
    small = ("--lengths", "8", "--steps", "1", "--warm", "1", "--batch", "2")
    lora, head = _lines(mod, model, capsys, *small, "--count-ops")
    # no GPU here: no kernels; LoRA's adapters add forward and backward operators to every linear
    assert lora["kernels_per_step"] is None and lora["kernel_us_per_step"] is None
    assert lora["ops_per_step"] > head["ops_per_step"] > 0
    # without the flag nothing is profiled
    assert all("ops_per_step" not in r for r in _lines(mod, model, capsys, *small))


def test_count_ops_leaves_views_and_composites_out(load_script) -> None:
    """Counted on a step whose operators are known: a matmul, an add and a relu (the view, the composite
    ``aten::linear`` and its transpose left out). Tensors only: a Python scalar or a reduction brings CPU
    helpers of its own (a scalar's dtype copy, a reduction's fill)."""
    import torch

    mod = load_script("probes/step_rate.py")
    a, w, c = torch.ones(4, 3), torch.ones(2, 3), torch.ones(4, 2)

    def step() -> None:
        torch.relu(torch.nn.functional.linear(a.view(4, 3), w) + c)

    counts = mod.count_ops(step, cuda=False)
    assert counts == {"ops_per_step": 3, "kernels_per_step": None, "kernel_us_per_step": None}
