"""Further models' ID profiles for C3 (validation.report.profiles, ``gelora report --id-profiles``): files
read, grouped, refused when malformed, attached to the model_profile section, and C3 judging every model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gelora.errors import ResultFileError
from validation.report.build import Context, _attach_more_models
from validation.report.claims import HOLDS, HOLDS_WITHIN_ERROR, NOT_REPRODUCED
from validation.report.profiles import more_models, read_profile_file

ROOT = Path(__file__).resolve().parents[4]
STSB = ROOT / "reports" / "gpu" / "mpnet_h200" / "ranks_mpnet_twonn.json"
RTE = ROOT / "reports" / "id_profiles" / "rte_mpnet" / "ranks_rte_mle.json"


def _ranks_file(
    tmp_path: Path,
    name: str,
    dims: list[float | None],
    hidden: int = 768,
    estimator: str = "twonn",
    half_width: float = 0.5,
    ci_method: str = "analytic",
) -> Path:
    """A minimal `gelora ranks` result: per-layer dimension, CI and the hidden states' width."""
    d = {
        "schema_version": 1,
        "model": "big-encoder",
        "estimator": estimator,
        "device": "cpu",
        "data": {"n_texts": 64, "source": "$GELORA_DATA_DIR/glue/RTE/train.tsv.gz [sentence1,sentence2]"},
        "sampling": {"max_tokens": 512},
        "layers": [
            {
                "index": i,
                "name": f"h{i}",
                "dimension": x,
                "ci": None if x is None else [x - half_width, x + half_width],
                "result": {"n_features": hidden, "ci_method": ci_method},
            }
            for i, x in enumerate(dims)
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


def _c3(f, more: list[dict]) -> dict:
    base = f.profile_section([3.0, 5.0, 9.0])
    r = f.make_report(model_profile=f.sec({**base, "more_models": more}))
    return next(c for c in r["claims"] if c["id"] == "C3")


def test_a_committed_profile_file_reads_as_a_profile():
    rec = read_profile_file(STSB)
    assert rec["model"] == "mpnet-base" and rec["estimator"] == "twonn" and rec["hidden_size"] == 768
    assert rec["texts"] == "glue/STS-B/train.tsv.gz" and rec["max_tokens"] == 4096
    prof = rec["profile"]
    assert len(prof["dimension"]) == 13 and len(prof["ci_high"]) == 13 and "raw" not in prof
    assert prof["ci_method"] == "analytic"
    assert all(lo <= x <= hi for lo, x, hi in zip(prof["ci_low"], prof["dimension"], prof["ci_high"]))


def test_files_group_by_model_and_texts():
    groups = more_models([STSB, RTE])
    assert [(g["model"], g["texts"], list(g["estimators"])) for g in groups] == [
        ("mpnet-base", "glue/STS-B/train.tsv.gz", ["twonn"]),
        ("mpnet-base", "glue/RTE/train.tsv.gz", ["mle"]),
    ]
    assert groups[0]["files"]["twonn"]["path"] == "reports/gpu/mpnet_h200/ranks_mpnet_twonn.json"
    assert len(groups[0]["files"]["twonn"]["sha256"]) == 64


def test_malformed_or_clashing_files_are_refused(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 2, "layers": []}))
    with pytest.raises(ResultFileError, match="not a `gelora ranks` result"):
        read_profile_file(bad)
    mixed = _ranks_file(tmp_path, "mixed.json", [3.0, 5.0])
    d = json.loads(mixed.read_text())
    d["layers"][1]["result"]["n_features"] = 384
    mixed.write_text(json.dumps(d))
    with pytest.raises(ResultFileError, match="hidden size is not one number"):
        read_profile_file(mixed)
    a = _ranks_file(tmp_path, "a.json", [3.0, 5.0])
    b = _ranks_file(tmp_path, "b.json", [3.0, 6.0])
    with pytest.raises(ResultFileError, match="a second twonn profile"):
        more_models([a, b])
    c = _ranks_file(tmp_path, "c.json", [3.0, 6.0], hidden=1024, estimator="mle")
    with pytest.raises(ResultFileError, match="hidden size 1024"):
        more_models([a, c])
    # a layer flagged degenerate (no dimension) and a missing file are refused with a named error
    flagged = _ranks_file(tmp_path, "flagged.json", [3.0, None, 6.0])
    with pytest.raises(ResultFileError, match=r"layer\(s\) \['h1'\] have no intrinsic dimension"):
        read_profile_file(flagged)
    with pytest.raises(ResultFileError, match="no such profile file"):
        read_profile_file(tmp_path / "typo.json")


def test_texts_from_any_machine_read_relative_to_the_data_root(tmp_path):
    path = _ranks_file(tmp_path, "abs.json", [3.0, 5.0])
    d = json.loads(path.read_text())
    d["data"]["source"] = "/home/someone/data/glue/RTE/dev.tsv.gz [sentence1,sentence2]"
    path.write_text(json.dumps(d))
    assert read_profile_file(path)["texts"] == "glue/RTE/dev.tsv.gz"
    d["data"]["source"] = "/elsewhere/my_texts.txt"
    path.write_text(json.dumps(d))
    assert read_profile_file(path)["texts"] == "my_texts.txt"


