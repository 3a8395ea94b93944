"""Further models' ID profiles for C3 (validation.report.profiles, ``gelora report --profiles``): files read,
grouped, refused when malformed, attached to the model_profile section, and C3 judging every model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from gelora.errors import ResultFileError
from validation.report.build import Context, _attach_more_models
from validation.report.claims import HOLDS, NOT_REPRODUCED
from validation.report.profiles import more_models, read_profile_file

ROOT = Path(__file__).resolve().parents[4]
STSB = ROOT / "reports" / "gpu" / "mpnet_h200" / "ranks_mpnet_twonn.json"
RTE = ROOT / "reports" / "id_profiles" / "rte_mpnet" / "ranks_rte_mle.json"


def _ranks_file(
    tmp_path: Path, name: str, dims: list[float], hidden: int = 768, estimator: str = "twonn"
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
                "ci": [x - 0.5, x + 0.5],
                "result": {"n_features": hidden},
            }
            for i, x in enumerate(dims)
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps(d))
    return path


def test_a_committed_profile_file_reads_as_a_profile():
    rec = read_profile_file(STSB)
    assert rec["model"] == "mpnet-base" and rec["estimator"] == "twonn" and rec["hidden_size"] == 768
    assert rec["texts"] == "glue/STS-B/train.tsv.gz" and rec["max_tokens"] == 4096
    prof = rec["profile"]
    assert len(prof["dimension"]) == 13 and len(prof["ci_high"]) == 13 and "raw" not in prof
    assert all(lo <= x <= hi for lo, x, hi in zip(prof["ci_low"], prof["dimension"], prof["ci_high"]))


def test_files_group_by_model_and_texts():
    groups = more_models([STSB, RTE])
    assert [(g["model"], g["texts"], list(g["estimators"])) for g in groups] == [
        ("mpnet-base", "glue/STS-B/train.tsv.gz", ["twonn"]),
        ("mpnet-base", "glue/RTE/train.tsv.gz", ["mle"]),
    ]
    assert not Path(groups[0]["files"]["twonn"]["path"]).is_absolute()
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


def test_c3_judges_every_model(f, tmp_path):
    base = f.profile_section([3.0, 5.0, 9.0])
    low = _ranks_file(tmp_path, "low.json", [2.0, 6.0, 12.0, 4.0])
    r = f.make_report(model_profile=f.sec({**base, "more_models": more_models([low])}))
    c3 = next(c for c in r["claims"] if c["id"] == "C3")
    assert c3["verdict"] == HOLDS
    assert (
        "big-encoder (RTE) twonn: ID 2.0-12.0 over 4 layers; max upper CI 12.5 (hidden size 768)."
        in c3["evidence"]
    )
    assert "big-encoder twonn ID 2.0-12.0 (upper CI <= 12.5) vs 768" in c3["key"]["text"]
    assert c3["table"]["headers"][:2] == ["model", "hidden size"] and len(c3["table"]["rows"]) == 2
    # one model far from "far below its hidden size" decides the claim against the paper
    high = _ranks_file(tmp_path, "high.json", [100.0, 300.0], hidden=768, estimator="mle")
    r = f.make_report(model_profile=f.sec({**base, "more_models": more_models([low, high])}))
    assert next(c for c in r["claims"] if c["id"] == "C3")["verdict"] == NOT_REPRODUCED
    # without further models the claim reads as before (no model column)
    plain = next(c for c in f.make_report(model_profile=f.sec(base))["claims"] if c["id"] == "C3")
    assert plain["table"]["headers"][0] == "estimator"


def test_profiles_attach_to_a_finished_section_only(f, tmp_path, capsys):
    path = _ranks_file(tmp_path, "p.json", [2.0, 6.0])
    ctx = Context(profile="full", seed=0, out_dir=tmp_path / "out")
    done = {"model_profile": f.sec(f.profile_section([3.0, 5.0]))}
    before = copy.deepcopy(done)
    _attach_more_models(done, ctx, [path])
    assert done["model_profile"]["data"]["more_models"][0]["model"] == "big-encoder"
    assert "more_models" not in before["model_profile"]["data"]  # the cached record itself is not edited
    assert any(label.startswith("ID profile: big-encoder, twonn") for label in ctx.files)
    failed = {"model_profile": f.sec(None, status="error", reason="boom")}
    _attach_more_models(failed, ctx, [path])
    assert failed["model_profile"]["data"] is None
    assert "are not attached" in capsys.readouterr().err
