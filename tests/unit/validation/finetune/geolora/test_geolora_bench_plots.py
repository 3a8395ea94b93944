"""Step-time comparison (tiny sizes on CPU) and the rank-trajectory figure."""

from __future__ import annotations

import json

import pytest

from gelora.errors import ConfigError, InvalidInputError
from validation.finetune.geolora.bench import main, step_time_comparison
from validation.finetune.geolora.plots import normalise_rank_trajectory, plot_rank_trajectories


def test_step_time_comparison_tiny_cpu() -> None:
    res = step_time_comparison(None, "cpu", batch_size=2, seq_len=8, steps=2, warmup=1, rank=2)
    assert set(res["results"]) == {"lora", "adalora", "geolora"}
    for r in res["results"].values():
        assert len(r["times_ms"]) == 2 and all(t > 0 for t in r["times_ms"])
        assert r["median_ms"] > 0 and r["adapter_params"] > 0
        assert 0 < r["update_median_ms"] <= r["median_ms"]
    assert res["results"]["lora"]["relative_to_lora"] == 1.0
    # uniform LoRA rank 2 on 36 BERT modules vs GeoLoRA rank 2 (+ its 2x2 cores)
    lora, geo = res["results"]["lora"]["adapter_params"], res["results"]["geolora"]["adapter_params"]
    assert geo == lora + 36 * 4
    assert res["config"]["batch_size"] == 2 and res["config"]["seed"] == 0


def test_bench_cli_writes_json(tmp_path) -> None:
    out = tmp_path / "b.json"
    rc = main(
        [
            "--device",
            "cpu",
            "--out",
            str(out),
            "--batch-size",
            "1",
            "--seq-len",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--rank",
            "1",
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"lora", "adalora", "geolora"}


def test_bench_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        step_time_comparison(None, "cpu", steps=0)
    with pytest.raises(ConfigError, match="unknown methods"):
        step_time_comparison(None, "cpu", methods=("dora",))


def test_plot_rank_trajectories_png(tmp_path) -> None:
    traj = [(0, {"a": 4, "b": 4}), (1, {"a": 3, "b": 6}), (2, {"a": 2, "b": 7})]
    path = plot_rank_trajectories(
        traj, tmp_path / "fig" / "ranks.png", param_trajectory=[(0, 10), (1, 9), (2, 8)]
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # JSON round trip (lists instead of tuples) gives the same series
    steps, series = normalise_rank_trajectory(json.loads(json.dumps(traj)))
    assert steps == [0, 1, 2] and series == {"a": [4, 3, 2], "b": [4, 6, 7]}


@pytest.mark.parametrize("bad", [[], [(0, {"a": 1}), (1, {"b": 1})], [(0, 3)], ["x"]])
def test_plot_bad_trajectory(bad, tmp_path) -> None:
    with pytest.raises(InvalidInputError):
        plot_rank_trajectories(bad, tmp_path / "x.png")


def test_probe_tiny(tmp_path) -> None:
    """The SST-2 probe end to end at toy size (own tiny GLUE-layout files, 2 steps, 3 settings)."""
    from validation.finetune.geolora.probe import run_probe

    rows = "sentence\tlabel\n" + "".join(f"{w} movie\t{i % 2}\n" for i, w in enumerate(["good", "bad"] * 8))
    (tmp_path / "train.tsv").write_text(rows)
    (tmp_path / "dev.tsv").write_text(rows)
    res = run_probe(tmp_path, ["head_only", "lora", "geo_rms_x10"], steps=2, batch_size=4, max_length=8)
    r = res["results"]
    assert set(r) == {"head_only", "lora", "geo_rms_x10"}
    assert all(0.0 <= v["dev_acc"] <= 1.0 for v in r.values())
    traj = r["geo_rms_x10"]["rank_trajectory"]  # change points of 2 steps: step 0, changes, step 2
    assert traj[0][0] == 0 and traj[-1][0] == 2 and r["geo_rms_x10"]["final_params"] > 0
    assert res["config"]["n_train"] == 16 and res["config"]["seed"] == 0
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train.tsv").write_text("a\tb\n")
    (tmp_path / "bad" / "dev.tsv").write_text("a\tb\n")
    with pytest.raises(InvalidInputError, match="SST-2"):
        run_probe(tmp_path / "bad", ["head_only"], steps=1)
    with pytest.raises(ConfigError, match="unknown probe settings"):
        run_probe(tmp_path, ["nope"], steps=1)


def test_change_point_indices_keep_first_last_and_changes():
    from validation.finetune.geolora.plots import change_point_indices

    assert change_point_indices([]) == []
    assert change_point_indices([{"a": 1}]) == [0]
    assert change_point_indices([3, 3, 2, 2, 2, 5, 5]) == [0, 2, 5, 6]
    assert change_point_indices([{"a": 1}, {"a": 1}, {"a": 2}]) == [0, 2]