def test_c3_judges_every_model(f, tmp_path):
    low = _ranks_file(tmp_path, "low.json", [2.0, 6.0, 12.0, 4.0])
    c3 = _c3(f, more_models([low]))
    assert c3["verdict"] == HOLDS
    assert (
        "big-encoder (RTE) twonn: ID 2.0-12.0 over 4 layers; max upper CI 12.5 (hidden size 768)."
        in c3["evidence"]
    )
    assert c3["key"]["text"] == (
        "test-encoder: ID 3.0-9.0 (upper CI <= 9.3, twonn) vs 384; big-encoder: ID 2.0-12.0 (upper CI <= 12.5, "
        "twonn) vs 768"
    )
    assert c3["table"]["headers"][:2] == ["model", "hidden size"] and len(c3["table"]["rows"]) == 2
    # one model far from "far below its hidden size" decides the claim against the paper
    high = _ranks_file(tmp_path, "high.json", [100.0, 300.0], hidden=768, estimator="mle")
    assert _c3(f, more_models([low, high]))["verdict"] == NOT_REPRODUCED
    # a flat further model (its extreme layers inside each other's intervals) is "within error", even though
    # the first model's profile is clearly separated
    flat = _ranks_file(tmp_path, "flat.json", [10.0, 10.2, 10.1], estimator="mle", half_width=1.0)
    flat_c3 = _c3(f, more_models([flat]))
    assert flat_c3["verdict"] == HOLDS_WITHIN_ERROR and flat_c3["table"]["rows"][-1][-1] == "overlap"
    # a group whose estimator lacks dimensions (a hand-edited report.json) is skipped, not a crash
    broken = more_models([low])
    broken[0]["estimators"]["twonn"]["dimension"] = [3.0, None, 6.0]
    broken_c3 = _c3(f, broken)
    assert broken_c3["table"]["headers"][0] == "estimator"
    assert "big-encoder (RTE): no usable profile" in broken_c3["exclusions"]
    # interval lists of the wrong length are no intervals (never a truncated upper bound)
    short = more_models([low])
    short[0]["estimators"]["twonn"]["ci_high"] = [2.5]
    assert _c3(f, short)["table"]["rows"][-1][-2:] == ["12.0", "no CI"]
    # without further models the claim reads as before (no model column)
    plain = next(
        c
        for c in f.make_report(model_profile=f.sec(f.profile_section([3.0, 5.0, 9.0])))["claims"]
        if c["id"] == "C3"
    )
    assert plain["table"]["headers"][0] == "estimator"


def test_an_interval_the_estimator_did_not_compute_is_not_zero_width(tmp_path, f):
    path = _ranks_file(tmp_path, "danco.json", [4.0, 13.0], estimator="danco", ci_method="none")
    prof = read_profile_file(path)["profile"]
    assert not prof["ci_low"] and not prof["ci_high"] and prof["ci_method"] == "none"
    # alone in its set, a profile without intervals is "no CI", never "separated": within error at best
    c3 = _c3(f, more_models([path]))
    assert c3["verdict"] == HOLDS_WITHIN_ERROR and c3["table"]["rows"][-1][-1] == "no CI"


def test_profiles_attach_to_a_finished_section_only(f, tmp_path, capsys):
    path = _ranks_file(tmp_path, "p.json", [2.0, 6.0])
    ctx = Context(profile="full", seed=0, out_dir=tmp_path / "out")
    done = {"model_profile": f.sec(f.profile_section([3.0, 5.0]))}
    cached = done["model_profile"]["data"]
    _attach_more_models(done, ctx, more_models([path]))
    assert done["model_profile"]["data"]["more_models"][0]["model"] == "big-encoder"
    assert "more_models" not in cached  # the cached record itself is not edited
    assert any(label.startswith("ID profile: big-encoder, twonn") for label in ctx.files)
    failed = {"model_profile": f.sec(None, status="error", reason="boom")}
    _attach_more_models(failed, ctx, more_models([path]))
    assert failed["model_profile"]["data"] is None
    assert "are not attached" in capsys.readouterr().err


def test_cli_refuses_profiles_with_from_and_a_bad_file_before_any_section(tmp_path, capsys):
    from gelora.cli import main

    bad = tmp_path / "typo.json"
    assert main(["report", "--from", str(ROOT / "reports/full/report.json"), "--id-profiles", str(bad)]) != 0
    assert "--id-profiles needs a build" in capsys.readouterr().err
    out = tmp_path / "rep"
    rc = main(["report", "--profile", "quick", "--out", str(out), "--id-profiles", str(bad)])
    assert rc != 0 and "no such profile file" in capsys.readouterr().err
    assert not (out / "raw").exists()  # no section ran
