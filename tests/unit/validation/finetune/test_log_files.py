"""Committed logs stored gzip-compressed (validation.finetune.log_files)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from gelora.errors import ResultFileError
from validation.finetune.log_files import (
    compress_logs,
    compressed,
    log_stem,
    log_text,
    main,
    write_log,
)


def _logs(run: Path, **texts: str) -> Path:
    (run / "logs").mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (run / "logs" / f"{name}.log").write_text(text, encoding="utf-8")
    return run / "logs"


def test_compress_replaces_each_plain_log_by_the_same_text_compressed(tmp_path: Path) -> None:
    logs = _logs(tmp_path, stsb__lora__seed0="epoch 1\n", stsb__lora="sel\n")
    (logs / "notes.txt").write_text("not a log", encoding="utf-8")
    assert compress_logs(tmp_path, dry_run=True) == ["stsb__lora.log", "stsb__lora__seed0.log"]
    assert (logs / "stsb__lora.log").exists()  # a dry run writes nothing
    assert compress_logs(tmp_path) == ["stsb__lora.log", "stsb__lora__seed0.log"]
    assert sorted(p.name for p in logs.iterdir()) == [
        "notes.txt",
        "stsb__lora.log.gz",
        "stsb__lora__seed0.log.gz",
    ]
    gz = logs / "stsb__lora__seed0.log.gz"
    assert log_text(gz) == b"epoch 1\n" and gzip.decompress(gz.read_bytes()) == b"epoch 1\n"
    assert gz.read_bytes() == compressed(b"epoch 1\n")  # deterministic: the same text, the same bytes
    assert gz.read_bytes()[:10] == bytes.fromhex("1f8b0800000000000203")  # no name, mtime 0, OS "Unix"
    assert compress_logs(tmp_path) == []  # nothing left to do
    assert compress_logs(tmp_path / "missing") == []


def test_an_interrupted_compression_finishes_and_a_different_text_is_refused(tmp_path: Path) -> None:
    logs = _logs(tmp_path, a__lora__seed0="same", b__lora__seed0="plain text")
    write_log(logs / "a__lora__seed0.log.gz", b"same")  # written before an interruption: both present
    write_log(logs / "b__lora__seed0.log.gz", b"another text")
    with pytest.raises(ResultFileError, match=r"b__lora__seed0\.log\.gz exists with another text"):
        compress_logs(tmp_path)
    assert (logs / "a__lora__seed0.log").exists()  # refused before anything was converted
    (logs / "b__lora__seed0.log").unlink()
    assert compress_logs(tmp_path) == ["a__lora__seed0.log"]
    assert not (logs / "a__lora__seed0.log").exists() and log_text(logs / "a__lora__seed0.log.gz") == b"same"


def test_names_and_bad_files(tmp_path: Path) -> None:
    assert log_stem("x__lora__seed0.log") == log_stem("x__lora__seed0.log.gz") == "x__lora__seed0"
    with pytest.raises(ValueError, match="not a log name"):
        log_stem("x.json")
    with pytest.raises(ValueError, match="not a committed log name"):
        write_log(tmp_path / "x.log", b"text")
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(ResultFileError, match="not a valid gzip file"):
        log_text(bad)
    corrupt = bytearray(compressed(b"epoch 1\n" * 50))
    corrupt[10] = 0xFF  # the deflate stream's first byte: zlib.error, not OSError
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(ResultFileError, match="not a valid gzip file"):
        log_text(bad)
    bad.write_bytes(b"")
    with pytest.raises(ResultFileError, match="it is empty"):
        log_text(bad)
    plain = tmp_path / "plain.log"
    plain.write_bytes(b"as is")
    assert log_text(plain) == b"as is"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _logs(tmp_path / "r", a__lora__seed0="x")
    assert main(["compress", str(tmp_path / "r"), "--dry-run"]) == 0
    assert "would compress 1 log(s)" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "r")]) == 0
    assert "compressed 1 log(s)" in capsys.readouterr().out
    assert main(["compress", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
