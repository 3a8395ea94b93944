import json
import os

import numpy as np
import pytest

from gelora._io import (
    RESULT_INDENT,
    atomic_write_json,
    atomic_write_text,
    json_indent_of,
    read_json,
    same_result_file,
)
from gelora.errors import ResultFileError


def test_atomic_write_json_roundtrip_numpy(tmp_path):
    p = atomic_write_json(tmp_path / "sub" / "cell.json", {"a": np.float64(1.5), "b": np.arange(3)})
    assert read_json(p) == {"a": 1.5, "b": [0, 1, 2]}
    # no temporary files left behind
    assert sorted(os.listdir(p.parent)) == ["cell.json"]


def test_atomic_write_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "x.json", {"a": float("nan")})
    assert not (tmp_path / "x.json").exists()
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_old_file(tmp_path):
    p = atomic_write_text(tmp_path / "r.json", json.dumps({"v": 1}))

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(p, {"v": Boom()})
    assert read_json(p) == {"v": 1}


def test_read_json_corrupt_and_missing(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"truncated": ')
    with pytest.raises(ResultFileError, match="corrupt"):
        read_json(bad)
    with pytest.raises(ResultFileError, match="not found"):
        read_json(tmp_path / "missing.json")


def test_atomic_files_get_the_mode_of_a_plain_open(tmp_path):
    mask = os.umask(0o022)
    try:
        import importlib

        import gelora._io as io_mod

        importlib.reload(io_mod)  # re-read the umask set above
        p = io_mod.atomic_write_bytes(tmp_path / "b.bin", b"x")
        assert (p.stat().st_mode & 0o777) == 0o644  # not mkstemp's 0600
        assert p.read_bytes() == b"x"
    finally:
        os.umask(mask)
        importlib.reload(io_mod)


@pytest.mark.parametrize("indent", [None, 0, 1, 2, 4])
def test_json_indent_of_reads_back_the_indent_json_wrote(indent):
    text = json.dumps({"a": [1, {"b": 2}], "c": "x"}, indent=indent)
    assert json_indent_of(text) == indent
    assert json_indent_of(text + "\n") == indent


def test_json_indent_of_a_one_line_value_is_none():
    assert json_indent_of("{}\n") is None and json_indent_of("[]") is None and json_indent_of("") is None


def test_results_are_written_one_value_per_line_without_indentation(tmp_path):
    p = atomic_write_json(tmp_path / "r.json", {"a": {"b": [1, 2]}}, indent=RESULT_INDENT)
    text = p.read_text()
    assert text == '{\n"a": {\n"b": [\n1,\n2\n]\n}\n}\n'
    assert json_indent_of(text) == 0 and read_json(p) == {"a": {"b": [1, 2]}}


def test_same_result_file_ignores_indentation_only(tmp_path):
    def w(name, text):
        (tmp_path / name).write_text(text)
        return tmp_path / name

    obj = {"a": 1, "b": [0.5, True], "c": "x"}
    two, zero = w("two.json", json.dumps(obj, indent=2)), w("zero.json", json.dumps(obj, indent=0))
    assert same_result_file(two, zero) and same_result_file(two, two)
    # another type, another key order or another value is another result
    for i, other in enumerate(
        [
            {"a": 1.0, "b": [0.5, True], "c": "x"},
            {"a": 1, "b": [0.5, 1], "c": "x"},
            {"b": [0.5, True], "a": 1, "c": "x"},
        ]
    ):
        assert not same_result_file(two, w(f"o{i}.json", json.dumps(other, indent=0)))
    corrupt = w("bad.json", "{not json")
    assert not same_result_file(corrupt, two) and same_result_file(corrupt, corrupt)
    log_a, log_b = w("a.log", "x\n"), w("b.log", "x \n")
    assert not same_result_file(log_a, log_b)
