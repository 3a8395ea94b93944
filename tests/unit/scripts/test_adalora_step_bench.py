"""scripts/adalora_step_bench.py: the GeoLoRA integrator's parts are timed when asked, and only the
recorded steps count."""

from __future__ import annotations

import json

import pytest


def _lines(capsys: pytest.CaptureFixture[str]) -> dict[str, dict]:
    return {r["method"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}


def test_phase_times_split_geolora_integrator(capsys: pytest.CaptureFixture[str], load_script) -> None:
    bench = load_script("adalora_step_bench.py")
    argv = ["--methods", "lora,geolora", "--steps", "3", "--warm", "1", "--batch", "1", "--length", "8"]
    assert bench.main([*argv, "--phase-times", "--count-ops"]) == 0
    out = _lines(capsys)
    assert "integrator_parts_ms_median" not in out["lora"]  # nothing to time
    parts = out["geolora"]["integrator_parts_ms_median"]
    assert set(parts) == {"augment", "augment_bases", "finite_check", "truncate", "svds"}
    assert all(v > 0 for v in parts.values())
    # nested parts: augment holds the per-layer bases and the finite check, truncate the host SVDs
    assert parts["augment"] >= parts["augment_bases"] and parts["augment"] >= parts["finite_check"]
    assert parts["truncate"] >= parts["svds"]
    # timing the parts does not change the training: the same parameters as without the timers
    assert bench.main([*argv, "--count-ops"]) == 0
    assert _lines(capsys)["geolora"]["params_sha256"] == out["geolora"]["params_sha256"]


def test_phase_timers_record_only_the_flagged_steps(load_script) -> None:
    bench = load_script("adalora_step_bench.py")

    class Geo:
        def __init__(self) -> None:
            self.calls = 0

        def augment(self) -> int:
            self.calls += 1
            return self._augment_bases() + int(self._grads_finite())

        def _augment_bases(self) -> int:
            return 1

        def _grads_finite(self) -> bool:
            return True

        def truncate(self) -> int:
            return self._svds()

        def _svds(self) -> int:
            return 2

    class Cb:
        optimizer = Geo()

    class Prepared:
        callbacks = [Cb()]

    times, recording = bench._phase_timers(Prepared(), lambda: None)
    geo = Prepared.callbacks[0].optimizer
    assert geo.augment() == 2 and geo.truncate() == 2  # not recording: no slot is touched
    assert all(v == [] for v in times.values())
    recording[0] = True
    for v in times.values():
        v.append(0.0)
    geo.augment()
    geo.truncate()
    assert {k: len(v) for k, v in times.items()} == dict.fromkeys(times, 1)
    assert all(v[0] > 0 for v in times.values()) and geo.calls == 2


def test_batched_qr_variant_trains_the_same_parameters(
    capsys: pytest.CaptureFixture[str], load_script
) -> None:
    bench = load_script("adalora_step_bench.py")
    argv = ["--methods", "geolora,geolora@batched_qr", "--steps", "3", "--warm", "1", "--batch", "2"]
    assert bench.main([*argv, "--length", "8"]) == 0
    out = _lines(capsys)
    assert out["geolora"]["params_sha256"] == out["geolora@batched_qr"]["params_sha256"]  # on the CPU
    # with batched QRs the bases part is the grouped QRs (it read 0 before they were timed)
    assert bench.main([*argv, "--length", "8", "--phase-times"]) == 0
    parts = _lines(capsys)["geolora@batched_qr"]["integrator_parts_ms_median"]
    assert 0 < parts["augment_bases"] <= parts["augment"]
    with pytest.raises(SystemExit):
        bench.main(["--methods", "geolora@turbo"])
